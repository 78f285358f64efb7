"""The inference graph (masks instead of row indices) against the eager forward, without exporting."""

from __future__ import annotations

import torch

from remixformer import create_model, keys
from remixformer.layers import windows
from remixformer.models.graph import InferenceGraph, graph_input_names, graph_output_names
from remixformer.tasks import MULTI, TaskSpec

TASKS = [TaskSpec("diag", ("A", "B", "C", "D")), TaskSpec("attr", ("x", "y", "z"), MULTI)]


def _batch(model, B: int) -> dict:
    c = model.config
    g = torch.Generator().manual_seed(0)
    return {
        keys.CLINICAL: torch.randn(B, 3, c.clinical.image_size, c.clinical.image_size, generator=g),
        keys.DERMOSCOPY: torch.randn(B, 3, c.dermoscopy.image_size, c.dermoscopy.image_size, generator=g),
        keys.METADATA: (torch.rand(B, c.metadata_dim, generator=g) < 0.3).float(),
    }


def test_graph_matches_the_eager_forward_for_every_presence_pattern():
    torch.manual_seed(0)
    model = create_model("remixformer_tiny", "CDM", tasks=TASKS, metadata_dim=6)
    graph = InferenceGraph(model)
    assert graph.input_names == graph_input_names("CDM") == [
        "clinical", "clinical_present", "dermoscopy", "dermoscopy_present", "metadata", "metadata_present"
    ]  # fmt: skip
    assert graph.output_names == graph_output_names(model.tasks)
    assert graph.output_names == ["diag_logits", "attr_logits", "diag_probabilities", "attr_probabilities"]
    batch = _batch(model, 7)
    # rows: all, no C, no D, no M, C only, D only, M only
    patterns = ["CDM", "DM", "CM", "CD", "C", "D", "M"]
    for letter, key in (("C", keys.CLINICAL), ("D", keys.DERMOSCOPY), ("M", keys.METADATA)):
        batch[keys.present_key(key)] = torch.tensor([letter in p for p in patterns])
    with torch.no_grad():
        eager = model(batch)[keys.LOGITS]
        out = graph(*(batch[n] for n in graph.input_names))
    for i, t in enumerate(model.tasks):
        torch.testing.assert_close(out[i], eager[t.name], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[2], eager["diag"].softmax(-1), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[3], eager["attr"].sigmoid(), atol=1e-6, rtol=0)


def test_export_tracing_leaves_the_window_caches_real():
    """torch.export makes fake tensors: the cached window masks must not keep them (eager would fail)."""
    torch.manual_seed(0)
    windows.clear_window_caches()
    model = create_model("remixformer_tiny", "D", tasks={"diag": 3})
    graph = InferenceGraph(model)
    batch = _batch(model, 2)
    args = (batch[keys.DERMOSCOPY], torch.ones(2, dtype=torch.bool))
    batch_dim = torch.export.Dim("batch", min=1)
    program = torch.export.export(
        graph, args, dynamic_shapes=(({0: batch_dim}, {0: batch_dim}),), strict=False
    )
    with torch.no_grad():
        eager = model({keys.DERMOSCOPY: args[0]})[keys.LOGITS]["diag"]
        exported = program.module()(*args)[0]
    assert eager.numpy().shape == (2, 3)  # .numpy() fails on a fake tensor
    torch.testing.assert_close(exported, eager, atol=1e-5, rtol=0)
    three = (torch.cat([args[0], args[0][:1]]), torch.ones(3, dtype=torch.bool))
    assert program.module()(*three)[0].shape == (3, 3)  # the batch axis is not specialised
