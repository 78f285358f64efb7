"""DINO loss, centre and collapse monitors on hand-made tensors."""

import math

import pytest
import torch
import torch.nn.functional as F

from remixformer.pretrain.loss import DINOLoss, entropy_stats


def reference_loss(student, teacher, center, t_s, t_t, n_global):
    """DINO's formula written out view pair by view pair."""
    B = teacher.shape[0] // n_global
    s_views = [student[i * B : (i + 1) * B] for i in range(student.shape[0] // B)]
    t_views = [teacher[i * B : (i + 1) * B] for i in range(n_global)]
    total, terms = 0.0, 0
    for i, t in enumerate(t_views):
        q = F.softmax((t - center) / t_t, dim=-1)
        for v, s in enumerate(s_views):
            if v == i:
                continue
            total += (-(q * F.log_softmax(s / t_s, dim=-1)).sum(-1)).mean()
            terms += 1
    return total / terms


def test_loss_and_centre_follow_dino_on_hand_made_tensors():
    # B = 2 windows, K = 3 prototypes, 2 global + 1 local views
    teacher = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 3.0]])
    student = torch.tensor(
        [
            [0.2, 0.1, 0.0],
            [0.0, 1.0, 0.3],
            [1.0, 0.0, 0.0],
            [0.0, 0.0, 2.0],
            [0.3, 0.3, 0.3],
            [-1.0, 0.5, 0.0],
        ]
    )
    loss_fn = DINOLoss(3, student_temp=0.1, center_momentum=0.9)
    loss, probs = loss_fn(student, teacher, teacher_temp=0.04)
    torch.testing.assert_close(loss, reference_loss(student, teacher, torch.zeros(1, 3), 0.1, 0.04, 2))
    # 2 teacher views x 3 student views, minus the 2 same-view pairs = 4 terms
    torch.testing.assert_close(probs, F.softmax(teacher / 0.04, dim=-1))
    # centre: c <- 0.9 c + 0.1 mean(teacher logits), after the loss was computed with the old centre
    expected_center = 0.1 * teacher.mean(0, keepdim=True)
    torch.testing.assert_close(loss_fn.center, expected_center)
    loss2, _ = loss_fn(student, teacher, teacher_temp=0.07)
    torch.testing.assert_close(loss2, reference_loss(student, teacher, expected_center, 0.1, 0.07, 2))
    torch.testing.assert_close(loss_fn.center, 0.9 * expected_center + 0.1 * teacher.mean(0, keepdim=True))


def test_a_view_is_never_compared_with_itself():
    teacher = torch.randn(4, 5)
    student = torch.randn(4, 5)  # two global views, no local ones
    base, _ = DINOLoss(5)(student, teacher, 0.04, update_center=False)
    changed = student.clone()
    changed[:2] += 10 * torch.randn(2, 5)  # student view 0 only meets teacher view 1
    teacher_changed = teacher.clone()
    teacher_changed[:2] = torch.randn(2, 5)  # teacher view 0 only meets student view 1
    a, _ = DINOLoss(5)(changed, teacher, 0.04, update_center=False)
    b, _ = DINOLoss(5)(student, teacher_changed, 0.04, update_center=False)
    assert not torch.isclose(a, base) and not torch.isclose(b, base)
    # matching the teacher's sharpened distribution lowers the loss
    sharp = DINOLoss(5)(teacher.flip(0) * 0.4, teacher, 0.04, update_center=False)[0]
    assert sharp < DINOLoss(5)(-teacher.flip(0) * 0.4, teacher, 0.04, update_center=False)[0]


def test_centre_does_not_move_in_eval_mode_and_teacher_gets_no_gradient():
    loss_fn = DINOLoss(3).eval()
    teacher = torch.randn(4, 3, requires_grad=True)
    student = torch.randn(6, 3, requires_grad=True)
    loss, _ = loss_fn(student, teacher, 0.04)
    loss.backward()
    assert torch.count_nonzero(loss_fn.center) == 0
    assert teacher.grad is None and student.grad is not None


def test_bad_view_counts_raise():
    with pytest.raises(ValueError, match="whole numbers of views"):
        DINOLoss(3)(torch.randn(5, 3), torch.randn(4, 3), 0.04)


def test_centre_update_is_guarded_and_uses_all_reduce_when_distributed(monkeypatch):
    teacher = torch.randn(6, 4)

    def boom(*a, **k):
        raise AssertionError("all_reduce called without an initialised process group")

    monkeypatch.setattr(torch.distributed, "all_reduce", boom)
    single = DINOLoss(4)
    single.update_center(teacher)  # one process: no distributed call at all

    # two processes holding the same batch: the all-reduced sum is divided by 2 x the batch
    calls = []

    def all_reduce(t, *a, **k):
        calls.append(t.shape)
        t.mul_(2)

    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda *a: 2)
    monkeypatch.setattr(torch.distributed, "all_reduce", all_reduce)
    dist = DINOLoss(4)
    dist.update_center(teacher)
    assert calls == [torch.Size([1, 4])]
    torch.testing.assert_close(dist.center, single.center)


def test_entropy_monitors_at_their_extremes():
    K = 8
    uniform = torch.full((4, K), 1 / K)
    s = entropy_stats(uniform)
    assert s["teacher_entropy_ratio"].item() == pytest.approx(1.0)
    assert s["teacher_entropy"].item() == pytest.approx(math.log(K))
    one_hot_same = F.one_hot(torch.zeros(4, dtype=torch.long), K).float()
    s = entropy_stats(one_hot_same)
    assert s["teacher_entropy_ratio"].item() == pytest.approx(0.0, abs=1e-6)
    assert s["teacher_mean_entropy_ratio"].item() == pytest.approx(0.0, abs=1e-6)  # one prototype for all
    one_hot_spread = F.one_hot(torch.arange(4), K).float()
    s = entropy_stats(one_hot_spread)
    assert s["teacher_entropy_ratio"].item() == pytest.approx(0.0, abs=1e-6)
    assert s["teacher_mean_entropy_ratio"].item() == pytest.approx(math.log(4) / math.log(K))
