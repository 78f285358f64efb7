"""One modality helper: letters, names, and the parser every validator of letters uses (either case)."""

import pytest

from remixformer.modalities import NAMES, modality_name, modality_names, parse_modalities


def test_letters_names_and_the_parser():
    assert NAMES == {"C": "clinical", "D": "dermoscopy", "M": "metadata"}
    assert modality_name("d") == "dermoscopy" and modality_names("CM") == ["clinical", "metadata"]
    assert parse_modalities("dc") == "CD" and parse_modalities("M+c") == "CM"
    assert parse_modalities("", allow_empty=True) == ""
    with pytest.raises(ValueError, match="withhold is empty"):
        parse_modalities("", "withhold")
    with pytest.raises(ValueError, match=r"--withhold must be a subset of 'CDM'.*'X' has unknown letter"):
        parse_modalities("X", "--withhold")
    with pytest.raises(ValueError, match="unknown modality letter"):
        modality_name("X")


def test_every_validator_of_letters_accepts_either_case():
    from remixformer.config import from_dict
    from remixformer.data.config import DataConfig
    from remixformer.models.config import ModelConfig
    from remixformer.study.cases import parse_stages

    assert ModelConfig(modalities="cd").modalities == "CD"
    assert from_dict(DataConfig, {"remix_modalities": "dc"}).remix_modalities == "CD"
    assert parse_stages("c,cm") == ("C", "CM")
    with pytest.raises(ValueError, match="remix_modalities must be a subset"):
        from_dict(DataConfig, {"remix_modalities": "X"})
