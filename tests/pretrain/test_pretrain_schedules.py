"""Per-step schedules: endpoints, warm-ups, scaling, clamping."""

import numpy as np
import pytest

from remixformer.config import from_dict
from remixformer.pretrain.config import PretrainConfig
from remixformer.pretrain.schedules import Schedules, cosine_schedule, linear_warmup_schedule


def test_cosine_schedule_ends_exactly_at_its_endpoints():
    s = cosine_schedule(1.0, 0.1, 10)
    assert len(s) == 10 and s[0] == pytest.approx(1.0) and s[-1] == pytest.approx(0.1)
    assert np.all(np.diff(s) <= 0)
    w = cosine_schedule(2.0, 0.0, 20, warmup_steps=5, warmup_start=0.0)
    np.testing.assert_allclose(w[:5], [0.0, 0.5, 1.0, 1.5, 2.0])
    assert w[5] == pytest.approx(2.0) and w[-1] == pytest.approx(0.0)
    assert cosine_schedule(1.0, 0.5, 1)[0] == pytest.approx(0.5)
    assert len(cosine_schedule(1.0, 0.5, 3, warmup_steps=10)) == 3  # warm-up longer than the run is cut


def test_linear_warmup_schedule():
    s = linear_warmup_schedule(0.04, 0.07, 4, 10)
    np.testing.assert_allclose(s[:4], [0.04, 0.05, 0.06, 0.07])
    assert np.all(s[4:] == 0.07)
    with pytest.raises(ValueError):
        linear_warmup_schedule(0.04, 0.07, 4, 0)


def test_paper_recipe_schedules_have_the_right_endpoints():
    cfg = PretrainConfig()  # epochs 100, warm-up 10 epochs, teacher temperature warmed over 30 epochs
    s = Schedules.build(cfg, steps_per_epoch=10, effective_batch=512)
    assert s.total_steps == 1000
    assert s.base_lr == pytest.approx(0.0005 * 512 / 256)  # linear scaling rule
    assert s.lr[0] == 0.0 and s.lr[99] == pytest.approx(s.base_lr) and s.lr[-1] == pytest.approx(1e-6)
    assert s.lr.max() == pytest.approx(s.base_lr)
    assert s.weight_decay[0] == pytest.approx(0.04) and s.weight_decay[-1] == pytest.approx(0.4)
    assert s.momentum[0] == pytest.approx(0.996) and s.momentum[-1] == pytest.approx(1.0)
    assert np.all(np.diff(s.momentum) >= 0)
    assert s.teacher_temp[0] == pytest.approx(0.04)
    assert s.teacher_temp[30 * 10 - 1] == pytest.approx(0.07) and s.teacher_temp[-1] == pytest.approx(0.07)
    assert np.all(np.diff(s.teacher_temp[:300]) > 0)
    assert s.at(10_000) == s.at(999) and s.at(-3) == s.at(0)


def test_schedules_are_a_pure_function_of_config_and_steps():
    cfg = from_dict(PretrainConfig, {"optim": {"epochs": 7, "warmup_epochs": 2}})
    a = Schedules.build(cfg, 13, 64)
    b = Schedules.build(cfg, 13, 64)
    for name in ("lr", "weight_decay", "momentum", "teacher_temp"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
