"""``python -m deploy build``: ONNX -> serialized TensorRT 10 engine (+ ``.engine.json``).

TensorRT 10 builder API, step by step:

1. ``trt.Builder(logger).create_network(0)`` — explicit batch is the only mode in TensorRT 10
   (the EXPLICIT_BATCH flag is deprecated and ignored); the network is *weakly typed* so the
   ``FP16``/``INT8`` builder flags choose precisions (a strongly typed network would take
   them from the ONNX tensor types instead and forbid those flags). TensorRT 11 removed weak
   typing: there the network is created ``STRONGLY_TYPED``, INT8 comes from the Q/DQ nodes
   alone and ``--fp16`` is refused with a one-line error.
2. ``trt.OnnxParser(network, logger).parse_from_file(path)``; on failure every
   ``parser.get_error(i)`` (description, node, operator) is listed in the error.
3. ``builder.create_builder_config()``: ``set_memory_pool_limit(MemoryPoolType.WORKSPACE,
   MiB << 20)``; ``BuilderFlag.FP16`` / ``BuilderFlag.INT8``; detailed profiling verbosity
   (layer types for ``deploy profile``); a timing cache (``create_timing_cache`` from the
   file's bytes, ``set_timing_cache``; saved back after the build so the next build skips
   tactic timing); DLA (``default_device_type = DeviceType.DLA``, ``DLA_core``, and
   ``BuilderFlag.GPU_FALLBACK`` for layers the DLA cannot run); for a dynamic batch one
   optimisation profile (``create_optimization_profile().set_shape(input, min, opt, max)``).
4. ``builder.build_serialized_network(network, config)`` -> bytes, written atomically,
   with ``model.engine.json``: TensorRT version (checked when the engine is loaded), GPU,
   precision, shapes, and the ONNX model's metadata (normalisation, classes, ...).

INT8 is explicit quantization (see deploy.quantize): a network without Q/DQ layers is first
quantized with ``--calib`` images, then built with the INT8 flag.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from deploy.files import sha256_file, write_bytes_atomic
from deploy.errors import DeployError
from deploy.onnxmeta import read_onnx_header
from deploy.runners import Cuda, _collecting_logger, import_tensorrt, sidecar_path

ENGINE_FORMAT = "edgekd.engine/1"


@dataclass(frozen=True)
class BuildOptions:
    fp16: bool = False
    int8: bool = False
    calib: str | None = None
    workspace_mb: int = 1024
    timing_cache: str | None = None
    dla_core: int | None = None
    min_shape: tuple[int, ...] | None = None
    opt_shape: tuple[int, ...] | None = None
    max_shape: tuple[int, ...] | None = None

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else "fp16" if self.fp16 else "fp32"


def _strongly_typed(trt: Any) -> bool:
    """TensorRT 11 removed weak typing (and the FP16/INT8 builder flags): networks there are
    strongly typed, precisions come from the ONNX types and Q/DQ nodes."""
    return int(trt.__version__.split(".")[0]) >= 11


def _parse(trt: Any, builder: Any, logger: Any, onnx_path: Path) -> tuple[Any, Any]:
    flags = (1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)) if _strongly_typed(trt) else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        problems = []
        for i in range(parser.num_errors):
            error = parser.get_error(i)
            node = getattr(error, "node_name", lambda: "")() or str(error.node())
            operator = getattr(error, "node_operator", lambda: "")()
            problems.append(f"{error.desc()} (node {node}{' ' + operator if operator else ''})")
        raise DeployError(f"TensorRT's ONNX parser rejects '{onnx_path.name}': "
                          f"{'; '.join(problems[:3]) or 'no details'}"
                          f"{f' (+{len(problems) - 3} more)' if len(problems) > 3 else ''}: "
                          "re-export with 'edgekd export' (opset 18)")
    return network, parser


def _has_qdq(trt: Any, network: Any) -> bool:
    return any(network.get_layer(i).type in (trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE)
               for i in range(network.num_layers))


def _batch_shapes(network: Any, options: BuildOptions, metadata: dict[str, str]
                  ) -> dict[str, tuple[int, ...]] | None:
    """min/opt/max input shapes for a dynamic batch (None for a static model)."""
    given = (options.min_shape, options.opt_shape, options.max_shape)
    shape = tuple(network.get_input(0).shape)
    if shape[0] != -1:
        if any(given):
            raise DeployError(f"the model has a static input {shape}: --min/--opt/--max need a "
                              "model exported with 'edgekd export --dynamic-batch'")
        return None
    sample = shape[1:]
    if all(given):
        low, opt, high = given
    elif any(given):
        raise DeployError("give all three of --min, --opt and --max (e.g. 1x1x28x28 8x1x28x28 32x1x28x28)")
    else:
        batch = json.loads(metadata.get("edgekd.batch", "{}"))
        if "min" not in batch:
            raise DeployError(f"the model has a dynamic batch: pass --min/--opt/--max shapes, "
                              f"e.g. --min 1x{'x'.join(map(str, sample))}")
        low, opt, high = ((batch[k], *sample) for k in ("min", "opt", "max"))
    for name, value in (("min", low), ("opt", opt), ("max", high)):
        if tuple(value[1:]) != tuple(sample):
            raise DeployError(f"--{name} {'x'.join(map(str, value))} does not match the model "
                              f"input (N, {', '.join(map(str, sample))}): change only the batch")
    if not 1 <= low[0] <= opt[0] <= high[0]:
        raise DeployError(f"batch sizes min {low[0]}, opt {opt[0]}, max {high[0]}: need 1 <= min <= opt <= max")
    return {"min": tuple(low), "opt": tuple(opt), "max": tuple(high)}


def build_engine(onnx_path: str | Path, out: str | Path | None = None,
                 options: BuildOptions = BuildOptions()) -> Path:
    """Build ``onnx_path`` into a TensorRT engine; returns the engine path."""
    onnx_path = Path(onnx_path)
    header = read_onnx_header(onnx_path)  # missing or non-ONNX file -> one line
    engine_path = Path(out) if out else onnx_path.with_suffix(".engine")
    if options.calib and not options.int8:
        raise DeployError("--calib is only used with --int8: add --int8 or drop --calib")
    trt = import_tensorrt()
    logger = _collecting_logger(trt)
    builder = trt.Builder(logger)
    network, parser = _parse(trt, builder, logger, onnx_path)
    source, metadata = onnx_path, dict(header.metadata)
    if options.int8 and not _has_qdq(trt, network):
        if not options.calib:
            raise DeployError(f"'{onnx_path.name}' has no Q/DQ nodes, so INT8 needs calibration "
                              "images: add --calib calib.npz (or build model.int8.onnx)")
        from deploy.quantize import quantize_qdq

        source = quantize_qdq(onnx_path, options.calib, onnx_path.with_suffix(".int8.onnx"))
        print(f"quantized to {source} (explicit Q/DQ)", file=sys.stderr)
        metadata = dict(read_onnx_header(source).metadata)
        network, parser = _parse(trt, builder, logger, source)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_mb) << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if _strongly_typed(trt):
        if options.fp16:
            raise DeployError(f"TensorRT {trt.__version__} removed the FP16 builder flag (strong "
                              "typing only): use TensorRT 10 (JetPack 6) for --fp16, or build fp32")
    else:
        if options.fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        if options.int8:
            config.set_flag(trt.BuilderFlag.INT8)
    if options.dla_core is not None:
        cores = builder.num_DLA_cores
        if cores == 0:
            raise DeployError("this device has no DLA: drop --dla (DLA exists on Jetson Xavier/Orin AGX and NX)")
        if not 0 <= options.dla_core < cores:
            raise DeployError(f"DLA core {options.dla_core} does not exist: this device has cores 0..{cores - 1}")
        if not (options.fp16 or options.int8):
            raise DeployError("the DLA runs FP16 or INT8 only: add --fp16 (or --int8)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)

    shapes = _batch_shapes(network, options, metadata)
    if shapes is not None:
        profile = builder.create_optimization_profile()
        profile.set_shape(network.get_input(0).name, shapes["min"], shapes["opt"], shapes["max"])
        config.add_optimization_profile(profile)

    cache_path = Path(options.timing_cache) if options.timing_cache else None
    if cache_path is not None:
        cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
        if not config.set_timing_cache(cache, ignore_mismatch=False):
            raise DeployError(f"timing cache '{cache_path}' was made by another TensorRT or GPU: "
                              "delete it; it is rebuilt on the next build")

    started = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        detail = "; ".join(logger.errors[-3:]) or "see the TensorRT log above"
        raise DeployError(f"TensorRT could not build '{source.name}' ({detail}): try a larger "
                          "--workspace-mb, or drop --dla/--int8")
    seconds = time.perf_counter() - started
    write_bytes_atomic(engine_path, bytes(plan))
    if cache_path is not None:
        write_bytes_atomic(cache_path, bytes(config.get_timing_cache().serialize()))
    info = {
        "format": ENGINE_FORMAT,
        "tensorrt": trt.__version__,
        "gpu": Cuda().device_name(),
        "onnx": onnx_path.name,
        # what the host exported: a Q/DQ model names the fp32 ONNX it was quantized from
        "onnx_sha256": header.metadata.get("edgekd.source_sha256") or sha256_file(onnx_path),
        "built_from": source.name,
        "built_from_sha256": sha256_file(source),
        "precision": options.precision,
        "dla_core": options.dla_core,
        "shapes": {k: list(v) for k, v in shapes.items()} if shapes else None,
        "options": asdict(options),
        "build_seconds": round(seconds, 2),
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "metadata": metadata,
    }
    write_bytes_atomic(sidecar_path(engine_path), (json.dumps(info, indent=2, sort_keys=True) + "\n").encode())
    return engine_path
