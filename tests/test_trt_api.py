"""The deploy kit against the real TensorRT / CUDA Python APIs of every version it serves,
without TensorRT or a GPU.

* Listings: tests/data/trt_api/ holds the public names of each version's real binding wheels
  (made by tools/refresh_trt_api.py; see the README there). Every name that
  deploy/trtapi.py's ``USES`` table lists for a version path must exist in each version that
  path serves; the cuda-python and libcudart names likewise.
* The table is complete: an AST walk of deploy/ finds every ``trt.X.Y`` chain and every
  method/property used on a TensorRT object, and each must be in the table.
* Dispatch: ``build_engine`` and ``TrtRunner`` run against a fake ``tensorrt`` built from each
  listing, whose objects have exactly the listed attributes (anything else raises
  AttributeError), so each version path runs here, with its flags, refusals and file writes.
"""

from __future__ import annotations

import ast
import ctypes
import json
import sys
import types
from pathlib import Path

import pytest

from edgekd_deploy.errors import DeployError
from edgekd_deploy.trtapi import (CUDA_PYTHON_USES, LIBCUDART_USES, SERVES, USES, api_path)
from fake_tensorrt import LISTINGS, Strict, fake_engine, fake_module

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "trt_api"


def served(path: str) -> list[str]:
    return [v for v in LISTINGS if ".".join(v.split(".")[:2]) in SERVES[path]]


VERSIONS = [(path, v) for path in USES for v in served(path)]


def has(listing: dict, name: str) -> bool:
    if "." not in name:
        return name in listing["module"]
    owner, member = name.rsplit(".", 1)
    return member in listing["members"].get(owner, [])


# --------------------------------------------------------------------------- listings
def test_every_served_version_has_a_listing() -> None:
    for path, wanted in SERVES.items():
        found = {".".join(v.split(".")[:2]) for v in served(path)}
        assert found == set(wanted), f"{path}: listings for {sorted(found)}, serves {wanted}"


@pytest.mark.parametrize("path,version", VERSIONS)
def test_every_name_a_path_uses_exists_in_its_versions(path: str, version: str) -> None:
    listing = LISTINGS[version]
    assert listing["reported_version"] == version
    missing = [name for name in USES[path] if not has(listing, name)]
    assert not missing, f"TensorRT {version} ({path} path) lacks {missing}"


def test_the_paths_differ_where_tensorrt_changed() -> None:
    """What the listings say about the version differences the paths are built around."""
    assert all(has(LISTINGS[v], "NetworkDefinitionCreationFlag.EXPLICIT_BATCH") for v in served("8.x"))
    assert not any(has(LISTINGS[v], "NetworkDefinitionCreationFlag.EXPLICIT_BATCH")
                   for v in served("11.x"))
    assert not any(has(LISTINGS[v], "BuilderFlag.FP16") or has(LISTINGS[v], "BuilderFlag.INT8")
                   for v in served("11.x"))
    assert not any(has(LISTINGS[v], "ParserError.node_name") for v in served("8.x"))


@pytest.mark.parametrize("listing", sorted(DATA.glob("cuda-*.json")), ids=lambda p: p.stem)
def test_cuda_python_has_what_the_fallback_uses(listing: Path) -> None:
    data = json.loads(listing.read_text())
    assert set(CUDA_PYTHON_USES) <= set(data["checked"]), "run tools/refresh_trt_api.py"
    assert set(CUDA_PYTHON_USES) <= set(data["present"]), sorted(set(CUDA_PYTHON_USES) - set(data["present"]))


@pytest.mark.parametrize("listing", sorted(DATA.glob("libcudart-*.json")), ids=lambda p: p.stem)
def test_libcudart_exports_what_the_ctypes_binding_uses(listing: Path) -> None:
    data = json.loads(listing.read_text())
    assert set(LIBCUDART_USES) <= set(data["present"])
    assert {"cudaGetDeviceProperties", "cudaGetDeviceProperties_v2"} & set(data["present"])


# --------------------------------------------------------------------------- the table is complete
# names the kit gives TensorRT objects -> their classes
VARIABLES = {"builder": "Builder", "config": "IBuilderConfig", "network": "INetworkDefinition",
             "parser": "OnnxParser", "error": "ParserError", "engine": "ICudaEngine",
             "context": "IExecutionContext", "runtime": "Runtime", "inspector": "EngineInspector",
             "profile": "IOptimizationProfile", "cache": "ITimingCache"}
RESULTS = {"get_input": "ITensor", "get_layer": "ILayer", "get_error": "ParserError"}
FILES = ("build.py", "runners.py", "trt_runner.py", "profile.py")


def _chain(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == "trt":
        return list(reversed(parts))
    return None


def used_names() -> set[str]:
    found: set[str] = set()
    for name in FILES:
        tree = ast.parse((REPO / "deploy" / name).read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            chain = _chain(node)
            if chain:
                found.add(".".join(chain))
                continue
            base = node.value
            if isinstance(base, ast.Name) and base.id in VARIABLES:
                found.add(f"{VARIABLES[base.id]}.{node.attr}")
            elif isinstance(base, ast.Attribute) and base.attr in VARIABLES and base.attr != "profile":
                found.add(f"{VARIABLES[base.attr]}.{node.attr}")  # self.engine.x, runner.context.x
            elif (isinstance(base, ast.Call) and isinstance(base.func, ast.Attribute)
                  and base.func.attr in RESULTS):
                found.add(f"{RESULTS[base.func.attr]}.{node.attr}")
    return found


def test_the_table_lists_every_tensorrt_name_the_kit_uses() -> None:
    table = {name for names in USES.values() for name in names}
    used = used_names()
    assert "BuilderFlag.FP16" in used and "IBuilderConfig.set_flag" in used  # the walk works
    missing = sorted(n for n in used - table if not n.endswith("__init__"))
    assert not missing, f"deploy/ uses {missing}: add them to deploy/trtapi.py USES (and refresh the listings)"


def test_api_path_per_version() -> None:
    assert [api_path(v) for v in ("8.5.2.2", "8.6.2", "10.3.0", "10.16.1", "11.4.1")] == \
        ["8.x", "8.x", "10.x", "10.x", "11.x"]
    for version, words in (("8.4.1", "too old"), ("7.1.3", "too old"), ("9.2.0", "not one"),
                           ("12.0.0", "not one")):
        with pytest.raises(DeployError, match=words):
            api_path(version)


# --------------------------------------------------------------------------- a fake tensorrt
class Fake:
    """A fake ``tensorrt`` module for one listing, and what it was asked to do."""

    def __init__(self, version: str, *, input_shape=(4, 1, 28, 28), qdq=False, parse_ok=True,
                 timing_cache_ok=True) -> None:
        L = LISTINGS[version]
        self.listing, self.log = L, []
        log = self.log
        self.module = fake_module(version, L)
        names = set(L["module"])
        layer_type = self.module.LayerType.QUANTIZE if qdq else self.module.LayerType.CONVOLUTION

        def network(flags):
            tensor = Strict("ITensor", L, log, shape=input_shape, name="input")
            layer = Strict("ILayer", L, log, type=layer_type)
            return Strict("INetworkDefinition", L, log, get_input=lambda i: tensor, num_layers=1,
                          get_layer=lambda i: layer)

        def parser_error(i):
            return Strict("ParserError", L, log, desc=lambda: "Unsupported op", node=lambda: 3,
                          node_name=lambda: "/conv1/Conv", node_operator=lambda: "Conv")

        cache = Strict("ITimingCache", L, log, serialize=lambda: b"CACHE")

        def config():
            return Strict("IBuilderConfig", L, log,
                          create_timing_cache=lambda data: cache if timing_cache_ok else None,
                          set_timing_cache=lambda c, ignore_mismatch: c is not None,
                          get_timing_cache=lambda: cache)

        self.module.Builder = lambda logger: Strict(
            "Builder", L, log, create_network=network, create_builder_config=config,
            build_serialized_network=lambda n, c: b"PLAN-" + version.encode(), num_DLA_cores=2,
            create_optimization_profile=lambda: Strict("IOptimizationProfile", L, log))
        self.module.OnnxParser = lambda network, logger: Strict(
            "OnnxParser", L, log, parse_from_file=lambda p: parse_ok, num_errors=0 if parse_ok else 1,
            get_error=parser_error)

        def engine_for(data):
            shapes = {"input": input_shape, "logits": (input_shape[0], 10)}
            return fake_engine(L, log, self.module.TensorIOMode, "input", set_input_shape=lambda n, s: True,
                               context_shape=lambda n: shapes[n], engine_shape=lambda n: shapes[n],
                               profile_shapes=[(1, 1, 28, 28)] * 3)

        self.module.Runtime = lambda logger: Strict("Runtime", L, log, deserialize_cuda_engine=engine_for)
        for name in vars(self.module):
            assert name in names or name == "__version__", f"fake defines {name}, not in the listing"

    def calls(self, name: str) -> list:
        return [entry for entry in self.log if entry[0] == name]


class FakeStream:
    def __init__(self, log: list) -> None:
        self.log, self.handle, self.raw = log, 0x1234, object()

    def close(self) -> None:
        self.log.append(("stream.close",))


class FakeCuda:
    def __init__(self, fail: str | None = None) -> None:
        self.log, self.fail, self.next = [], fail, 0x1000

    def device_name(self) -> str:
        self.log.append(("device_name",))
        if self.fail:
            raise DeployError(self.fail)
        return "Fake GPU"

    def versions(self) -> dict:
        return {"cuda_runtime": "12.6"}

    def malloc(self, nbytes: int) -> int:
        self.next += 0x100
        self.log.append(("malloc", self.next))
        return self.next

    def free(self, pointer: int) -> None:
        self.log.append(("free", pointer))

    def stream(self) -> FakeStream:
        return FakeStream(self.log)

    def sync(self, stream) -> None:
        pass

    def h2d(self, pointer, array, stream) -> None:
        pass

    def d2h(self, array, pointer, stream) -> None:
        array[...] = 0


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    """A minimal ONNX model: IR 9, an empty graph, opset 17 (what deploy.onnxmeta and the parser
    check read); the fake parser never opens it."""
    def field(number: int, payload: bytes) -> bytes:
        return bytes([number << 3 | 2, len(payload)]) + payload
    data = bytes([1 << 3 | 0, 9]) + field(7, b"") + field(8, field(2, b"") + bytes([2 << 3, 17]))
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    return path


def use_fake(monkeypatch, fake: Fake) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)


# --------------------------------------------------------------------------- the builder per path
@pytest.mark.parametrize("path,version", VERSIONS)
def test_build_fp32_per_path(monkeypatch, tmp_path: Path, onnx_file: Path, path, version) -> None:
    from edgekd_deploy.build import BuildOptions, build_engine

    fake = Fake(version)
    use_fake(monkeypatch, fake)
    engine = build_engine(onnx_file, options=BuildOptions(timing_cache=str(tmp_path / "t.cache")),
                          cuda=FakeCuda())
    [(_, (flags,), _)] = fake.calls("Builder.create_network")
    if path == "8.x":
        assert flags == 1 << int(fake.module.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    else:
        assert flags == 0
    assert not fake.calls("IBuilderConfig.set_flag")
    assert engine.read_bytes() == b"PLAN-" + version.encode()
    info = json.loads((tmp_path / "model.engine.json").read_text())
    assert info["tensorrt"] == version and info["tensorrt_path"] == path
    assert info["precision"] == "fp32" and info["gpu"] == "Fake GPU"
    from edgekd_deploy.files import sha256_bytes

    assert info["engine_sha256"] == sha256_bytes(engine.read_bytes())
    assert (tmp_path / "t.cache").read_bytes() == b"CACHE"
    assert not list(tmp_path.glob(".*.tmp"))
    from edgekd_deploy.files import _umask

    for written in (engine, tmp_path / "model.engine.json", tmp_path / "t.cache"):
        assert written.stat().st_mode & 0o777 == 0o666 & ~_umask()


@pytest.mark.parametrize("path,version", VERSIONS)
def test_fp16_and_int8_flags_per_path(monkeypatch, tmp_path: Path, onnx_file: Path, path, version) -> None:
    from edgekd_deploy.build import BuildOptions, build_engine

    fake = Fake(version)
    use_fake(monkeypatch, fake)
    cuda = FakeCuda()
    if path == "11.x":
        with pytest.raises(DeployError, match="FP16 ONNX") as refused:
            build_engine(onnx_file, options=BuildOptions(fp16=True), cuda=cuda)
        assert "\n" not in str(refused.value)
        assert not cuda.log and not fake.log and not (tmp_path / "model.engine").exists()
    else:
        build_engine(onnx_file, options=BuildOptions(fp16=True), cuda=cuda)
        assert [c[1][0].name for c in fake.calls("IBuilderConfig.set_flag")] == ["FP16"]

    fake = Fake(version, qdq=True)
    use_fake(monkeypatch, fake)
    build_engine(onnx_file, options=BuildOptions(int8=True), cuda=FakeCuda())
    flags = [c[1][0].name for c in fake.calls("IBuilderConfig.set_flag")]
    assert flags == ([] if path == "11.x" else ["FP16", "INT8"])
    assert json.loads((tmp_path / "model.engine.json").read_text())["precision"] == "int8"


@pytest.mark.parametrize("path,version", VERSIONS)
def test_dla_rules_per_path(monkeypatch, tmp_path: Path, onnx_file: Path, path, version) -> None:
    from edgekd_deploy.build import BuildOptions, build_engine

    fake = Fake(version, qdq=True)
    use_fake(monkeypatch, fake)
    if path != "11.x":
        with pytest.raises(DeployError, match="implicit quantization"):
            build_engine(onnx_file, options=BuildOptions(int8=True, dla_core=1), cuda=FakeCuda())
        options = BuildOptions(fp16=True, dla_core=1)
    else:
        options = BuildOptions(int8=True, dla_core=1)  # Q/DQ: the precision is in the ONNX
    fake.log.clear()
    build_engine(onnx_file, options=options, cuda=FakeCuda())
    assert fake.calls("IBuilderConfig.default_device_type=")[0][1][0].name == "DLA"
    assert fake.calls("IBuilderConfig.DLA_core=")[0][1] == (1,)
    assert "GPU_FALLBACK" in [c[1][0].name for c in fake.calls("IBuilderConfig.set_flag")]
    assert json.loads((tmp_path / "model.engine.json").read_text())["dla_core"] == 1

    use_fake(monkeypatch, Fake(version, input_shape=(-1, 1, 28, 28), qdq=True))
    with pytest.raises(DeployError, match="static shapes"):
        build_engine(onnx_file, options=options, cuda=FakeCuda())
    with pytest.raises(DeployError, match="cores 0..1"):
        build_engine(onnx_file, options=BuildOptions(**{**options.__dict__, "dla_core": 2}),
                     cuda=FakeCuda())


@pytest.mark.parametrize("path,version", VERSIONS)
def test_cuda_is_checked_before_the_build(monkeypatch, tmp_path: Path, onnx_file: Path, path, version) -> None:
    from edgekd_deploy.build import build_engine

    fake = Fake(version)
    use_fake(monkeypatch, fake)
    with pytest.raises(DeployError, match="cudaErrorInsufficientDriver"):
        build_engine(onnx_file, cuda=FakeCuda(fail="CUDA call cudaGetDevice failed with cudaErrorInsufficientDriver"))
    assert not fake.calls("Builder.build_serialized_network")
    assert not (tmp_path / "model.engine").exists() and not (tmp_path / "model.engine.json").exists()


@pytest.mark.parametrize("path,version", VERSIONS)
def test_parser_errors_and_bad_timing_cache_per_path(monkeypatch, tmp_path: Path, onnx_file: Path,
                                                     path, version) -> None:
    from edgekd_deploy.build import BuildOptions, build_engine

    use_fake(monkeypatch, Fake(version, parse_ok=False))
    with pytest.raises(DeployError, match="rejects 'model.onnx': Unsupported op") as error:
        build_engine(onnx_file, cuda=FakeCuda())
    assert ("node 3" if path == "8.x" else "node /conv1/Conv Conv") in str(error.value)

    fake = Fake(version, timing_cache_ok=False)
    use_fake(monkeypatch, fake)
    (tmp_path / "bad.cache").write_bytes(b"junk")
    with pytest.raises(DeployError, match="not a timing cache"):
        build_engine(onnx_file, options=BuildOptions(timing_cache=str(tmp_path / "bad.cache")),
                     cuda=FakeCuda())
    assert not fake.calls("IBuilderConfig.set_timing_cache")


# --------------------------------------------------------------------------- the runner per path
def write_engine(tmp_path: Path, version: str, **info) -> Path:
    from edgekd_deploy.files import sha256_bytes

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"PLAN")
    sidecar = {"tensorrt": version, "precision": "fp16", "engine_sha256": sha256_bytes(b"PLAN"), **info}
    (tmp_path / "model.engine.json").write_text(json.dumps(sidecar))
    return engine


@pytest.mark.parametrize("path,version", VERSIONS)
def test_runner_dla_core_close_and_static_batch(monkeypatch, tmp_path: Path, path, version) -> None:
    from edgekd_deploy.runners import TrtRunner

    fake = Fake(version)
    use_fake(monkeypatch, fake)
    engine = write_engine(tmp_path, version, dla_core=1)
    cuda = FakeCuda()
    with TrtRunner(engine, batch=4, cuda=cuda) as runner:
        out = runner.infer(runner.random_feed(4))
        assert out["logits"].shape == (4, 10)
        with pytest.raises(DeployError) as wrong:
            runner.check_batch(8)
        assert "fixed batch of 4" in str(wrong.value) and "--min" not in str(wrong.value)
    order = [entry[0] for entry in fake.log]
    assert order.index("Runtime.DLA_core=") < order.index("Runtime.deserialize_cuda_engine")
    assert fake.calls("Runtime.DLA_core=")[0][1] == (1,)
    allocated = {e[1] for e in cuda.log if e[0] == "malloc"}
    assert allocated and allocated == {e[1] for e in cuda.log if e[0] == "free"}
    assert cuda.log.count(("stream.close",)) == 1
    runner.close()  # idempotent
    assert cuda.log.count(("stream.close",)) == 1


@pytest.mark.parametrize("path,version", VERSIONS)
def test_profile_per_path(monkeypatch, tmp_path: Path, path, version) -> None:
    import edgekd_deploy as deploy
    import edgekd_deploy.trt_runner  # noqa: F401 (deploy.trt_runner below)
    from edgekd_deploy.profile import profile

    use_fake(monkeypatch, Fake(version))
    cuda = FakeCuda()
    monkeypatch.setattr(deploy.trt_runner, "Cuda", lambda: cuda)
    result = profile(write_engine(tmp_path, version), batch=4, warmup=1, iters=3)
    assert result["layers"] == [{"name": "conv1", "op_type": "CaskConvolution", "ms": 0.25}]
    assert result["backend"] == "trt" and cuda.log.count(("stream.close",)) == 1


def test_runner_refuses_a_sidecar_of_another_engine(monkeypatch, tmp_path: Path) -> None:
    from edgekd_deploy.runners import TrtRunner

    use_fake(monkeypatch, Fake("10.3.0"))
    engine = write_engine(tmp_path, "10.3.0")
    engine.write_bytes(b"ANOTHER PLAN")
    with pytest.raises(DeployError, match="describes another engine"):
        TrtRunner(engine, cuda=FakeCuda())


# --------------------------------------------------------------------------- CUDA without a GPU
def test_cuda_error_lines_name_library_driver_and_fix() -> None:
    from edgekd_deploy.cuda import cuda_error_line

    line = cuda_error_line("libcudart.so.13", "cudaGetDeviceCount", 35, "cudaErrorInsufficientDriver",
                           runtime="13.0", driver="12.6")
    assert "libcudart.so.13" in line and "CUDA runtime 13.0" in line and "CUDA 12.6" in line
    assert "never cuda-python 13.x" in line and "\n" not in line
    line = cuda_error_line("libcudart.so.12", "cudaGetDeviceCount", 100, "cudaErrorNoDevice",
                           runtime="12.6", driver="12.6")
    assert "no usable CUDA GPU" in line


def test_cuda_python_dlopen_failure_is_one_line() -> None:
    from edgekd_deploy.cuda import Cuda, CudaPythonCudart

    def broken():
        raise RuntimeError("Failed to dlopen libcuda.so.1")

    rt = types.SimpleNamespace(cudaGetDeviceCount=broken, cudaGetDevice=broken)
    binding = CudaPythonCudart(rt, "cuda.bindings.runtime", "12.6.0")
    with pytest.raises(DeployError) as error:
        Cuda(binding).device_name()
    text = str(error.value)
    assert "cuda-python 12.6.0" in text and "libcuda.so.1" in text and "13.x" in text


def _loadable_libcudart() -> str | None:
    from edgekd_deploy.cuda import libcudart_candidates

    for name in libcudart_candidates():
        try:
            ctypes.CDLL(name)
            return name
        except OSError:
            continue
    return None


def test_real_libcudart_without_a_gpu_is_one_line(monkeypatch) -> None:
    """Where a libcudart exists but no GPU/driver does (CI, this machine), Cuda() names the
    library and says what is missing, in one line."""
    from edgekd_deploy.cuda import Cuda, load_ctypes_cudart

    name = _loadable_libcudart()
    if name is None:
        pytest.skip("no libcudart here")
    binding, failed = load_ctypes_cudart([name])
    if binding is not None:
        pytest.skip("a CUDA GPU is usable here")
    monkeypatch.setenv("DEPLOY_CUDART", name)
    for module in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, module, None)  # and no cuda-python fallback
    with pytest.raises(DeployError) as error:
        Cuda()
    text = str(error.value)
    assert "libcudart" in text and "\n" not in text and "failed with cudaError" in text


def test_no_cuda_runtime_at_all_is_one_line(monkeypatch) -> None:
    from edgekd_deploy.cuda import Cuda

    monkeypatch.setenv("DEPLOY_CUDART", "/nonexistent/libcudart.so.12")
    for module in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(DeployError) as error:
        Cuda()
    text = str(error.value)
    assert text.startswith("no CUDA runtime found") and "DEPLOY_CUDART" in text and "\n" not in text


def test_fp16_flag_on_tensorrt_11_takes_the_fp16_twin_of_the_same_model(tmp_path: Path) -> None:
    """``deploy build model.onnx --fp16`` on 11.x builds model.fp16.onnx when it was made from this
    very model.onnx (its edgekd.source_sha256), refuses a twin of another model, and leaves 8.x/10.x
    (which have the FP16 flag) on model.onnx."""
    onnx = pytest.importorskip("onnx")
    from edgekd_deploy.build import BuildOptions, fp16_source
    from edgekd_deploy.files import sha256_file
    from edgekd_deploy.onnxmeta import read_onnx_header

    def write(path: Path, **meta: str) -> Path:
        graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["input"], ["logits"])], "g",
                                       [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 4])],
                                       [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 4])])
        model = onnx.helper.make_model(graph)
        onnx.helper.set_model_props(model, meta)
        onnx.save(model, str(path))
        return path

    fp32 = write(tmp_path / "model.onnx", **{"edgekd.id": "t1"})
    header = read_onnx_header(fp32)
    options = BuildOptions(fp16=True)
    assert fp16_source("11.x", fp32, header, options)[0] == fp32  # no twin: check_precision refuses
    write(tmp_path / "model.fp16.onnx", **{"edgekd.precision": "fp16", "edgekd.source_sha256": sha256_file(fp32)})
    source, twin = fp16_source("11.x", fp32, header, options)
    assert source.name == "model.fp16.onnx" and twin.metadata["edgekd.precision"] == "fp16"
    assert fp16_source("10.x", fp32, header, options)[0] == fp32
    write(tmp_path / "model.fp16.onnx", **{"edgekd.precision": "fp16", "edgekd.source_sha256": "0" * 64})
    with pytest.raises(DeployError, match="not the FP16 copy of 'model.onnx'"):
        fp16_source("11.x", fp32, header, options)
