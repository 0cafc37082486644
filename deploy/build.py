"""``python -m deploy build``: ONNX -> serialized TensorRT engine (+ ``.engine.json``), on
TensorRT 8.5 through 11.x. deploy.trtapi picks the version path; the differences:

1. The network: ``trt.Builder(logger).create_network(flags)``. On 8.x ``flags`` must hold
   ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` (implicit batch was still the default);
   on 10.x explicit batch is the only mode (flags 0) and the network is *weakly typed*: the
   ``FP16``/``INT8`` builder flags choose precisions. TensorRT 11 removed weak typing: every
   network is strongly typed, the precision flags are gone, precisions come from the ONNX
   (an FP16 graph, explicit Q/DQ), so ``--fp16`` there builds the FP16 ONNX made on the host
   (``model.fp16.onnx`` beside ``model.onnx``, see :func:`fp16_source`).
2. ``trt.OnnxParser(network, logger).parse_from_file(path)``; on failure every
   ``parser.get_error(i)`` is listed (``node()`` on 8.x, ``node_name()``/``node_operator()``
   from 10.x).
3. ``builder.create_builder_config()``: ``set_memory_pool_limit(MemoryPoolType.WORKSPACE,
   MiB << 20)``; on 8.x/10.x ``BuilderFlag.FP16``, and for INT8 ``BuilderFlag.INT8`` plus
   ``FP16`` (layers without Q/DQ then run in FP16 rather than FP32); detailed profiling
   verbosity (layer types for ``deploy profile``); a timing cache (``create_timing_cache``
   from the file's bytes, ``set_timing_cache``; saved back after the build); DLA
   (``default_device_type = DeviceType.DLA``, ``DLA_core``, ``BuilderFlag.GPU_FALLBACK``);
   for a dynamic batch one optimisation profile.
4. ``builder.build_serialized_network(network, config)`` -> bytes. The engine and
   ``model.engine.json`` (TensorRT version, GPU, precision, DLA core, shapes, the engine's
   sha256 and the ONNX metadata) are written together: both go to temporary files first and
   are renamed only once both exist. The GPU is asked for (CUDA checked) *before* the
   build, so a CUDA problem stops the build instead of leaving an engine without its sidecar.

Before anything is parsed, :func:`deploy.opcheck.require_parsable` compares the model's opset,
operators and input forms with this TensorRT's ONNX parser (its operator table from
onnx-tensorrt), so a model it cannot parse is one line saying what to re-export.

INT8 is explicit quantization (see deploy.quantize): a network without Q/DQ layers is first
quantized with ``--calib`` images. DLA: static shapes only; on TensorRT <= 10 the DLA runs INT8
only from calibration scales (implicit quantization), never Q/DQ, so ``--dla --int8`` is refused
there rather than silently running on the GPU.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import onnxmeta
from .cuda import Cuda
from .errors import DeployError
from .files import sha256_bytes, sha256_file, write_files_atomic
from .onnxmeta import read_onnx_header
from .opcheck import require_parsable
from .runners import _collecting_logger, sidecar_path
from .trtapi import api_path, import_tensorrt, strongly_typed

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


def network_flags(trt: Any, path: str) -> int:
    """``create_network`` flags: EXPLICIT_BATCH on 8.x; 0 from 10.x (explicit batch is the only
    mode, and on 11.x every network is strongly typed whatever the flags say)."""
    if path == "8.x":
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return 0


def _parser_problem(error: Any, path: str) -> str:
    if path == "8.x":
        return f"{error.desc()} (node {error.node()})"
    operator = error.node_operator()
    return f"{error.desc()} (node {error.node_name()}{' ' + operator if operator else ''})"


def _parse(trt: Any, path: str, builder: Any, logger: Any, onnx_path: Path) -> tuple[Any, Any]:
    network = builder.create_network(network_flags(trt, path))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        problems = [_parser_problem(parser.get_error(i), path) for i in range(parser.num_errors)]
        raise DeployError(f"TensorRT's ONNX parser rejects '{onnx_path.name}': "
                          f"{'; '.join(problems[:3]) or 'no details'}"
                          f"{f' (+{len(problems) - 3} more)' if len(problems) > 3 else ''}: "
                          "check it with 'python -m deploy opcheck' and re-export it with "
                          "'edgekd export' (opset 17, which TensorRT 8.5 to 11 parse)")
    return network, parser


def _has_qdq(trt: Any, network: Any) -> bool:
    return any(network.get_layer(i).type in (trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE)
               for i in range(network.num_layers))


def check_precision(version: str, path: str, options: BuildOptions, metadata: dict[str, str]) -> None:
    """Refuse, before anything is parsed or built, the precision/DLA combinations this TensorRT
    cannot honour."""
    fp16_onnx = metadata.get("edgekd.precision") == "fp16"
    if strongly_typed(path) and options.fp16 and not fp16_onnx:
        raise DeployError(f"TensorRT {version} has no FP16 builder flag (it builds strongly typed "
                          "networks only, precision comes from the ONNX): --fp16 needs an FP16 ONNX "
                          "made on the host (FP32 inputs and outputs, metadata edgekd.precision=fp16): "
                          "build the bundle's model.fp16.onnx (edgekd export --bundle with an fp16 "
                          "profile makes it), or build without --fp16 (fp32)")
    if options.dla_core is not None and options.int8 and not strongly_typed(path):
        raise DeployError(f"--dla with --int8 on TensorRT {version}: its DLA runs INT8 only with "
                          "calibration scales (implicit quantization), not the Q/DQ models this kit "
                          "builds, so every layer would silently fall back to the GPU: build "
                          "--dla with --fp16, or --int8 without --dla")
    if options.dla_core is not None and strongly_typed(path) and not (options.int8 or fp16_onnx):
        raise DeployError(f"the DLA runs FP16 or INT8 only, and TensorRT {version} takes the "
                          "precision from the ONNX: --dla needs a Q/DQ INT8 model (--int8) or an "
                          "FP16 ONNX made on the host")
    if options.dla_core is not None and not strongly_typed(path) and not options.fp16:
        raise DeployError("the DLA runs FP16 or INT8 only: add --fp16")


def fp16_source(path: str, onnx_path: Path, header: Any, options: BuildOptions) -> tuple[Path, Any]:
    """The ONNX to build and its header. On TensorRT 11 (no FP16 builder flag) ``--fp16`` on an
    FP32 ONNX builds the FP16 ONNX made from it on the host, ``NAME.fp16.onnx`` beside it
    (``edgekd.precision`` fp16, ``edgekd.source_sha256`` the FP32 file's), so one build command
    serves every TensorRT version; elsewhere ``onnx_path`` itself."""
    if not (strongly_typed(path) and options.fp16 and not options.int8):
        return onnx_path, header
    if header.metadata.get(onnxmeta.PRECISION) == "fp16":
        return onnx_path, header
    twin = onnx_path.with_name(f"{onnx_path.stem}.fp16.onnx")
    if not twin.is_file():
        return onnx_path, header  # check_precision says what to do
    twin_header = read_onnx_header(twin)
    meta = twin_header.metadata
    if meta.get(onnxmeta.PRECISION) != "fp16" or meta.get("edgekd.source_sha256") != sha256_file(onnx_path):
        raise DeployError(f"'{twin.name}' is not the FP16 copy of '{onnx_path.name}' (its "
                          "edgekd.source_sha256 differs): make the bundle again with 'edgekd export "
                          "--bundle', or build the FP16 ONNX you have directly")
    print(f"TensorRT 11 has no FP16 builder flag: building {twin.name}, the FP16 ONNX made from "
          f"{onnx_path.name} on the host", file=sys.stderr)
    return twin, twin_header


def set_precision(trt: Any, path: str, config: Any, options: BuildOptions) -> None:
    """The precision builder flags, where this TensorRT has them (8.x, 10.x)."""
    if strongly_typed(path):
        return  # 11.x: the ONNX's types and Q/DQ nodes decide
    if options.fp16 or options.int8:
        # with INT8, FP16 lets the layers outside the Q/DQ pairs run in FP16 rather than FP32
        config.set_flag(trt.BuilderFlag.FP16)
    if options.int8:
        config.set_flag(trt.BuilderFlag.INT8)


def set_dla(trt: Any, builder: Any, config: Any, network: Any, core: int) -> None:
    cores = builder.num_DLA_cores
    if cores == 0:
        raise DeployError("this device has no DLA: drop --dla (DLA exists on Jetson Xavier/Orin AGX and NX)")
    if not 0 <= core < cores:
        raise DeployError(f"DLA core {core} does not exist: this device has cores 0..{cores - 1}")
    shape = tuple(network.get_input(0).shape)
    if any(int(d) < 0 for d in shape):
        raise DeployError(f"the DLA needs static shapes and this model's input is {shape}: "
                          "export it with a fixed batch (without --dynamic-batch)")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def _load_timing_cache(config: Any, cache_path: Path) -> None:
    data = cache_path.read_bytes() if cache_path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is None:  # set_timing_cache(None, ...) would raise a TypeError
        raise DeployError(f"timing cache '{cache_path}' is not a timing cache this TensorRT can "
                          "read: delete it; it is rebuilt on the next build")
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        raise DeployError(f"timing cache '{cache_path}' was made by another TensorRT or GPU: "
                          "delete it; it is rebuilt on the next build")


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
        batch = onnxmeta.batch_of(metadata)
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
                 options: BuildOptions = BuildOptions(), *, cuda: Cuda | None = None) -> Path:
    """Build ``onnx_path`` into a TensorRT engine; returns the engine path.

    The per-version API paths (8.x / 10.x / 11.x, :mod:`deploy.trtapi`) are taken in
    :func:`check_precision`, :func:`set_precision`, :func:`set_dla` and :func:`_parse`."""
    onnx_path = Path(onnx_path)
    header = read_onnx_header(onnx_path)  # missing or non-ONNX file -> one line
    engine_path = Path(out) if out else onnx_path.with_suffix(".engine")
    if options.calib and not options.int8:
        raise DeployError("--calib is only used with --int8: add --int8 or drop --calib")
    trt = import_tensorrt()
    path = api_path(trt.__version__)
    onnx_path, header = fp16_source(path, onnx_path, header, options)
    # the host-side parser check first: an opset or operator this TensorRT cannot parse (or
    # would misread, like 8.x and an opset-18 ReduceMean) is one line naming the fix
    require_parsable(onnx_path, trt.__version__)
    check_precision(trt.__version__, path, options, dict(header.metadata))
    # CUDA first: a CUDA problem must stop us before an engine exists without its sidecar
    gpu = (cuda or Cuda()).device_name()
    logger = _collecting_logger(trt)
    builder = trt.Builder(logger)
    network, parser = _parse(trt, path, builder, logger, onnx_path)
    source, metadata = onnx_path, dict(header.metadata)
    if options.int8 and not _has_qdq(trt, network):
        source = _quantize_for_int8(onnx_path, options)
        require_parsable(source, trt.__version__)
        metadata = dict(read_onnx_header(source).metadata)
        network, parser = _parse(trt, path, builder, logger, source)
    config, shapes = _builder_config(trt, path, builder, network, options, metadata)
    cache_path = Path(options.timing_cache) if options.timing_cache else None
    if cache_path is not None:
        _load_timing_cache(config, cache_path)

    started = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        detail = "; ".join(logger.errors[-3:]) or "see the TensorRT log above"
        raise DeployError(f"TensorRT could not build '{source.name}' ({detail}): try a larger "
                          "--workspace-mb, or drop --dla/--int8")
    seconds = time.perf_counter() - started
    engine = bytes(plan)
    info = _sidecar_info(trt.__version__, path, gpu, engine, onnx_path, header, source, metadata,
                         options, shapes, seconds)
    sidecar = (json.dumps(info, indent=2, sort_keys=True) + "\n").encode()
    write_files_atomic([(engine_path, engine), (sidecar_path(engine_path), sidecar)])
    if cache_path is not None:
        cache = config.get_timing_cache()
        if cache is not None:
            write_files_atomic([(cache_path, bytes(cache.serialize()))])
    return engine_path


def _quantize_for_int8(onnx_path: Path, options: BuildOptions) -> Path:
    """An ONNX without Q/DQ nodes, quantized with ``--calib`` next to it (``model.int8.onnx``)."""
    if not options.calib:
        raise DeployError(f"'{onnx_path.name}' has no Q/DQ nodes, so INT8 needs calibration "
                          "images: add --calib calib.npz (or build model.int8.onnx)")
    from .quantize import quantize_qdq

    source = quantize_qdq(onnx_path, options.calib, onnx_path.with_suffix(".int8.onnx"))
    print(f"quantized to {source} (explicit Q/DQ)", file=sys.stderr)
    return source


def _builder_config(trt: Any, path: str, builder: Any, network: Any, options: BuildOptions,
                    metadata: dict[str, str]) -> tuple[Any, dict[str, tuple[int, ...]] | None]:
    """The builder config (workspace, detailed profiling, precision, DLA, the batch profile)
    and the min/opt/max shapes of a dynamic batch (None for a static one)."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_mb) << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    set_precision(trt, path, config, options)
    if options.dla_core is not None:
        set_dla(trt, builder, config, network, options.dla_core)
    shapes = _batch_shapes(network, options, metadata)
    if shapes is not None:
        profile = builder.create_optimization_profile()
        profile.set_shape(network.get_input(0).name, shapes["min"], shapes["opt"], shapes["max"])
        config.add_optimization_profile(profile)
    return config, shapes


def _sidecar_info(version: str, path: str, gpu: str, engine: bytes, onnx_path: Path,
                  header: Any, source: Path, metadata: dict[str, str], options: BuildOptions,
                  shapes: dict[str, tuple[int, ...]] | None, seconds: float) -> dict[str, Any]:
    """What ``model.engine.json`` records: versions, hashes, precision, shapes, metadata."""
    return {
        "format": ENGINE_FORMAT,
        "tensorrt": version,
        "tensorrt_path": path,
        "gpu": gpu,
        "engine_sha256": sha256_bytes(engine),
        "onnx": onnx_path.name,
        # what the host exported: a Q/DQ model names the fp32 ONNX it was quantized from
        "onnx_sha256": header.metadata.get("edgekd.source_sha256") or sha256_file(onnx_path),
        "built_from": source.name,
        "built_from_sha256": sha256_file(source),
        # on 11.x the ONNX's own types decide (an FP16 ONNX says so in its metadata)
        "precision": (options.precision if not strongly_typed(path) or options.int8
                      else metadata.get("edgekd.precision", "fp32")),
        "dla_core": options.dla_core,
        "shapes": {k: list(v) for k, v in shapes.items()} if shapes else None,
        "options": asdict(options),
        "build_seconds": round(seconds, 2),
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "metadata": metadata,
    }
