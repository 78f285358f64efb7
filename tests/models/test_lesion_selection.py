"""LSM: sampling in training, top-K at inference, crops inside the photo, gradient through the estimator."""

import torch

from remixformer.models.lesion_selection import LesionSelection


def _scores(B=2, n=16):
    s = torch.rand(B, n) + 0.01
    return s / s.sum(-1, keepdim=True)


def test_eval_picks_the_top_k_cells_deterministically():
    lsm = LesionSelection(num_crops=3, crop_size=16).eval()
    scores = _scores()
    images = torch.randn(2, 3, 64, 64)
    a = lsm(scores, (4, 4), images)
    b = lsm(scores, (4, 4), images)
    assert torch.equal(a.cells, b.cells)
    assert torch.equal(a.cells, scores.topk(3, dim=1).indices)
    torch.testing.assert_close(a.weights, torch.ones(2, 3))


def test_training_samples_cells_from_the_scores():
    lsm = LesionSelection(num_crops=2, num_samples=4000, crop_size=16).train()
    scores = torch.tensor([[0.7, 0.2, 0.1, 0.0]])
    sel = lsm(scores, (2, 2), torch.randn(1, 3, 32, 32))
    freq = torch.bincount(sel.cells[0], minlength=4).float() / 4000
    torch.testing.assert_close(freq, scores[0], atol=0.03, rtol=0)
    assert sel.cells.shape == (1, 4000)
    # different draws differ: training is stochastic
    lsm.num_samples = 8
    draws = {tuple(lsm(_scores(1), (4, 4), torch.randn(1, 3, 64, 64)).cells[0].tolist()) for _ in range(5)}
    assert len(draws) > 1


def test_crops_lie_inside_the_photo_and_cover_their_cell():
    lsm = LesionSelection(num_crops=16, crop_size=24).eval()
    images = torch.arange(2 * 3 * 64 * 64, dtype=torch.float32).view(2, 3, 64, 64)
    scores = _scores()
    sel = lsm(scores, (4, 4), images)
    top, left, bottom, right = sel.boxes.unbind(-1)
    assert (top >= 0).all() and (left >= 0).all() and (bottom <= 64).all() and (right <= 64).all()
    assert ((bottom - top) == 24).all() and ((right - left) == 24).all()
    rows, cols = sel.cells // 4, sel.cells % 4
    cy, cx = (rows + 0.5) * 16, (cols + 0.5) * 16  # cell centres in pixels
    assert ((top <= cy) & (cy <= bottom) & (left <= cx) & (cx <= right)).all()
    for b in range(2):
        for k in range(16):
            t, l_, bo, r = sel.boxes[b, k].tolist()
            assert torch.equal(sel.crops[b, k], images[b, :, t:bo, l_:r])


def test_global_encoder_attention_learns_through_the_sampling_estimator(tiny):
    """The local features depend on G's last stage only through S_v / stopgrad(S_v)."""
    model = tiny("C", csf=False).train()
    branch = model.branches["C"]
    images = torch.randn(2, 3, 64, 64)
    out = branch(images)
    dim = branch.global_encoder.num_features
    local_half = out.embedding[:, dim:]  # l_cls, aggregated over the sampled crops
    local_half.square().sum().backward()
    qkv = branch.global_encoder.layers[-1].blocks[-1].attn.qkv.weight
    assert qkv.grad is not None and qkv.grad.abs().sum() > 0

    # and without the estimator (weights detached) that gradient vanishes
    branch.zero_grad()
    orig = branch.lesion_selection.forward

    def detached(*a, **k):
        sel = orig(*a, **k)
        sel.weights = sel.weights.detach()
        return sel

    branch.lesion_selection.forward = detached
    out = branch(images)
    out.embedding[:, dim:].square().sum().backward()
    assert qkv.grad is None or qkv.grad.abs().sum() == 0
