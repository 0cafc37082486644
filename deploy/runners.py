"""Inference runners with one contract: ``infer(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]``.

* :class:`OrtRunner` — ONNX Runtime on its CPU or CUDA execution provider.
* :class:`TrtRunner` (in :mod:`deploy.trt_runner`) — a serialized TensorRT engine (8.5 to 11.x) through the name-based
  tensor API (``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``, ``set_input_shape``,
  ``set_tensor_address``, ``execute_async_v3`` on a CUDA stream), with device memory and the
  stream from deploy.cuda (the system libcudart, else cuda-python). The engine's TensorRT
  version is checked on load; a ``--dla`` engine is loaded onto the DLA core it was built for.

Each runner also exposes ``prepare(feed)`` + ``run_prepared()`` so that the timing routine
times exactly one synchronous inference (for TensorRT: enqueue + stream synchronise, inputs
already on the device), and a description (``backend``, ``precision``, ``device``,
``versions``) for the Measurement JSON; the shared checks are in :mod:`deploy.runner_base`.
``tensorrt`` and the CUDA binding are imported lazily, inside :class:`TrtRunner`, so the ONNX Runtime path needs neither. A runner holds
device memory and a CUDA stream: release them with ``close()`` or a ``with`` block (nothing
is freed in ``__del__``, where the CUDA context may already be gone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import onnxmeta
from .cuda import Cuda
from .errors import DeployError
from .onnxmeta import OnnxHeader, read_onnx_header
from .runner_base import _Runner, sidecar_path  # noqa: F401 - sidecar_path re-exported
from .system import board_name, cpu_name, versions
from .trt_runner import TrtRunner, _collecting_logger, read_sidecar  # noqa: F401 - re-exported
from .trtapi import import_tensorrt

__all__ = ["OrtRunner", "TrtRunner", "run_batched", "read_sidecar", "sidecar_path", "import_tensorrt", "Cuda"]

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")  # the trt entry of deploy.backends
ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def _ort_session(path: Path, provider: str, threads: int, profile_prefix: str | None,
                 spinning: bool, exact_qdq: bool = False) -> tuple[Any, str]:
    """An ``InferenceSession`` on ``provider`` (checked to be available and started) and ONNX
    Runtime's version; every failure is one :class:`DeployError` line. ``exact_qdq`` keeps
    Q/DQ pairs as written (``session.disable_quant_qdq``) instead of fusing them into ONNX
    Runtime's integer kernels."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise DeployError("onnxruntime is not installed: pip install onnxruntime (or "
                          "onnxruntime-gpu), or use --backend trt with an engine") from None
    if provider not in ORT_PROVIDERS:
        raise DeployError(f"unknown provider '{provider}': use cpu or cuda")
    wanted = ORT_PROVIDERS[provider]
    if wanted not in ort.get_available_providers():
        raise DeployError(f"ONNX Runtime here has no {wanted} (it has "
                          f"{', '.join(ort.get_available_providers())}): install "
                          "onnxruntime-gpu or use --provider cpu")
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(0, int(threads))
    options.log_severity_level = 3
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if exact_qdq:
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    providers = [wanted] + (["CPUExecutionProvider"] if wanted != "CPUExecutionProvider" else [])
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as error:  # ORT raises its own Fail/InvalidGraph types
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DeployError(f"ONNX Runtime cannot load '{path}': {message}") from None
    if wanted not in session.get_providers():
        raise DeployError(f"ONNX Runtime could not start {wanted} here (it fell back to "
                          f"{', '.join(session.get_providers())}): check the CUDA/cuDNN "
                          "install, or use --provider cpu")
    return session, ort.__version__


def run_batched(runner: "OrtRunner | TrtRunner", x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The first output of ``runner.infer`` over ``x`` in chunks of the model's fixed batch,
    else of ``batch_size`` (at most the engine's max); a short last chunk is padded by
    repeating its last sample and the padding's outputs are dropped."""
    low, high = getattr(runner, "batch_range", (1, batch_size))
    step = runner.fixed_batch or min(batch_size, high)
    outputs = []
    for start in range(0, len(x), step):
        chunk = x[start:start + step]
        n = len(chunk)
        size = step if runner.fixed_batch else max(n, low)
        if n < size:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - n, axis=0)])
        result = runner.infer({runner.input_name: chunk})
        outputs.append(result[runner.output_names[0]][:n])
    return np.concatenate(outputs)


# --------------------------------------------------------------------------- ONNX Runtime
class OrtRunner(_Runner):
    """An ONNX model in an ONNX Runtime ``InferenceSession``.

    ``provider`` is "cpu" or "cuda" (CUDA falls back to CPU for nodes it lacks);
    ``threads`` sets ``intra_op_num_threads`` (0 = ONNX Runtime's default: one per core).
    ``profile_prefix`` turns on ONNX Runtime's per-node profiler (see deploy.profile).
    ``spinning=False`` stops idle intra-op threads from busy-waiting between runs
    (``session.intra_op.allow_spinning = 0``): on a shared machine spinning threads steal
    the cores the next model needs, which skews interleaved measurements.

    An INT8 Q/DQ model (``edgekd.precision`` int8) gives its outputs (:meth:`infer`) from a
    second session that computes the Q/DQ arithmetic as written: ONNX Runtime's CPU provider
    otherwise fuses Q/DQ pairs into u8s8 integer kernels whose int16 partial sums saturate on
    x86 CPUs without VNNI (AVX2), so the host's accuracy figure would depend on the host's
    instruction set, while TensorRT accumulates in int32. Timing (:meth:`run_prepared`) uses
    the fused kernels, ONNX Runtime's real INT8 speed.
    """

    backend = "ort"

    def __init__(self, path: str | Path, *, provider: str = "cpu", threads: int = 0,
                 profile_prefix: str | None = None, spinning: bool = True) -> None:
        self.path = Path(path)
        self.header: OnnxHeader = read_onnx_header(self.path)  # missing / not ONNX -> DeployError
        self.spinning = spinning
        self.session, self.ort_version = _ort_session(self.path, provider, threads, profile_prefix,
                                                      spinning)
        self.provider = provider
        self.threads = int(threads)
        self._read_io()
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.precision = self.metadata.get(onnxmeta.PRECISION, "fp32")
        self._exact = self.session
        if self.precision == "int8":
            self._exact = _ort_session(self.path, provider, threads, None, spinning, exact_qdq=True)[0]
        self.device = cpu_name() if provider == "cpu" else f"CUDA GPU via ONNX Runtime ({cpu_name()} host)"
        self._prepared: dict[str, np.ndarray] | None = None

    def _read_io(self) -> None:
        """The one input's name and shape (only the batch may be dynamic), the output names."""
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise DeployError(f"'{self.path}' has {len(inputs)} inputs: the deploy kit runs "
                              "single-input classifiers")
        self.input_name = inputs[0].name
        if any(isinstance(d, int) and d == 0 for d in inputs[0].shape):
            raise DeployError(f"'{self.path}' input shape {inputs[0].shape} has a zero-size "
                              "dimension, so no image fits it: re-export the model with batch 1 "
                              "or more")
        self.input_shape = tuple(d if isinstance(d, int) and d > 0 else None
                                 for d in inputs[0].shape)
        if len(self.input_shape) < 2 or any(d is None for d in self.input_shape[1:]):
            raise DeployError(f"'{self.path}' input shape {inputs[0].shape}: only the batch "
                              "dimension may be dynamic")
        self.output_names = [o.name for o in self.session.get_outputs()]

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.check_feed(feed)
        x = np.ascontiguousarray(feed[self.input_name], dtype=np.float32)
        outputs = self._exact.run(self.output_names, {self.input_name: x})
        return dict(zip(self.output_names, outputs))

    def prepare(self, feed: dict[str, np.ndarray]) -> None:
        self.check_feed(feed)
        self._prepared = {self.input_name: np.ascontiguousarray(feed[self.input_name],
                                                                dtype=np.float32)}

    def run_prepared(self) -> None:
        self.session.run(self.output_names, self._prepared)

    def end_profiling(self) -> str:
        return self.session.end_profiling()

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "ort",
            "provider": ORT_PROVIDERS[self.provider],
            "threads": self.threads,
            "precision": self.precision,
            "device": board_name() or self.device,
            "device_kind": "cpu" if self.provider == "cpu" else "gpu",
            "versions": versions(onnxruntime=self.ort_version),
        }


