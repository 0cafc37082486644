"""The TensorRT runner of :mod:`deploy.runners`: a serialized engine (8.5 to 11.x) through the
name-based tensor API, device memory and the stream from :mod:`deploy.cuda`. ``tensorrt`` is
imported when a runner is opened, so the ONNX Runtime path needs neither it nor CUDA."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from .cuda import Cuda
from .errors import DeployError
from .files import loads_json, read_json, sha256_bytes
from .runner_base import _Runner, sidecar_path
from .system import board_name, package_version, versions
from .trtapi import import_tensorrt

__all__ = ["TrtRunner", "read_sidecar"]


def read_sidecar(engine_path: str | Path) -> dict[str, Any]:
    path = sidecar_path(engine_path)
    if not path.is_file():
        return {}
    try:
        return read_json(path)
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
        self.trt = trt = _matching_tensorrt(self.path, self.info.get("tensorrt"))
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
        self.engine = self._deserialize(data)
        self.context = self.engine.create_execution_context()
        self._read_io()
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

    def _deserialize(self, data: bytes) -> Any:
        """The ``ICudaEngine`` on the DLA core it was built for; None becomes one error line."""
        dla_core = self.info.get("dla_core")
        if dla_core is not None:
            # must be set before deserializing, else a --dla 1 engine runs on core 0
            self.runtime.DLA_core = int(dla_core)
        engine = self.runtime.deserialize_cuda_engine(data)
        if engine is None:
            detail = "; ".join(self.logger.errors[-2:]) or "no details"
            raise DeployError(f"TensorRT {self.trt.__version__} cannot load engine '{self.path.name}' "
                              f"({detail}): it was built by another TensorRT version or for "
                              "another GPU, or is not an engine; rebuild it on this device with: "
                              "python -m deploy build model.onnx")
        return engine

    def _read_io(self) -> None:
        """The one input's name and shape, the batch range of a dynamic batch, the outputs."""
        engine, trt = self.engine, self.trt
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
            info = loads_json(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
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


def _matching_tensorrt(path: Path, built_with: str | None) -> Any:
    """The installed ``tensorrt`` module, refused unless it is the version the engine was
    built with (as recorded in its sidecar)."""
    try:
        trt = import_tensorrt()
    except DeployError:
        if not built_with:
            raise
        raise DeployError(f"engine '{path.name}' was built with TensorRT {built_with} and "
                          "no TensorRT the kit can use is installed here: run it where that "
                          "version is, or rebuild it on this device: python -m deploy build "
                          "model.onnx") from None
    if built_with and built_with != trt.__version__:
        raise DeployError(f"engine '{path.name}' was built with TensorRT {built_with}, "
                          f"this device has TensorRT {trt.__version__}: rebuild it here "
                          "with: python -m deploy build model.onnx")
    return trt


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
