"""HRWE: activation checkpointing changes memory, not results; MSTA behaves as eqs. 15-17."""

import torch

from remixformer import create_model
from remixformer.models.dermoscopy import MultiScaleTextureAttention


def _branch(checkpointing):
    torch.manual_seed(0)
    model = create_model("remixformer_tiny", "D", tasks=3, dermoscopy={"checkpoint_windows": checkpointing})
    return model.branches["D"].train()


def test_checkpointing_gives_the_same_outputs_and_gradients():
    a, b = _branch(True), _branch(False)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 64, 64)
    ya, yb = a(x).embedding, b(x).embedding
    torch.testing.assert_close(ya, yb)
    ya.square().sum().backward()
    yb.square().sum().backward()
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, msg=n)


def test_windows_are_cut_in_row_major_order():
    branch = _branch(False)
    img = torch.arange(64 * 64, dtype=torch.float32).view(1, 1, 64, 64).expand(1, 3, 64, 64)
    windows, grid = branch.hrwe.windows(img)
    assert grid == (2, 2)
    torch.testing.assert_close(windows[1], img[0, :, :32, 32:])
    torch.testing.assert_close(windows[2], img[0, :, 32:, :32])


def test_msta_weights_favour_similar_templates_and_aggregate_patches():
    msta = MultiScaleTextureAttention(dim=4, num_templates=2)
    with torch.no_grad():
        msta.templates.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
        msta.scales.fill_(-5.0)  # negative scales: -s * a grows with similarity
    y = torch.tensor([[[3.0, 0, 0, 0], [0, 3.0, 0, 0]]])  # patch 0 like template 0, patch 1 like template 1
    _, c = msta(y, need_assignment=True)
    assert torch.equal(c[0].argmax(-1), torch.tensor([0, 1]))
    assert (msta.scales < 0).all()
    fresh = MultiScaleTextureAttention(dim=4, num_templates=8)
    assert (fresh.scales < 0).all()  # initialised negative, see the class docstring
