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


def test_temperature_sharpens_the_training_draw_and_scales_the_estimator_gradient():
    scores = torch.tensor([[0.4, 0.3, 0.2, 0.1]], requires_grad=True)
    lsm = LesionSelection(num_crops=2, num_samples=4000, crop_size=16, temperature=0.5).train()
    expected = scores.detach() ** 2 / (scores.detach() ** 2).sum()  # S^(1/T), renormalised
    torch.testing.assert_close(lsm.sampling_distribution(scores.detach()), expected)
    sel = lsm(scores, (2, 2), torch.randn(1, 3, 32, 32))
    freq = torch.bincount(sel.cells[0], minlength=4).float() / 4000
    torch.testing.assert_close(freq, expected[0], atol=0.03, rtol=0)
    # value 1, gradient d log(S_c^2 / sum S^2) = 2 (onehot(c) / S - S / sum S^2): 1/T times as strong
    torch.testing.assert_close(sel.weights, torch.ones_like(sel.weights))
    sharp = LesionSelection(num_crops=1, num_samples=1, crop_size=16, temperature=0.5).train()
    sel = sharp(scores, (2, 2), torch.randn(1, 3, 32, 32))
    (grad,) = torch.autograd.grad(sel.weights.sum(), scores)
    S = scores.detach()[0]
    c = int(sel.cells[0, 0])
    torch.testing.assert_close(
        grad[0], 2 * (torch.nn.functional.one_hot(torch.tensor(c), 4) / S - S / S.square().sum())
    )
    # inference ignores the temperature: the same top-K cells
    sharp.eval()
    assert torch.equal(
        sharp(scores, (2, 2), torch.randn(1, 3, 32, 32)).cells, scores.detach().topk(1).indices
    )


def test_deep_supervision_adds_a_head_on_the_global_class_token_in_training_only(tiny):
    model = tiny("CM", clinical={"deep_supervision": 0.5}).train()
    assert "C" in model.aux_heads
    batch = {
        "clinical": torch.randn(3, 3, 64, 64),
        "clinical_present": torch.tensor([True, False, True]),
        "metadata": torch.zeros(3, model.config.metadata_dim),
    }
    out = model(batch)
    logits, rows = out["aux_logits"]["C"]
    assert rows.tolist() == [0, 2] and logits["diag"].shape == (2, model.tasks[0].num_classes)
    assert "aux_logits" not in model.eval()(batch)
    assert not tiny("C").aux_heads  # off by default (the paper has no such head)


def _planted(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """64^2 noise photos with one 8^2 'lesion' in a random quadrant (one LSM cell of the tiny preset's
    2 x 2 grid); its colour (red or green) is the label: nothing else in the photo says anything."""
    x = 0.1 * torch.randn(n, 3, 64, 64, generator=generator)
    y = torch.randint(0, 2, (n,), generator=generator)
    cell = torch.randint(0, 4, (n,), generator=generator)
    for i in range(n):
        r, c = divmod(int(cell[i]), 2)
        x[i, y[i], r * 32 + 12 : r * 32 + 20, c * 32 + 12 : c * 32 + 20] += 2.0
    return x, y, cell


def test_a_trained_tiny_clinical_model_concentrates_its_lsm_on_a_planted_lesion(tiny):
    """Trained for 150 steps (seconds), the LSM's score of the lesion's cell rises from 1/4 (flat, the
    untrained model) well above it, and its top cell is the lesion's far more often than by chance."""
    torch.manual_seed(0)
    model = tiny("C", num_crops=1)
    x, y, cell = _planted(64, torch.Generator().manual_seed(1))

    def lesion_score_and_top1():
        model.eval()
        with torch.no_grad():
            s = model({"clinical": x}, explain=True)["explain"]["lsm_scores"].flatten(1)
        return s.gather(1, cell[:, None]).mean().item(), (s.argmax(1) == cell).float().mean().item()

    before, _ = lesion_score_and_top1()
    assert abs(before - 0.25) < 0.05  # untrained: nearly flat
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        model.train()
        xb, yb, _ = _planted(16, g)
        loss = torch.nn.functional.cross_entropy(model({"clinical": xb})["logits"]["diag"], yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after, top1 = lesion_score_and_top1()
    assert after > 0.45, after  # measured 0.63
    assert top1 > 0.4, top1  # measured 0.55; chance 0.25
