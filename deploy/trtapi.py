"""Which TensorRT the kit runs on, and exactly which TensorRT names each version path uses.

A bundle meets TensorRT 8.5 (JetPack 5.1), 8.6 (JetPack 6.0), 10.3 (JetPack 6.1/6.2), 10.16
(JetPack 7.2) and 11.x (JetPack 7.2.2+, x86 pip). The builder and the runner pick one *path*
per major version:

* ``8.x`` (8.5, 8.6): ``create_network`` needs the ``EXPLICIT_BATCH`` flag; precision from the
  ``BuilderFlag.FP16`` / ``INT8`` flags; ``ParserError.node()`` is the node index.
* ``10.x``: explicit batch is the only mode (flag 0); the same builder flags (weak typing).
* ``11.x``: strongly typed networks only: no ``FP16``/``INT8`` builder flags, precision comes
  from the ONNX itself (an FP16 graph, explicit Q/DQ).

The named-tensor runtime API (``num_io_tensors``, ``set_tensor_address``, ``execute_async_v3``)
exists from 8.5 on, so the runner is the same on every path.

:data:`USES` lists, per path, every TensorRT attribute the kit touches, as ``Owner.member``
(owner = a class of the ``tensorrt`` module, possibly nested such as ``ILogger.Severity``; a
bare name is a module attribute). ``tests/test_trt_api.py`` checks each against the real Python
bindings of every version the path serves (listings in ``tests/data/trt_api/``, made by
``tools/refresh_trt_api.py``), and checks by AST that the code uses nothing missing from here.
"""

from __future__ import annotations

from typing import Any

from .errors import DeployError

SUPPORTED = "8.5, 8.6, 10.x or 11.x"

# the versions each path serves, as listed in tests/data/trt_api/ (see its README)
SERVES = {
    "8.x": ("8.5", "8.6"),
    "10.x": ("10.3", "10.16"),
    "11.x": ("11.4",),
}

_COMMON = (
    # module
    "__version__", "Builder", "OnnxParser", "Runtime", "ILogger", "IProfiler", "nptype",
    "MemoryPoolType", "ProfilingVerbosity", "DeviceType", "LayerType", "TensorIOMode",
    "LayerInformationFormat",
    # logging and profiling
    "ILogger.Severity", "ILogger.Severity.ERROR", "ILogger.Severity.INTERNAL_ERROR",
    "ILogger.Severity.WARNING", "IProfiler.report_layer_time",
    # build
    "Builder.create_network", "Builder.create_builder_config", "Builder.build_serialized_network",
    "Builder.create_optimization_profile", "Builder.num_DLA_cores",
    "OnnxParser.parse_from_file", "OnnxParser.num_errors", "OnnxParser.get_error",
    "ParserError.desc",
    "INetworkDefinition.get_input", "INetworkDefinition.num_layers", "INetworkDefinition.get_layer",
    "ILayer.type", "ITensor.shape", "ITensor.name",
    "LayerType.QUANTIZE", "LayerType.DEQUANTIZE",
    "IBuilderConfig.set_memory_pool_limit", "IBuilderConfig.profiling_verbosity",
    "IBuilderConfig.default_device_type", "IBuilderConfig.DLA_core", "IBuilderConfig.set_flag",
    "IBuilderConfig.create_timing_cache", "IBuilderConfig.set_timing_cache",
    "IBuilderConfig.get_timing_cache", "IBuilderConfig.add_optimization_profile",
    "ITimingCache.serialize", "IOptimizationProfile.set_shape",
    "MemoryPoolType.WORKSPACE", "ProfilingVerbosity.DETAILED", "DeviceType.DLA",
    "BuilderFlag.GPU_FALLBACK",
    # run
    "Runtime.DLA_core", "Runtime.deserialize_cuda_engine",
    "ICudaEngine.create_execution_context", "ICudaEngine.num_io_tensors",
    "ICudaEngine.get_tensor_name", "ICudaEngine.get_tensor_mode", "ICudaEngine.get_tensor_shape",
    "ICudaEngine.get_tensor_dtype", "ICudaEngine.get_tensor_profile_shape",
    "ICudaEngine.create_engine_inspector", "TensorIOMode.INPUT",
    "IExecutionContext.set_input_shape", "IExecutionContext.get_tensor_shape",
    "IExecutionContext.set_tensor_address", "IExecutionContext.execute_async_v3",
    "IExecutionContext.profiler",
    "EngineInspector.get_engine_information", "LayerInformationFormat.JSON",
)

USES: dict[str, tuple[str, ...]] = {
    "8.x": _COMMON + ("NetworkDefinitionCreationFlag", "NetworkDefinitionCreationFlag.EXPLICIT_BATCH",
                      "ParserError.node",
                      "BuilderFlag", "BuilderFlag.FP16", "BuilderFlag.INT8"),
    "10.x": _COMMON + ("ParserError.node_name", "ParserError.node_operator",
                       "BuilderFlag", "BuilderFlag.FP16", "BuilderFlag.INT8"),
    "11.x": _COMMON + ("ParserError.node_name", "ParserError.node_operator", "BuilderFlag"),
}

# cuda-python's runtime module, where the kit falls back to it (deploy.cuda.CudaPythonCudart)
CUDA_PYTHON_USES = (
    "cudaGetDeviceCount", "cudaGetDevice", "cudaGetDeviceProperties", "cudaRuntimeGetVersion",
    "cudaDriverGetVersion", "cudaMalloc", "cudaFree", "cudaStreamCreate", "cudaStreamDestroy",
    "cudaStreamSynchronize", "cudaMemcpyAsync", "cudaGetErrorName", "cudaError_t",
    "cudaMemcpyKind", "cudaMemcpyKind.cudaMemcpyHostToDevice",
    "cudaMemcpyKind.cudaMemcpyDeviceToHost",
)
# libcudart symbols of the ctypes binding (deploy.cuda.CtypesCudart); one of the two
# cudaGetDeviceProperties names is enough
LIBCUDART_USES = (
    "cudaGetDeviceCount", "cudaGetDevice", "cudaRuntimeGetVersion", "cudaDriverGetVersion",
    "cudaMalloc", "cudaFree", "cudaStreamCreate", "cudaStreamDestroy", "cudaStreamSynchronize",
    "cudaMemcpyAsync", "cudaGetErrorName",
)


def version_tuple(version: str) -> tuple[int, int]:
    parts = str(version).split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise DeployError(f"cannot read the TensorRT version '{version}': reinstall TensorRT") from None


def api_path(version: str) -> str:
    """The kit's code path for TensorRT ``version``: "8.x", "10.x" or "11.x"."""
    major, minor = version_tuple(version)
    if major == 8 and minor >= 5:
        return "8.x"
    if major in (10, 11):
        return f"{major}.x"
    if major < 8 or (major == 8 and minor < 5):
        raise DeployError(f"TensorRT {version} is too old: the deploy kit needs TensorRT "
                          f"{SUPPORTED} (8.5 added the named-tensor API it runs on; JetPack 5.1 "
                          "has 8.5)")
    raise DeployError(f"TensorRT {version} is not one the deploy kit knows ({SUPPORTED}): use "
                      "one of those, or update the kit")


def strongly_typed(path: str) -> bool:
    """TensorRT 11 removed weak typing: no precision builder flags, precision from the ONNX."""
    return path == "11.x"


def import_tensorrt() -> Any:
    """``import tensorrt``, refusing versions the kit has no path for (one line)."""
    try:
        import tensorrt as trt
    except ImportError:
        raise DeployError(f"TensorRT is not installed here: use a device with TensorRT {SUPPORTED} "
                          "(a Jetson's system python3, which JetPack gives TensorRT, or pip "
                          "install tensorrt on a PC), or --backend ort") from None
    api_path(trt.__version__)
    return trt
