"""The FP16 ONNX of a bundle, made and checked on the host.

TensorRT 11 has no FP16 builder flag: a network is strongly typed and its precision is the
ONNX graph's, so an FP16 engine needs an FP16 ONNX. It is made here with ONNX Runtime's
``convert_float_to_float16`` (the converter of onnxconverter-common) with ``keep_io_types``:
inputs and outputs stay float32 (a Cast at each end), so the deploy kit, val.npz and the
host's logits are unchanged, and the file carries ``edgekd.precision = fp16``, the key
``deploy/build.py`` reads before it accepts ``--fp16`` on TensorRT 11.

Before the file goes into a bundle, both models are run by ONNX Runtime (CPU) on the same
validation images: the FP16 model's top-1 accuracy may drop at most ``MAX_DROP`` below the
FP32 model's, or the bundle is refused (the FP16 graph would lose accuracy on every device).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import atomic_write_bytes, sha256_file

#: the largest top-1 accuracy drop (absolute, 0..1) the FP16 ONNX may have against the FP32 ONNX
MAX_DROP = 0.01


@dataclass(frozen=True)
class PrecisionCheck:
    """Host ONNX Runtime figures of a reduced-precision ONNX against its FP32 source, on the
    same ``samples`` validation images: accuracies and top-1 agreement (fraction of images
    where both predict the same class)."""

    precision: str
    samples: int
    fp32_accuracy: float
    accuracy: float
    top1_agreement: float

    @property
    def drop(self) -> float:
        return self.fp32_accuracy - self.accuracy

    def to_dict(self) -> dict[str, float | int | str]:
        return {**asdict(self), "drop": self.drop}

    def line(self) -> str:
        return (f"{self.precision} ONNX on the host (ONNX Runtime, {self.samples} validation "
                f"images): accuracy {100 * self.accuracy:.2f}% vs fp32 {100 * self.fp32_accuracy:.2f}%, "
                f"top-1 agreement {100 * self.top1_agreement:.2f}%")


def compare_precision(precision: str, fp32_logits: np.ndarray, logits: np.ndarray,
                      labels: np.ndarray) -> PrecisionCheck:
    """Accuracy of both logit sets on ``labels`` and their top-1 agreement."""
    ref, pred = fp32_logits.argmax(1), logits.argmax(1)
    return PrecisionCheck(precision=precision, samples=int(len(labels)),
                          fp32_accuracy=float(np.mean(ref == labels)),
                          accuracy=float(np.mean(pred == labels)),
                          top1_agreement=float(np.mean(ref == pred)))


def _sort_nodes(graph: "onnx.GraphProto") -> None:
    """Put ``graph``'s nodes in topological order (Kahn). The converter appends the input Casts
    after their consumers; ONNX Runtime re-sorts, but the ONNX checker and TensorRT's ONNX
    parser need the order."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(name in available for name in n.input)]
        if not ready:
            raise EdgekdError("the FP16 graph has a cycle or a missing tensor: report this as a bug")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        done = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in done]
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def convert_fp16(onnx_path: str | Path, out_path: str | Path) -> Path:
    """Write an FP16 copy of ``onnx_path`` (float32 inputs/outputs kept) to ``out_path``, with the
    metadata of the source plus ``edgekd.precision = fp16`` and ``edgekd.source_sha256`` (so the
    device's measurements of its engine map back onto the FP32 export)."""
    try:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError:
        raise EdgekdError("an FP16 bundle needs 'onnx' and 'onnxruntime' on the host: "
                          "pip install onnx onnxruntime") from None
    model = onnx.load(str(onnx_path))
    props = {p.key: p.value for p in model.metadata_props}
    half = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    props.update({"edgekd.precision": "fp16",
                  "edgekd.source_sha256": props.get("edgekd.source_sha256") or sha256_file(onnx_path),
                  "edgekd.conversion": "onnxruntime convert_float_to_float16, keep_io_types"})
    _sort_nodes(half.graph)
    del half.metadata_props[:]
    onnx.helper.set_model_props(half, props)
    onnx.checker.check_model(half)
    out = Path(out_path)
    atomic_write_bytes(out, half.SerializeToString())
    return out


def make_checked_fp16(onnx_path: Path, out_path: Path, x_val: np.ndarray, y_val: np.ndarray,
                      fp32_logits: np.ndarray, max_drop: float = MAX_DROP) -> PrecisionCheck:
    """Convert, then run the FP16 ONNX on ``x_val`` (float32, normalised) with ONNX Runtime and
    compare with ``fp32_logits``; an accuracy drop above ``max_drop`` removes the file and
    raises (one line)."""
    from edgekd.ship.export import onnx_logits

    convert_fp16(onnx_path, out_path)
    result = compare_precision("fp16", fp32_logits, onnx_logits(out_path, x_val), y_val)
    if result.drop > max_drop:
        out_path.unlink(missing_ok=True)
        raise EdgekdError(f"the FP16 ONNX of '{onnx_path.name}' loses {100 * result.drop:.2f} points "
                          f"of accuracy on the host ({result.line()}), more than "
                          f"{100 * max_drop:.1f}: use a profile with precision fp32 or int8")
    return result
