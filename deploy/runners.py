"""Inference runners with one contract: ``infer(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]``.

* :class:`OrtRunner` — ONNX Runtime on its CPU or CUDA execution provider.
* :class:`TrtRunner` — a serialized TensorRT engine (8.5 to 11.x) through the name-based
  tensor API (``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``, ``set_input_shape``,
  ``set_tensor_address``, ``execute_async_v3`` on a CUDA stream), with device memory and the
  stream from deploy.cuda (the system libcudart, else cuda-python). The engine's TensorRT
  version is checked on load; a ``--dla`` engine is loaded onto the DLA core it was built for.

Each runner also exposes ``prepare(feed)`` + ``run_prepared()`` so that the timing routine
times exactly one synchronous inference (for TensorRT: enqueue + stream synchronise, inputs
already on the device), and a description (``backend``, ``precision``, ``device``,
``versions``) for the Measurement JSON. ``tensorrt`` and the CUDA binding are imported
lazily, inside :class:`TrtRunner`, so the ONNX Runtime path needs neither. A runner holds
device memory and a CUDA stream: release them with ``close()`` or a ``with`` block (nothing
is freed in ``__del__``, where the CUDA context may already be gone).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from deploy import onnxmeta
from deploy.backends import backend_for_path, get_backend
from deploy.cuda import Cuda
from deploy.errors import DeployError
from deploy.files import sha256_bytes
from deploy.onnxmeta import OnnxHeader, read_onnx_header
from deploy.system import board_name, cpu_name, package_version, versions
from deploy.trtapi import import_tensorrt

__all__ = ["OrtRunner", "TrtRunner", "open_runner", "run_batched", "read_sidecar", "sidecar_path",
           "backend_for", "import_tensorrt", "Cuda"]

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")  # the trt entry of deploy.backends
ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def sidecar_path(engine_path: str | Path) -> Path:
    """``model.engine`` -> ``model.engine.json``: what ``deploy build`` knew about the engine
    (TensorRT version, precision, the ONNX file's metadata such as the normalisation)."""
    return Path(str(engine_path) + ".json")


def backend_for(path: str | Path, backend: str | None = None) -> str:
    """``backend`` if given (checked against :mod:`deploy.backends`), else the backend that
    claims the file's suffix ("trt" for .engine/.plan/.trt) and "ort" otherwise."""
    if backend:
        return get_backend(backend).name
    return backend_for_path(path).name


def open_runner(path: str | Path, backend: str | None = None, *, provider: str = "cpu",
                threads: int = 0, batch: int | None = None,
                spinning: bool = True) -> "OrtRunner | TrtRunner":
    """Open ``path`` with the runner of ``backend`` (guessed from the suffix when None)."""
    path = Path(path)
    if not path.is_file():
        raise DeployError(f"model file '{path}' not found: check the path")
    return get_backend(backend_for(path, backend)).open(path, provider=provider, threads=threads, batch=batch,
                                                        spinning=spinning)


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


class _Runner:
    """What both runners share: the input description and the feed checks."""

    backend = ""
    input_name: str
    input_shape: tuple[int | None, ...]   # (batch, C, H, W); None where dynamic
    output_names: list[str]
    metadata: dict[str, str]
    precision: str
    device: str

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample, e.g. (C, H, W)."""
        return tuple(int(d) for d in self.input_shape[1:])  # type: ignore[arg-type]

    @property
    def fixed_batch(self) -> int | None:
        return self.input_shape[0]

    def check_batch(self, batch: int) -> None:
        if batch < 1:
            raise DeployError(f"batch {batch}: use a batch of at least 1")
        if self.fixed_batch is not None and batch != self.fixed_batch:
            raise DeployError(f"model has a fixed batch of {self.fixed_batch}, asked for {batch}: "
                              "use that batch, or export with 'edgekd export --dynamic-batch'")

    def random_feed(self, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
        """A standard-normal float32 input of shape (batch, C, H, W)."""
        self.check_batch(batch)
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((batch, *self.sample_shape)).astype(np.float32)
        return {self.input_name: x}

    def check_feed(self, feed: dict[str, np.ndarray]) -> None:
        if set(feed) != {self.input_name}:
            raise DeployError(f"feed has tensors {sorted(feed)}, the model takes "
                              f"['{self.input_name}']: name the input '{self.input_name}'")
        x = feed[self.input_name]
        if tuple(x.shape[1:]) != self.sample_shape:
            raise DeployError(f"input shape {tuple(x.shape[1:])} does not match the model's "
                              f"{self.sample_shape}: pass data shaped (N, "
                              f"{', '.join(map(str, self.sample_shape))})")
        self.check_batch(int(x.shape[0]))

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the runner holds (device memory, CUDA stream); idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --------------------------------------------------------------------------- ONNX Runtime
class OrtRunner(_Runner):
    """An ONNX model in an ONNX Runtime ``InferenceSession``.

    ``provider`` is "cpu" or "cuda" (CUDA falls back to CPU for nodes it lacks);
    ``threads`` sets ``intra_op_num_threads`` (0 = ONNX Runtime's default: one per core).
    ``profile_prefix`` turns on ONNX Runtime's per-node profiler (see deploy.profile).
    ``spinning=False`` stops idle intra-op threads from busy-waiting between runs
    (``session.intra_op.allow_spinning = 0``): on a shared machine spinning threads steal
    the cores the next model needs, which skews interleaved measurements.
    """

    backend = "ort"

    def __init__(self, path: str | Path, *, provider: str = "cpu", threads: int = 0,
                 profile_prefix: str | None = None, spinning: bool = True) -> None:
        self.path = Path(path)
        self.header: OnnxHeader = read_onnx_header(self.path)  # missing / not ONNX -> DeployError
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
        self.spinning = spinning
        if profile_prefix:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        providers = [wanted] + (["CPUExecutionProvider"] if wanted != "CPUExecutionProvider" else [])
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as error:  # ORT raises its own Fail/InvalidGraph types
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise DeployError(f"ONNX Runtime cannot load '{self.path}': {message}") from None
        if wanted not in self.session.get_providers():
            raise DeployError(f"ONNX Runtime could not start {wanted} here (it fell back to "
                              f"{', '.join(self.session.get_providers())}): check the CUDA/cuDNN "
                              "install, or use --provider cpu")
        self.ort_version = ort.__version__
        self.provider = provider
        self.threads = int(threads)
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
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.precision = self.metadata.get(onnxmeta.PRECISION, "fp32")
        self.device = cpu_name() if provider == "cpu" else f"CUDA GPU via ONNX Runtime ({cpu_name()} host)"
        self._prepared: dict[str, np.ndarray] | None = None

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.check_feed(feed)
        x = np.ascontiguousarray(feed[self.input_name], dtype=np.float32)
        outputs = self.session.run(self.output_names, {self.input_name: x})
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


# --------------------------------------------------------------------------- TensorRT
def read_sidecar(engine_path: str | Path) -> dict[str, Any]:
    path = sidecar_path(engine_path)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise DeployError(f"'{path}' is not valid JSON: delete it and rebuild the engine") from None


class TrtRunner(_Runner):
    """A serialized TensorRT engine (from ``python -m deploy build``, TensorRT 8.5 to 11.x).

    On load the engine's TensorRT version (recorded by ``deploy build`` next to the engine)
    is compared with the installed one, the sidecar is checked to belong to this engine, the
    runtime is pointed at the DLA core the engine was built for, and
    ``Runtime.deserialize_cuda_engine`` returning None (another version, another GPU, or a
    corrupt file) becomes one clear error. ``close()`` frees the device memory and destroys
    the CUDA stream.
    """

    backend = "trt"

    def __init__(self, path: str | Path, *, batch: int | None = None, cuda: Any = None) -> None:
        self.path = Path(path)
        self._buffers: dict[str, tuple[int, np.ndarray]] = {}
        self._batch: int | None = None
        self.stream = None
        if not self.path.is_file():
            raise DeployError(f"engine file '{self.path}' not found: check the path")
        self.info = read_sidecar(self.path)
        built_with = self.info.get("tensorrt")
        try:
            trt = import_tensorrt()
        except DeployError:
            if not built_with:
                raise
            raise DeployError(f"engine '{self.path.name}' was built with TensorRT {built_with} and "
                              "no TensorRT the kit can use is installed here: run it where that "
                              "version is, or rebuild it on this device: python -m deploy build "
                              "model.onnx") from None
        self.trt = trt
        if built_with and built_with != trt.__version__:
            raise DeployError(f"engine '{self.path.name}' was built with TensorRT {built_with}, "
                              f"this device has TensorRT {trt.__version__}: rebuild it here "
                              "with: python -m deploy build model.onnx")
        data = self.path.read_bytes()
        recorded = self.info.get("engine_sha256")
        if recorded and recorded != sha256_bytes(data):
            raise DeployError(f"'{sidecar_path(self.path).name}' describes another engine than "
                              f"'{self.path.name}' (sha256 differs): rebuild with python -m deploy "
                              "build model.onnx")
        self.cuda = cuda if cuda is not None else Cuda()
        self.device = self.cuda.device_name()
        self.logger = _collecting_logger(trt)
        self.runtime = trt.Runtime(self.logger)
        dla_core = self.info.get("dla_core")
        if dla_core is not None:
            # must be set before deserializing, else a --dla 1 engine runs on core 0
            self.runtime.DLA_core = int(dla_core)
        engine = self.runtime.deserialize_cuda_engine(data)
        if engine is None:
            detail = "; ".join(self.logger.errors[-2:]) or "no details"
            raise DeployError(f"TensorRT {trt.__version__} cannot load engine '{self.path.name}' "
                              f"({detail}): it was built by another TensorRT version or for "
                              "another GPU, or is not an engine; rebuild it on this device with: "
                              "python -m deploy build model.onnx")
        self.engine = engine
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise DeployError(f"engine has {len(inputs)} inputs: the deploy kit runs "
                              "single-input classifiers")
        self.input_name = inputs[0]
        self.output_names = [n for n in names if n not in inputs]
        shape = tuple(engine.get_tensor_shape(self.input_name))
        self.input_shape = tuple(d if d > 0 else None for d in shape)
        if self.input_shape[0] is None:
            low, _opt, high = engine.get_tensor_profile_shape(self.input_name, 0)
            self.batch_range = (int(low[0]), int(high[0]))
        else:
            self.batch_range = (self.input_shape[0], self.input_shape[0])
        self.metadata = dict(self.info.get("metadata", {}))
        self.precision = str(self.info.get("precision", "unknown"))
        self.stream = self.cuda.stream()
        self.stream_handle = self.stream.handle
        if batch is not None:
            try:
                self._allocate(batch)
            except BaseException:
                self.close()
                raise

    def check_batch(self, batch: int) -> None:
        low, high = self.batch_range
        if low == high and batch != low:
            raise DeployError(f"engine was built for a fixed batch of {low}, asked for {batch}: "
                              f"use --batch {low}, or export with 'edgekd export --dynamic-batch' "
                              "and rebuild the engine")
        if not low <= batch <= high:
            raise DeployError(f"engine accepts a batch from {low} to {high}, asked for {batch}: "
                              "rebuild it with --min/--opt/--max shapes that cover it")

    def _allocate(self, batch: int) -> None:
        """Set the input shape for ``batch`` and (re)allocate device + host buffers."""
        if batch == self._batch:
            return
        self.check_batch(batch)
        self._free()
        trt = self.trt
        if not self.context.set_input_shape(self.input_name, (batch, *self.sample_shape)):
            raise DeployError(f"TensorRT rejected input shape {(batch, *self.sample_shape)}")
        for name in [self.input_name, *self.output_names]:
            shape = tuple(self.context.get_tensor_shape(name))
            host = np.empty(shape, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))
            pointer = self.cuda.malloc(host.nbytes)
            self._buffers[name] = (pointer, host)
            self.context.set_tensor_address(name, pointer)
        self._batch = batch

    def _free(self) -> None:
        buffers = list(self._buffers.values())
        self._buffers.clear()
        self._batch = None
        for pointer, _host in buffers:
            self.cuda.free(pointer)

    def close(self) -> None:
        """Free the device buffers and destroy the CUDA stream (idempotent)."""
        try:
            self._free()
        finally:
            stream, self.stream = self.stream, None
            if stream is not None:
                stream.close()

    def prepare(self, feed: dict[str, np.ndarray]) -> None:
        """Copy the input to the device (the timed part is then enqueue + synchronise)."""
        self.check_feed(feed)
        x = feed[self.input_name]
        self._allocate(int(x.shape[0]))
        pointer, host = self._buffers[self.input_name]
        host[...] = x
        self.cuda.h2d(pointer, host, self.stream)
        self.cuda.sync(self.stream)

    def run_prepared(self) -> None:
        if not self.context.execute_async_v3(self.stream_handle):
            raise DeployError("TensorRT execute_async_v3 failed: see the TensorRT log above")
        self.cuda.sync(self.stream)

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.prepare(feed)
        if not self.context.execute_async_v3(self.stream_handle):
            raise DeployError("TensorRT execute_async_v3 failed: see the TensorRT log above")
        for name in self.output_names:
            pointer, host = self._buffers[name]
            self.cuda.d2h(host, pointer, self.stream)
        self.cuda.sync(self.stream)
        return {name: self._buffers[name][1].copy() for name in self.output_names}

    def layer_types(self) -> dict[str, str]:
        """Layer name -> layer type from the engine inspector (engines are built with
        detailed profiling verbosity, so the JSON carries ``LayerType``)."""
        trt = self.trt
        inspector = self.engine.create_engine_inspector()
        try:
            info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
        except ValueError:
            return {}
        types: dict[str, str] = {}
        for layer in info.get("Layers", []):
            if isinstance(layer, dict):
                types[str(layer.get("Name"))] = str(layer.get("LayerType", "unknown"))
        return types

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "trt",
            "provider": "TensorRT",
            "precision": self.precision,
            "device": f"{board_name()} ({self.device})" if board_name() else self.device,
            "device_kind": "gpu",
            "dla_core": self.info.get("dla_core"),
            "versions": versions(tensorrt=self.trt.__version__,
                                 cuda_python=package_version("cuda-python"),
                                 **self.cuda.versions()),
        }


def _collecting_logger(trt: Any) -> Any:
    """A ``trt.ILogger`` that prints warnings and keeps error messages for our one line."""

    class CollectingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(" ".join(str(msg).split()))
            elif severity == trt.ILogger.Severity.WARNING:
                print(f"[TensorRT] {msg}", file=sys.stderr)

    return CollectingLogger()
