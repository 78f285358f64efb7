import logging

import pytest
import torch
from torch.utils.data import DataLoader

from remixformer.config import from_dict
from remixformer.data import BadImageError, DataConfig, load_dataset
from remixformer.data.dataset import MultiModalDataset, collate
from remixformer.keys import (
    CASE_ID,
    CLINICAL,
    CLINICAL_PRESENT,
    DERMOSCOPY,
    DERMOSCOPY_PRESENT,
    INDEX,
    METADATA,
    METADATA_PRESENT,
    TARGETS,
)


@pytest.fixture
def table(manifest_root):
    return load_dataset(from_dict(DataConfig, {"dataset": "manifest", "root": str(manifest_root)}))


def _ds(table, **kw):
    args = {"modalities": "CDM", "clinical_size": 32, "dermoscopy_size": 48, "train": False, "seed": 0}
    return MultiModalDataset(table, list(range(len(table))), **(args | kw))


def test_sample_follows_the_batch_contract(table):
    item = _ds(table, train=True)[1]
    assert item[CLINICAL].shape == (3, 32, 32) and item[DERMOSCOPY].shape == (3, 48, 48)
    assert item[CLINICAL].dtype == torch.uint8 and type(item[CLINICAL]) is torch.Tensor  # model normalises
    assert item[METADATA].shape == (table.schema.dim,) and item[METADATA].sum() == 3
    assert item[CLINICAL_PRESENT].dtype == torch.bool and bool(item[DERMOSCOPY_PRESENT])
    assert item[TARGETS]["diag"].dtype == torch.long and int(item[TARGETS]["diag"]) == 1
    assert item[TARGETS]["attrs"].tolist() == [1.0, 0.0, 1.0]
    assert item[CASE_ID] == "m1" and item[INDEX] == 1
    batch = collate([_ds(table)[i] for i in range(4)])
    assert batch[CLINICAL].shape == (4, 3, 32, 32) and batch[METADATA_PRESENT].tolist() == [True] * 4
    assert batch[TARGETS]["diag"].tolist() == [0, 1, 2, 2] and batch[TARGETS]["pn"].tolist() == [0, 1, -1, -1]
    assert batch[TARGETS]["attrs"].shape == (4, 3) and batch[TARGETS]["attrs"][3].tolist() == [0, 0, 0]
    assert torch.isnan(collate([_ds(table)[4]])[TARGETS]["attrs"]).all()  # m3: attributes unknown
    assert batch[CASE_ID] == ["m0", "m1", "m2", "m2"] and batch[INDEX].tolist() == [0, 1, 2, 2]


def test_eval_expands_images_training_draws_one(table):
    ev = _ds(table)
    assert len(ev) == 9 and ev.sample_case_indices.tolist() == [0, 1, 2, 2, 3, 4, 5, 6, 7]
    a, b = ev[2], ev[3]
    assert a[CASE_ID] == b[CASE_ID] == "m2" and not torch.equal(a[CLINICAL], b[CLINICAL])
    assert torch.equal(a[DERMOSCOPY], b[DERMOSCOPY])
    assert len(_ds(table, train=True)) == 8


def test_absent_modality_is_zeros_and_not_present(table):
    ev = _ds(table)
    m3, m4 = ev[4], ev[5]
    assert not m3[CLINICAL_PRESENT] and torch.count_nonzero(m3[CLINICAL]) == 0 and m3[DERMOSCOPY_PRESENT]
    assert not m4[DERMOSCOPY_PRESENT] and torch.count_nonzero(m4[DERMOSCOPY]) == 0


def test_metadata_only_model_decodes_no_image(table, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("an image was decoded")

    monkeypatch.setattr("remixformer.data.dataset.load_image", boom)
    item = _ds(table, modalities="M", train=True)[0]
    assert set(item) == {METADATA, METADATA_PRESENT, TARGETS, CASE_ID, INDEX}
    with pytest.raises(AssertionError, match="decoded"):
        _ds(table, modalities="CM")[0]


def test_augmentation_depends_only_on_seed_epoch_and_case(table):
    ds = _ds(table, train=True)
    first = ds[0][CLINICAL]
    assert torch.equal(first, ds[0][CLINICAL])
    other = _ds(table, train=True)
    for i in reversed(range(len(other))):  # order of access does not matter
        other[i]
    assert torch.equal(other[0][CLINICAL], first)
    ds.set_epoch(1)
    assert not torch.equal(ds[0][CLINICAL], first)
    assert not torch.equal(_ds(table, train=True, seed=5)[0][CLINICAL], first)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    ds[0]
    assert torch.equal(torch.rand(1), before)  # the global torch RNG is left alone


def test_clinical_and_dermoscopy_are_augmented_independently(table, monkeypatch):
    seeds = []
    real = torch.manual_seed
    monkeypatch.setattr(torch, "manual_seed", lambda s: (seeds.append(s), real(s))[1])
    _ds(table, train=True)[0]
    assert len(seeds) == 2 and seeds[0] != seeds[1]


def test_same_batches_with_and_without_workers_and_after_set_epoch(table):
    def batches(workers, epoch):
        ds = _ds(table, train=True, remix=True)
        loader = DataLoader(
            ds, batch_size=4, collate_fn=collate, num_workers=workers, persistent_workers=workers > 0
        )
        out = []
        for e in range(epoch + 1):
            ds.set_epoch(e)
            out = [b[CLINICAL] for b in loader]
        return torch.cat(out)

    assert torch.equal(batches(0, 1), batches(2, 1))
    assert not torch.equal(batches(0, 0), batches(0, 1))


def test_remix_borrows_from_same_diagnosis_training_cases(table, monkeypatch):
    ds = _ds(table, train=True, remix=True)
    loaded = []
    real = ds._load
    monkeypatch.setattr(
        ds,
        "_load",
        lambda path, letter, case_id: (loaded.append((path, case_id)), real(path, letter, case_id))[1],
    )
    for epoch in range(4):
        ds.set_epoch(epoch)
        loaded.clear()
        item = ds[3]  # m3: NEV, no clinical photo
        assert item[CLINICAL_PRESENT]
        clinical = [(p, c) for p, c in loaded if "/c" in p]
        assert len(clinical) == 1 and clinical[0][1] in ("m2", "m7")  # the other NEV cases with photos
    assert _ds(table, train=True, remix=True)[4][DERMOSCOPY_PRESENT]  # m4: MEL borrows m1's dermoscopy
    assert not _ds(table, train=True, remix=False)[3][CLINICAL_PRESENT]
    assert not _ds(table, train=False, remix=True)[4][CLINICAL_PRESENT]  # never at evaluation
    only_m3 = MultiModalDataset(table, [3, 4], "CDM", 32, 48, train=True, remix=True)
    assert not only_m3[0][CLINICAL_PRESENT]  # no donor of the same diagnosis among the given cases


def test_cache_gives_identical_eval_samples(table):
    plain, cached = _ds(table), _ds(table, cache_images=True)
    assert len(cached._cache) == 15
    for i in range(len(plain)):
        assert torch.equal(plain[i][CLINICAL], cached[i][CLINICAL])
        assert torch.equal(plain[i][DERMOSCOPY], cached[i][DERMOSCOPY])
    assert _ds(table, train=True, cache_images=True)[2][CLINICAL].shape == (3, 32, 32)


def test_bad_image_errors_or_is_skipped_with_a_warning(table, manifest_root, caplog):
    (manifest_root / "img" / "d5.png").write_bytes(b"garbage")
    with pytest.raises(BadImageError, match=r"d5\.png \(case 'm5'\): not a readable image"):
        _ds(table)[6]
    caplog.set_level(logging.WARNING)
    item = _ds(table, skip_bad_cases=True)[6]
    assert item[CASE_ID] == "m5" and not item[DERMOSCOPY_PRESENT] and item[CLINICAL_PRESENT]
    assert "d5.png (case 'm5')" in caplog.text
    caplog.clear()
    cached = _ds(table, skip_bad_cases=True, cache_images=True)
    assert "m5" not in [cached[i][CASE_ID] for i in range(len(cached))] and len(cached) == 8
    assert "skipping 1 case(s)" in caplog.text and "m5" in caplog.text
    with pytest.raises(BadImageError, match="m5"):
        _ds(table, cache_images=True)


def test_bad_arguments(table):
    with pytest.raises(ValueError, match="modalities must be"):
        _ds(table, modalities="CX")
