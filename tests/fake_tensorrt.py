"""Fakes of the device for the tests: a ``tensorrt`` module per real binding listing
(tests/data/trt_api/), a cuda-python runtime, and ``trtexec``.

* :class:`Strict` objects have exactly the members a listing gives their class (anything else
  raises AttributeError), so code written for one TensorRT fails here on another.
* :class:`OnnxTensorRT` is a ``tensorrt`` module whose parser reads the real ONNX file (input
  shape, dynamic batch, Q/DQ layers) and whose plans and engines remember what was built
  (TensorRT version, shapes, optimisation profile, DLA core), with the rules a real build
  enforces: a dynamic input needs an optimisation profile, an engine loads only on the
  TensorRT that built it, an input shape outside the profile is rejected.
* :func:`trtexec_main` checks a ``trtexec`` command line the way TensorRT 8.5 to 11.x would,
  stricter where real trtexec would build something else than asked (no shapes for a dynamic
  model builds batch 1 only; ``--int8`` without Q/DQ or a calibration cache uses placeholder
  scales), and writes a plan :class:`OnnxTensorRT` can load.
* :data:`CUDA_RUNTIME` is the source of a fake ``cuda.bindings.runtime`` (cuda-python) that
  succeeds at every call, for subprocesses where the kit must find a GPU.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parent / "data" / "trt_api"
LISTINGS = {p.name[len("tensorrt-"):-len(".json")]: json.loads(p.read_text())
            for p in sorted(DATA.glob("tensorrt-*.json"))}
PLAN_MAGIC = b"FAKEPLAN"


def listing_for(version: str) -> str:
    """The listing's full version for "8.5", "10.3", "11.x", "10.16.1.11", ..."""
    want = version.replace(".x", "")
    for full in LISTINGS:
        if full == want or full.startswith(want + "."):
            return full
    raise KeyError(f"no TensorRT listing for {version}: have {sorted(LISTINGS)}")


class EnumValue:
    def __init__(self, owner: str, name: str, value: int) -> None:
        self.owner, self.name, self.value = owner, name, value

    def __int__(self) -> int:
        return self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EnumValue) and (other.owner, other.name) == (self.owner, self.name)

    def __hash__(self) -> int:
        return hash((self.owner, self.name))

    def __repr__(self) -> str:
        return f"{self.owner}.{self.name}"


class Strict:
    """An object with exactly the members the listing gives ``owner``: reading or setting any
    other attribute raises AttributeError. Calls and settings are logged in order."""

    def __init__(self, owner: str, listing: dict, log: list, **impl) -> None:
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_members", set(listing["members"].get(owner, [])))
        object.__setattr__(self, "_log", log)
        object.__setattr__(self, "_impl", impl)

    def __getattr__(self, name: str):
        if name not in self._members:
            raise AttributeError(f"{self._owner}.{name} does not exist in this TensorRT")
        value = self._impl.get(name)
        if callable(value) and not isinstance(value, (Strict, EnumValue)):
            def call(*args, **kwargs):
                self._log.append((f"{self._owner}.{name}", args, kwargs))
                return value(*args, **kwargs)
            return call
        if name in self._impl:
            return value
        return lambda *args, **kwargs: self._log.append((f"{self._owner}.{name}", args, kwargs))

    def __setattr__(self, name: str, value) -> None:
        if name not in self._members:
            raise AttributeError(f"{self._owner}.{name} does not exist in this TensorRT")
        self._log.append((f"{self._owner}.{name}=", (value,), {}))
        self._impl[name] = value


def enum(owner: str, listing: dict) -> Strict:
    members = [m for m in listing["members"].get(owner, []) if m not in ("name", "value")]
    return Strict(owner, listing, [], **{m: EnumValue(owner, m, i) for i, m in enumerate(members)})


def fake_module(version: str, listing: dict) -> types.SimpleNamespace:
    """The part of a fake ``tensorrt`` module every fake shares: ``__version__``, the listing's
    enums, ``ILogger`` and ``IProfiler`` to subclass, ``nptype``. A fake adds ``Builder``,
    ``OnnxParser`` and ``Runtime``."""
    module = types.SimpleNamespace(__version__=version)
    for owner in listing["members"]:
        if "." not in owner and owner[:1].isupper() and owner not in ("ILogger", "IProfiler"):
            setattr(module, owner, enum(owner, listing))

    class ILogger:
        Severity = enum("ILogger.Severity", listing)

        def __init__(self) -> None:
            pass

    class IProfiler:
        def __init__(self) -> None:
            pass

    module.ILogger, module.IProfiler = ILogger, IProfiler
    module.nptype = lambda dtype: np.float32
    return module


def fake_engine(listing: dict, log: list, modes: Any, input_name: str, *, set_input_shape: Any,
                context_shape: Any, engine_shape: Any, profile_shapes: list) -> Strict:
    """A deserialized engine of one input (``input_name``) and one output (``logits``): its
    execution context reports one layer time to an attached profiler; the shapes come from the
    caller (``context_shape``/``engine_shape``: tensor name -> shape)."""
    def execute(handle: int) -> bool:
        profiler = context._impl.get("profiler")
        if profiler is not None:
            profiler.report_layer_time("conv1", 0.25)
        return True

    context = Strict("IExecutionContext", listing, log, set_input_shape=set_input_shape,
                     get_tensor_shape=context_shape, execute_async_v3=execute)
    layers = json.dumps({"Layers": [{"Name": "conv1", "LayerType": "CaskConvolution"}]})
    inspector = Strict("EngineInspector", listing, log, get_engine_information=lambda fmt: layers)
    return Strict("ICudaEngine", listing, log, num_io_tensors=2, create_engine_inspector=lambda: inspector,
                  get_tensor_name=lambda i: [input_name, "logits"][i],
                  get_tensor_mode=lambda n: modes.INPUT if n == input_name else modes.OUTPUT,
                  get_tensor_shape=engine_shape, get_tensor_dtype=lambda n: "FLOAT",
                  get_tensor_profile_shape=lambda n, i: profile_shapes,
                  create_execution_context=lambda: context)



def read_onnx(path: str | Path) -> dict[str, Any]:
    """What a parser learns from an ONNX file: input name and shape (-1 for a symbolic dim),
    output classes, whether it has Q/DQ nodes, its edgekd precision."""
    import onnx

    model = onnx.load(str(path))
    tensor = model.graph.input[0].type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
    out = model.graph.output[0].type.tensor_type.shape.dim
    meta = {p.key: p.value for p in model.metadata_props}
    return {"input": model.graph.input[0].name, "shape": shape,
            "classes": out[-1].dim_value if out and out[-1].HasField("dim_value") else 10,
            "qdq": any(n.op_type == "QuantizeLinear" for n in model.graph.node),
            "precision": meta.get("edgekd.precision", "fp32")}


def make_plan(info: dict[str, Any]) -> bytes:
    return PLAN_MAGIC + json.dumps(info, sort_keys=True).encode()


def read_plan(data: bytes) -> dict[str, Any] | None:
    return json.loads(data[len(PLAN_MAGIC):]) if data.startswith(PLAN_MAGIC) else None


class OnnxTensorRT:
    """A fake ``tensorrt`` module (``.module``) of one listed version that parses real ONNX
    files; see the module docstring."""

    def __init__(self, version: str) -> None:
        self.version = listing_for(version)
        L = self.listing = LISTINGS[self.version]
        self.module = fake_module(self.version, L)
        self.module.Builder = self._builder
        self.module.OnnxParser = self._parser
        self.module.Runtime = lambda logger: Strict("Runtime", L, [], deserialize_cuda_engine=self._engine)

    # ------------------------------------------------------------------ build
    def _builder(self, logger: Any) -> Strict:
        L, log = self.listing, []
        state: dict[str, Any] = {"profile": None, "dla": None}

        def network(flags: int) -> Strict:
            net = Strict("INetworkDefinition", L, log, num_layers=0)
            object.__setattr__(net, "_state", state)
            return net

        def profile() -> Strict:
            p = Strict("IOptimizationProfile", L, log)
            p._impl["set_shape"] = lambda name, low, opt, high: state.update(
                profile=[list(low), list(opt), list(high)])
            return p

        def config() -> Strict:
            c = Strict("IBuilderConfig", L, log,
                       create_timing_cache=lambda data: Strict("ITimingCache", L, log, serialize=lambda: b"CACHE"),
                       set_timing_cache=lambda cache, ignore_mismatch: True)
            c._impl["get_timing_cache"] = lambda: Strict("ITimingCache", L, log, serialize=lambda: b"CACHE")
            return c

        def build(net: Strict, cfg: Strict) -> bytes | None:
            parsed = state.get("parsed")
            if parsed is None:
                return None
            if -1 in parsed["shape"] and state["profile"] is None:
                return None  # TensorRT: a dynamic input needs an optimisation profile
            device = cfg._impl.get("default_device_type")
            dla = cfg._impl.get("DLA_core") if device is not None and device.name == "DLA" else None
            return make_plan({"version": self.version, **parsed, "profile": state["profile"], "dla": dla})

        return Strict("Builder", L, log, create_network=network, create_builder_config=config,
                      build_serialized_network=build, num_DLA_cores=2,
                      create_optimization_profile=profile)

    def _parser(self, network: Strict, logger: Any) -> Strict:
        L, state = self.listing, network._state

        def parse(path: str) -> bool:
            parsed = state["parsed"] = read_onnx(path)
            layer = self.module.LayerType.QUANTIZE if parsed["qdq"] else self.module.LayerType.CONVOLUTION
            network._impl.update(
                num_layers=1, get_layer=lambda i: Strict("ILayer", L, [], type=layer),
                get_input=lambda i: Strict("ITensor", L, [], shape=tuple(parsed["shape"]), name=parsed["input"]))
            return True

        return Strict("OnnxParser", L, [], parse_from_file=parse, num_errors=0)

    # ------------------------------------------------------------------ run
    def _engine(self, data: bytes) -> Strict | None:
        plan = read_plan(bytes(data))
        if plan is None or plan["version"] != self.version:
            return None  # another TensorRT's plan, or not a plan
        L, modes = self.listing, self.module.TensorIOMode
        name, shape = plan["input"], tuple(plan["shape"])
        low, _opt, high = plan["profile"] or [shape] * 3
        current = {"batch": shape[0] if shape[0] > 0 else low[0]}

        def set_input_shape(tensor: str, wanted: tuple) -> bool:
            ok = tensor == name and low[0] <= wanted[0] <= high[0] and tuple(wanted[1:]) == shape[1:]
            if ok:
                current["batch"] = wanted[0]
            return ok

        def tensor_shape(tensor: str) -> tuple:
            return (current["batch"], *shape[1:]) if tensor == name else (current["batch"], plan["classes"])

        return fake_engine(L, [], modes, name, set_input_shape=set_input_shape, context_shape=tensor_shape,
                           engine_shape=lambda n: shape if n == name else (shape[0], plan["classes"]),
                           profile_shapes=[tuple(low), tuple(_opt), tuple(high)])


# --------------------------------------------------------------------------- trtexec
TRTEXEC_OPTIONS = {"--onnx", "--saveEngine", "--memPoolSize", "--timingCacheFile", "--minShapes",
                   "--optShapes", "--maxShapes", "--shapes", "--useDLACore", "--allowGPUFallback",
                   "--fp16", "--int8", "--calib", "--stronglyTyped"}


def trtexec_options(version: str) -> set[str]:
    """The options of trtexec in ``version``: --stronglyTyped from 9.x on; TensorRT 11 has no
    --fp16/--int8 (strong typing only)."""
    major = int(listing_for(version).split(".")[0])
    options = set(TRTEXEC_OPTIONS)
    if major < 9:
        options.discard("--stronglyTyped")
    if major >= 11:
        options -= {"--fp16", "--int8", "--calib"}
    return options


def _shape_arg(text: str, name: str) -> list[int]:
    tensor, _, dims = text.rpartition(":")
    if tensor != name:
        raise SystemExit(f"trtexec: shape for '{tensor}', the model's input is '{name}'")
    return [int(d) for d in dims.split("x")]


def trtexec_main(argv: list[str], version: str) -> int:
    """Check a trtexec command line against ``version`` and the ONNX it names; write the plan."""
    opts: dict[str, str] = {}
    for arg in argv:
        key, _, value = arg.partition("=")
        if key not in trtexec_options(version):
            print(f"trtexec {version}: unknown option {key}")
            return 1
        opts[key] = value
    onnx_path = Path(opts.get("--onnx", ""))
    if not onnx_path.is_file() or "--saveEngine" not in opts:
        print("trtexec: --onnx must name a file and --saveEngine must be given")
        return 1
    parsed = read_onnx(onnx_path)
    dynamic = parsed["shape"][0] == -1
    given = [opts.get(k) for k in ("--minShapes", "--optShapes", "--maxShapes")]
    if dynamic and not all(given):
        print("trtexec: dynamic model without --minShapes/--optShapes/--maxShapes: this builds batch 1 only")
        return 1
    if not dynamic and (any(given) or "--shapes" in opts):
        print("trtexec: static model does not take explicit shapes")
        return 1
    profile = [_shape_arg(v, parsed["input"]) for v in given] if dynamic else None
    if profile and not profile[0][0] <= profile[1][0] <= profile[2][0]:
        print("trtexec: shapes need min <= opt <= max")
        return 1
    if "--int8" in opts and not parsed["qdq"] and "--calib" not in opts:
        print("trtexec: --int8 on a model without Q/DQ and without a calibration cache: placeholder scales")
        return 1
    if opts.get("--memPoolSize") is not None and not opts["--memPoolSize"].startswith("workspace:"):
        print("trtexec: --memPoolSize=workspace:MiB")
        return 1
    reduced = "--fp16" in opts or "--int8" in opts or parsed["qdq"] or parsed["precision"] == "fp16"
    dla = opts.get("--useDLACore")
    if dla is not None and (dynamic or not reduced or "--allowGPUFallback" not in opts):
        print("trtexec: the DLA needs static shapes, FP16/INT8 and --allowGPUFallback here")
        return 1
    Path(opts["--saveEngine"]).write_bytes(make_plan({"version": listing_for(version), **parsed,
                                                      "profile": profile, "dla": dla and int(dla)}))
    if opts.get("--timingCacheFile"):
        Path(opts["--timingCacheFile"]).write_bytes(b"CACHE")
    print("&&&& PASSED TensorRT.trtexec")
    return 0


# --------------------------------------------------------------------------- cuda-python
#: ``cuda/bindings/runtime.py`` of a fake cuda-python whose every call succeeds (one GPU)
CUDA_RUNTIME = """
import ctypes


class cudaError_t(int):
    cudaSuccess = 0


class cudaMemcpyKind:
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class _Props:
    name = b"Fake GPU"


_next = [0x1000]


def _ok(*values):
    return (cudaError_t(0), *values)


def cudaGetDeviceCount(): return _ok(1)
def cudaGetDevice(): return _ok(0)
def cudaGetDeviceProperties(device): return _ok(_Props())
def cudaRuntimeGetVersion(): return _ok(12060)
def cudaDriverGetVersion(): return _ok(12060)
def cudaFree(pointer): return _ok()
def cudaStreamCreate(): return _ok(0x1234)
def cudaStreamDestroy(stream): return _ok()
def cudaStreamSynchronize(stream): return _ok()
def cudaGetErrorName(code): return _ok(b"cudaSuccess")


def cudaMalloc(nbytes):
    _next[0] += nbytes + 256
    return _ok(_next[0])


def cudaMemcpyAsync(dst, src, nbytes, kind, stream):
    if kind == cudaMemcpyKind.cudaMemcpyDeviceToHost:
        ctypes.memset(dst, 0, nbytes)  # the outputs: zeros
    return _ok()
"""
