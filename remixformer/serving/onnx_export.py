"""ONNX export of a model's inference graph, the parity check against eager PyTorch, and an
onnxruntime model that the :class:`~remixformer.serving.predictor.Predictor` can run.

    path = export_onnx(load_model("best.safetensors"), "model.onnx")
    diffs = parity_check(model, path)            # max |p_onnx - p_eager| per case kind
    predictor = Predictor.from_onnx("model.onnx")  # same API as from_checkpoint

The graph is :class:`~remixformer.models.graph.InferenceGraph`: inputs are already preprocessed
tensors with a dynamic batch axis and one bool presence mask per modality, outputs each task's logits
and probabilities. The exporter is torch's dynamo-based one (``torch.export``; ``dynamo=True``, which
needs ``onnxscript``): the legacy TorchScript exporter of torch 2.14 has no translation of the
antialiased bilinear resize of the clinical branch. Scaled dot-product attention is decomposed into
matmul/softmax before conversion, because the ONNX translation of torch's SDPA takes only 4-D inputs
and the CLS-Swin blocks attend over 5-D window batches.

The file's metadata (``metadata_props``) holds the checkpoint header (format, version, model config
with tasks and metadata schema, extras) and ``remixformer.preprocessing``, the input contract as JSON
(:func:`preprocessing_contract`). ``onnx`` and ``onnxruntime`` are optional dependencies
(``pip install remixformer[onnx]``), imported when first used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from remixformer import keys
from remixformer.data.transforms import MEAN, STD
from remixformer.layers.imaging import normalize_images
from remixformer.models.checkpoint import config_from_header, header_fields
from remixformer.models.config import ModelConfig
from remixformer.models.graph import InferenceGraph, graph_input_names, graph_output_names
from remixformer.models.remixformer import BRANCH_KEYS
from remixformer.serialization import CheckpointError
from remixformer.tasks import MULTI

log = logging.getLogger(__name__)

OPSET = 18
PARITY_TOLERANCE = 1e-4
CONTRACT_KEY = "remixformer.preprocessing"
INSTALL_HINT = "pip install 'remixformer[onnx]' (onnx, onnxruntime, onnxscript)"


def preprocessing_contract(config: ModelConfig) -> dict[str, Any]:
    """What the graph's inputs must hold, as stored in the file's metadata."""
    inputs: dict[str, Any] = {}
    for letter in config.modalities:
        key = BRANCH_KEYS[letter]
        if letter == "M":
            inputs[key] = {
                "shape": ["batch", config.metadata_dim],
                "dtype": "float32",
                "how": "one-hot encoding through the model's metadata schema (config.metadata_schema), "
                "one 'unknown' slot per field (MetadataSchema.encode)",
            }
        else:
            size = config.clinical.image_size if letter == "C" else config.dermoscopy.image_size
            inputs[key] = {
                "shape": ["batch", 3, size, size],
                "dtype": "float32",
                "how": f"8-bit RGB image resized to {size}x{size} (bilinear, antialiased; aspect ratio "
                "not kept), scaled to [0, 1], normalised with ImageNet mean and std (channel order RGB)",
                "mean": list(MEAN),
                "std": list(STD),
            }
        inputs[keys.present_key(key)] = {
            "shape": ["batch"],
            "dtype": "bool",
            "how": f"true where the case has its {key} input; where false the {key} values are ignored "
            "(fill them with zeros)",
        }
    return {
        "inputs": inputs,
        "input_order": graph_input_names(config.modalities),
        "outputs": {
            f"{t.name}_{kind}": {"shape": ["batch", t.num_classes], "classes": list(t.classes)}
            for kind in ("logits", "probabilities")
            for t in config.task_specs
        },
        "probabilities": "softmax of the logits for single-label tasks, sigmoid for multi-label ones",
        "rule": "every case needs at least one present modality (the graph does not check it)",
        "reference": "remixformer.serving.Predictor.preprocess builds these tensors from images and values",
    }


def random_inputs(config: ModelConfig, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Inputs of the graph for ``batch`` made-up cases, every modality present: standard-normal images
    and random 0/1 metadata vectors (not valid one-hot encodings; any values exercise the graph)."""
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for letter in config.modalities:
        key = BRANCH_KEYS[letter]
        if letter == "M":
            x = (torch.rand(batch, config.metadata_dim, generator=g) < 0.3).float()
        else:
            size = config.clinical.image_size if letter == "C" else config.dermoscopy.image_size
            x = torch.randn(batch, 3, size, size, generator=g)
        out[key] = x
        out[keys.present_key(key)] = torch.ones(batch, dtype=torch.bool)
    return out


def _sdpa_math(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """Scaled dot-product attention as matmul + softmax, for inputs of any rank (eval: no dropout)."""
    if is_causal or enable_gqa:
        raise NotImplementedError("the ONNX export decomposes only non-causal attention without GQA")
    s = scale if scale is not None else 1.0 / math.sqrt(query.shape[-1])
    scores = (query * s) @ key.transpose(-2, -1)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    return scores.softmax(-1) @ value


def export_onnx(
    model: torch.nn.Module,
    path: str | Path,
    *,
    extra: dict[str, Any] | None = None,
    example_batch: int = 2,
    optimize: bool = True,
) -> Path:
    """Write the inference graph of ``model`` (a RemixFormer) to ``path`` with a dynamic batch axis;
    ``extra`` (e.g. the checkpoint's extras) goes into the metadata beside the config."""
    try:
        import onnxscript  # noqa: F401  (torch's dynamo exporter needs it)
    except ImportError as e:
        raise ImportError(f"ONNX export needs onnxscript, onnx and onnxruntime: {INSTALL_HINT}") from e
    path = Path(path)
    model = model.eval()
    graph = InferenceGraph(model)
    example = random_inputs(model.config, example_batch)
    args = tuple(example[name] for name in graph.input_names)
    start = time.perf_counter()
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        program = torch.export.export(
            graph, args, dynamic_shapes=(tuple({0: batch} for _ in graph.input_names),), strict=False
        )
        program = program.run_decompositions(
            {torch.ops.aten.scaled_dot_product_attention.default: _sdpa_math}
        )
        onnx_program = torch.onnx.export(
            program,
            args,
            input_names=graph.input_names,
            output_names=graph.output_names,
            opset_version=OPSET,
            dynamo=True,
            optimize=optimize,
            verbose=False,
        )
    if onnx_program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    props = {**header_fields(model, extra), CONTRACT_KEY: json.dumps(preprocessing_contract(model.config))}
    onnx_program.model.metadata_props.update(props)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    onnx_program.save(str(tmp))
    tmp.replace(path)
    log.info("exported %s in %.1f s (%.1f MB)", path, time.perf_counter() - start, path.stat().st_size / 1e6)
    return path


QUANTIZATION_KEY = "remixformer.quantization"
QUANTIZATIONS = ("int8",)


def quantize_onnx(source: str | Path, path: str | Path, mode: str = "int8") -> Path:
    """Write ``source`` (an exported graph) to ``path`` with the weights of its matrix products in int8
    (onnxruntime's pre-processing, then its dynamic quantisation: weights int8 per tensor, activations
    quantised at run time; ``MatMul``/``Gemm`` only, the convolutions stay float). On CPUs with int8
    dot-product instructions (AVX512-VNNI, AVX-VNNI) it runs the paper preset's case faster, at the cost
    of small differences in the probabilities (docs/export.md, docs/benchmarks.md). The metadata is
    kept, and ``remixformer.quantization`` added."""
    if mode not in QUANTIZATIONS:
        raise ValueError(f"quantization: expected one of {list(QUANTIZATIONS)}, got {mode!r}")
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    prepared = path.with_name(path.name + ".prepared.tmp")
    start = time.perf_counter()
    try:
        # shape inference and onnxruntime's graph optimisations first (onnxruntime's advice): the weights
        # are folded into the products they feed, so more of them are quantised (measured on the paper
        # preset: 141 MiB instead of 225 MiB, and 1.3x faster than quantising the exported graph as is)
        quant_pre_process(str(source), str(prepared))
        quantize_dynamic(
            str(prepared), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"]
        )
    finally:
        prepared.unlink(missing_ok=True)
    proto = onnx.load(str(tmp))  # the quantiser keeps the source's metadata (the checkpoint header)
    info = {"mode": mode, "weights": "int8, per tensor", "activations": "dynamic", "ops": ["MatMul", "Gemm"]}
    proto.metadata_props.add(key=QUANTIZATION_KEY, value=json.dumps(info))
    onnx.save(proto, str(tmp))
    tmp.replace(path)
    log.info("quantised %s to %s in %.1f s", source, path, time.perf_counter() - start)
    return path


class OnnxModel:
    """An exported graph in an onnxruntime session, with the model interface the Predictor uses:
    ``config``, ``modalities``, ``tasks`` and ``model(batch)`` -> ``{"logits": {task: tensor}}``
    (batch dict of docs/architecture.md; a missing entry is absent for every case, a missing mask
    present for every case). No attention maps: ``explain=True`` is a ValueError."""

    can_explain = False

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        if self.path.suffix != ".onnx":
            raise ValueError(
                f"{self.path}: the onnxruntime backend takes an .onnx file; export it first with "
                "`remixformer export --checkpoint CKPT --format onnx --out FILE.onnx`"
            )
        try:
            import onnx
            import onnxruntime as ort
        except ImportError as e:
            raise ImportError(f"the onnxruntime backend needs onnx and onnxruntime: {INSTALL_HINT}") from e
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such ONNX file")
        try:
            proto = onnx.load(str(self.path), load_external_data=False)
        except Exception as e:
            raise CheckpointError(f"{self.path}: not a readable ONNX file ({e})") from e
        meta = {p.key: p.value for p in proto.metadata_props}
        del proto
        self.config, self.checkpoint_extra = config_from_header(self.path, meta)
        self.quantization = json.loads(meta[QUANTIZATION_KEY])["mode"] if QUANTIZATION_KEY in meta else None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        expected = graph_input_names(self.config.modalities)
        got = [i.name for i in self.session.get_inputs()]
        if got != expected:
            raise CheckpointError(f"{self.path}: graph inputs {got}, expected {expected} for its config")
        outputs = graph_output_names(self.config.task_specs)
        missing = sorted(set(outputs) - {o.name for o in self.session.get_outputs()})
        if missing:
            raise CheckpointError(f"{self.path}: graph outputs {missing} missing")

    @property
    def modalities(self) -> str:
        return self.config.modalities

    @property
    def tasks(self):
        return self.config.task_specs

    def to(self, device: str | torch.device) -> OnnxModel:
        if torch.device(device).type != "cpu":
            raise ValueError(f"the onnxruntime backend runs on the CPU; got device {device}")
        return self

    def eval(self) -> OnnxModel:
        return self

    def feed(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        """The session's inputs from a batch dict, checked as the eager model checks its batch."""
        sizes = {int(batch[k].shape[0]) for k in (BRANCH_KEYS[m] for m in self.modalities) if k in batch}
        if not sizes:
            raise ValueError(
                f"the batch holds none of this model's inputs {[BRANCH_KEYS[m] for m in self.modalities]}"
            )
        if len(sizes) > 1:
            raise ValueError(f"modalities disagree on the batch size: {sorted(sizes)}")
        B = sizes.pop()
        feed: dict[str, np.ndarray] = {}
        anything = np.zeros(B, dtype=bool)
        for letter in self.modalities:
            key = BRANCH_KEYS[letter]
            shape = (B, *_expected_shape(self.config, letter))
            x = batch.get(key)
            if x is None:
                feed[key] = np.zeros(shape, dtype=np.float32)
                mask = np.zeros(B, dtype=bool)
            else:
                x = torch.as_tensor(x).detach().cpu()
                if letter != "M":  # uint8 images from the data pipeline, as the eager model takes them
                    x = normalize_images(x)
                feed[key] = np.ascontiguousarray(x.float().numpy())
                if feed[key].shape != shape:
                    raise ValueError(f"batch[{key!r}] has shape {feed[key].shape}; expected {shape}")
                m = batch.get(keys.present_key(key))
                mask = np.ones(B, dtype=bool) if m is None else torch.as_tensor(m).cpu().bool().numpy()
            feed[keys.present_key(key)] = np.ascontiguousarray(mask)
            anything |= mask
        if not anything.all():
            rows = np.flatnonzero(~anything).tolist()
            raise ValueError(f"case(s) at batch rows {rows} have none of the modalities {self.modalities}")
        return feed

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = graph_output_names(self.config.task_specs)
        return dict(zip(names, self.session.run(names, feed)))

    def __call__(self, batch: dict[str, Any], explain: bool = False) -> dict[str, Any]:
        if explain:
            raise ValueError("explain: the onnxruntime backend gives no attention maps; use the eager one")
        out = self.run(self.feed(batch))
        return {keys.LOGITS: {t.name: torch.from_numpy(out[f"{t.name}_logits"]) for t in self.tasks}}


def _expected_shape(config: ModelConfig, letter: str) -> tuple[int, ...]:
    if letter == "C":
        return (3, config.clinical.image_size, config.clinical.image_size)
    if letter == "D":
        return (3, config.dermoscopy.image_size, config.dermoscopy.image_size)
    return (config.metadata_dim,)


def parity_cases(config: ModelConfig, batch: int = 3, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """Named input sets for the parity check: every modality present, then each one absent in turn
    (when another remains), then mixed masks (the absent rows of each modality differ)."""
    base = random_inputs(config, batch, seed)
    cases = {"all present": base}
    letters = config.modalities
    for letter in letters if len(letters) > 1 else "":
        key = BRANCH_KEYS[letter]
        case = dict(base)
        case[key] = torch.zeros_like(base[key])
        case[keys.present_key(key)] = torch.zeros(batch, dtype=torch.bool)
        cases[f"without {key}"] = case
    if len(letters) > 1 and batch > 1:
        case = dict(base)
        for i, letter in enumerate(letters):
            mask = torch.ones(batch, dtype=torch.bool)
            mask[i % batch] = False
            case[keys.present_key(BRANCH_KEYS[letter])] = mask
        anything = torch.stack([case[keys.present_key(BRANCH_KEYS[m])] for m in letters]).any(0)
        if bool(anything.all()):
            cases["mixed"] = case
    return cases


def eager_probabilities(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    with torch.no_grad():
        logits = model(batch)[keys.LOGITS]
    return {
        t.name: (logits[t.name].sigmoid() if t.kind == MULTI else logits[t.name].softmax(-1)).numpy()
        for t in model.tasks
    }


def parity_check(
    model: torch.nn.Module, onnx_model: OnnxModel | str | Path, *, batch: int = 3, seed: int = 0
) -> dict[str, float]:
    """Max absolute difference of the probabilities (all tasks) between ``model`` in eager PyTorch and
    the exported graph in onnxruntime, per case kind of :func:`parity_cases`, on random inputs."""
    ort_model = onnx_model if isinstance(onnx_model, OnnxModel) else OnnxModel(onnx_model)
    model = model.eval()
    diffs: dict[str, float] = {}
    for name, inputs in parity_cases(model.config, batch, seed).items():
        eager = eager_probabilities(model, inputs)
        out = ort_model.run(ort_model.feed(inputs))
        diffs[name] = max(float(np.abs(out[f"{t}_probabilities"] - p).max()) for t, p in eager.items())
    return diffs


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()
