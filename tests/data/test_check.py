import json

import pandas as pd

from remixformer.cli.main import main


def test_check_good_data_set_exits_0_and_prints_counts(derm7pt_root, capsys):
    code = main(["-q", "data", "check", "--dataset", "derm7pt", "--root", str(derm7pt_root)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "data set derm7pt: 30 cases, modalities CDM" in out
    assert "split protocol: official" in out
    assert "diag (cases per class):" in out and "rs (cases per class):" in out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  train")}
    assert lines["train"][-1] == "12"
    assert "9 case(s) whose clinical photo is a copy" in out
    assert "['management', 'level_of_diagnostic_difficulty'] leak the label and are excluded" in out
    assert "image files: all present and readable" in out and "result: OK" in out


def test_check_reports_missing_and_corrupt_files_and_exits_1(pad_root, capsys, tmp_path):
    (pad_root / "images" / "imgs_part_1" / "PAT_0_70_0.png").write_bytes(b"junk")
    report = tmp_path / "report.json"
    code = main(
        ["-q", "data", "check", "--dataset", "pad_ufes20", "--root", str(pad_root), "--json", str(report)]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "3 image file(s) of 3 case(s) missing or unreadable:" in out
    assert "case 'PAT_0_70_0' (metadata.csv line 2)" in out and "not a readable image" in out
    assert "PAT_7_71_2.png: file not found" in out
    assert "5-fold, stratified by diagnosis, grouped (8 groups of 24 cases)" in out
    assert "smoke: 12 blank (50.0%)" in out
    assert "background_father" in out and "outside the schema ('CHINA' x1)" in out
    assert "field 'background_father': value 'CHINA' on metadata.csv line 8" in out
    assert "blanks in ['smoke'," in out and "act as a label proxy" in out
    data = json.loads(report.read_text())
    assert data["ok"] is False and len(data["bad_files"]) == 3 and data["n_cases"] == 24


def test_quick_check_only_looks_for_files(pad_root, capsys):
    (pad_root / "images" / "imgs_part_1" / "PAT_0_70_0.png").write_bytes(b"junk")
    code = main(["-q", "data", "check", "--dataset", "pad_ufes20", "--root", str(pad_root), "--quick"])
    out = capsys.readouterr().out
    assert code == 1 and "2 image file(s) of 2 case(s) missing (images not decoded" in out


def test_wrong_layout_exits_2_naming_file_and_column(manifest_root, capsys):
    df = pd.read_csv(manifest_root / "manifest.csv", keep_default_na=False, dtype=str).drop(
        columns=["diagnosis"]
    )
    df.to_csv(manifest_root / "manifest.csv", index=False)
    code = main(["-q", "data", "check", "--manifest", str(manifest_root / "manifest.csv")])
    err = capsys.readouterr().err
    assert code == 2
    assert "manifest.csv: missing column(s) ['diagnosis'] for a manifest;" in err and err.startswith(
        "error: "
    )


def test_manifest_check_with_leaky_field_included(manifest_root, capsys):
    code = main(
        [
            "-q",
            "data",
            "check",
            "--manifest",
            str(manifest_root / "manifest.csv"),
            "--schema",
            str(manifest_root / "schema.json"),
            "--include-leaky",
            "biopsy",
        ]
    )
    out = capsys.readouterr().out
    assert "LEAKAGE: metadata field(s) ['biopsy']" in out
    assert "attrs (positives per attribute):" in out
    assert "split protocol: official (manifest split column)" in out
    # the manifest's one value outside the schema is a problem, named with its line
    assert code == 1, out
    assert "1 metadata value(s) outside the schema" in out
    assert "field 'sex': value 'Other' on manifest.csv line 5" in out
    assert out.rstrip().endswith("result: PROBLEMS FOUND")


def test_values_outside_ranges_and_paths_leaving_the_root_are_problems(manifest_root, tmp_path, capsys):
    schema = json.loads((manifest_root / "schema.json").read_text())
    schema["fields"][1]["range"] = [0, 120]  # age
    (manifest_root / "schema.json").write_text(json.dumps(schema))
    df = pd.read_csv(manifest_root / "manifest.csv", keep_default_na=False, dtype=str)
    df.loc[0, "age"], df.loc[1, "age"], df.loc[3, "age"], df.loc[3, "sex"] = "-5", "1_000", "nan", "Male"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.png").write_bytes((manifest_root / "img" / "c0.png").read_bytes())
    df.loc[4, "clinical"] = "../outside/x.png"  # a readable image, but not under the data root
    df.loc[5, "clinical"] = str(outside / "x.png")  # an absolute path elsewhere: allowed, noted
    df.to_csv(manifest_root / "manifest.csv", index=False)
    report = tmp_path / "report.json"
    code = main(
        ["-q", "data", "check", "--manifest", str(manifest_root / "manifest.csv"), "--json", str(report)]
    )
    out = capsys.readouterr().out
    assert code == 1, out
    for value, line in (("-5", 2), ("1_000", 3), ("nan", 5)):
        assert f"field 'age': value {value!r} on manifest.csv line {line}" in out
    assert "1 image path(s) leave the data root" in out
    assert "case 'm4' (manifest.csv line 6): " in out and "../outside/x.png: resolves to" in out
    assert "1 image path(s) are absolute paths outside the data root" in out
    data = json.loads(report.read_text())
    assert data["ok"] is False and data["unseen_value_sources"]["age"]["-5"] == ["manifest.csv line 2"]
    assert [p["case_id"] for p in data["paths_outside_root"]] == ["m4"]


def test_a_manifest_with_only_its_header_names_the_file(manifest_root, capsys):
    (manifest_root / "manifest.csv").write_text(
        (manifest_root / "manifest.csv").read_text().splitlines()[0] + "\n"
    )
    assert main(["-q", "data", "check", "--manifest", str(manifest_root / "manifest.csv")]) == 2
    err = capsys.readouterr().err
    assert "manifest.csv: no cases (the file has its header line and no data rows)" in err


def test_check_needs_a_data_set(capsys):
    assert main(["-q", "data", "check"]) == 2
    assert "give --dataset NAME --root DIR" in capsys.readouterr().err


def test_isic2018_without_validation_images_says_validation_is_carved(isic2018_root, capsys):
    """The shared ISIC 2018 copy has the 193 validation labels but not their images."""
    import shutil

    from remixformer.config import from_dict
    from remixformer.data.config import DataConfig
    from remixformer.data.registry import load_dataset
    from remixformer.data.splits import splits_from_config

    shutil.rmtree(isic2018_root / "ISIC2018_Task3_Validation_Input")
    code = main(["-q", "data", "check", "--dataset", "isic2018", "--root", str(isic2018_root), "--quick"])
    out = capsys.readouterr().out
    assert code == 1
    assert "the official val split has 3 labelled case(s) but none of their images is present" in out
    assert "training carves validation from the training cases (data.val_fraction=0.15" in out

    cfg = from_dict(
        DataConfig,
        {
            "dataset": "isic2018",
            "root": str(isic2018_root),
            "skip_bad_cases": True,
            "val_fraction": 0.3,
            "attributes": False,
        },
    )
    table = load_dataset(cfg)
    assert any("every official val case was skipped" in n for n in table.notes)
    splits = splits_from_config(table, cfg)
    assert splits["val"] and len(splits["test"]) == 4
    ids = table.case_ids
    val_ids = {ids[i] for i in splits["val"]}
    assert val_ids <= {f"ISIC_{n:07d}" for n in range(24306, 24316)}  # carved from the HAM training cases
    groups = table.group_ids
    assert not {groups[i] for i in splits["val"]} & {groups[i] for i in splits["train"]}
