"""The run infrastructure shared by training and pretraining (remixformer.engine)."""

import dataclasses
import logging

import torch
from torch import nn

from remixformer.engine.distributed import (
    end_process_group,
    gather_objects,
    is_distributed,
    weight_checksums,
    world_size,
)
from remixformer.engine.rundir import changed_keys, run_directory
from remixformer.engine.trainer import TrainerConfig
from remixformer.pretrain.config import PretrainConfig
from remixformer.training.config import RunConfig, TrainConfig


def test_both_run_configs_share_one_trainer_section():
    shared = {f.name for f in dataclasses.fields(TrainerConfig)}
    assert shared <= {f.name for f in dataclasses.fields(TrainConfig)}
    assert isinstance(PretrainConfig().trainer, TrainerConfig) and isinstance(TrainConfig(), TrainerConfig)


def test_one_process_is_not_distributed():
    assert not is_distributed() and world_size() == 1
    assert gather_objects({"a": 1}) == [{"a": 1}]


def test_end_process_group_destroys_the_group_once_and_is_a_no_op_without_one(tmp_path):
    store = torch.distributed.FileStore(str(tmp_path / "store"), 1)
    torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        assert is_distributed() and world_size() == 1
        end_process_group()
        assert not is_distributed()
        end_process_group()  # nothing left to destroy: no error
    finally:
        if is_distributed():
            torch.distributed.destroy_process_group()


def test_weight_checksums_weigh_each_parameter_by_its_position():
    m = nn.Linear(2, 1)
    with torch.no_grad():
        m.weight.fill_(1.0)
        m.bias.fill_(2.0)
    assert weight_checksums(m.parameters()) == [1.0 * 2 * 1 + 2.0 * 2]


def test_changed_keys_leaves_out_what_may_change():
    a, b = RunConfig(), RunConfig()
    b.train.max_epochs, b.seed = 3, 7
    assert changed_keys(a, b) == ["seed", "train.max_epochs"]
    assert changed_keys(a, b, ("train.max_epochs",)) == ["seed"]


def test_run_directory_writes_the_config_and_the_log_then_detaches(tmp_path):
    root = logging.getLogger()
    before = list(root.handlers)
    with run_directory(tmp_path / "run", RunConfig(name="x"), "train.log") as writer:
        assert writer
        logging.getLogger("remixformer.test").warning("hello")
    assert root.handlers == before
    assert "name: x" in (tmp_path / "run" / "config.yaml").read_text()
    assert "hello" in (tmp_path / "run" / "train.log").read_text()
