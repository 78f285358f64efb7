"""Data-set names live in one list (data/config.py); the config type, the CLI and the loaders read it."""

import typing

from remixformer.data.config import DATASET_NAMES, DataConfig
from remixformer.data.registry import _loaders, dataset_names


def test_one_list_of_data_set_names():
    assert set(_loaders()) == set(DATASET_NAMES) and dataset_names() == DATASET_NAMES
    assert typing.get_args(typing.get_type_hints(DataConfig)["dataset"]) == DATASET_NAMES
    from remixformer.cli.main import build_parser

    parser = build_parser()
    check = (
        parser._subparsers._group_actions[0].choices["data"]._subparsers._group_actions[0].choices["check"]
    )
    dataset = next(a for a in check._actions if a.dest == "dataset")
    assert tuple(dataset.choices) == DATASET_NAMES
