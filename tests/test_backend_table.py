"""The deploy kit's backend table: a toy backend registered at test time is benchmarked by
`python -m deploy bench` (its CLI entry, in-process), touching no existing file; the built-in
entries drive the bundle's device commands and the profile keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgekd_deploy import __main__ as deploy_cli
from edgekd_deploy.backends import (BACKENDS, Backend, backend_for_path, get_backend, register_backend,
                             unregister_backend)
from edgekd_deploy.errors import DeployError
from edgekd_deploy.files import sha256_file
from edgekd_deploy.runners import _Runner


class ToyRunner(_Runner):
    """A linear classifier stored as model.toy (an .npz with W (C*H*W, K) and the input shape)."""

    backend = "toy"
    runs = 0

    def __init__(self, path: Path, *, provider: str = "cpu", threads: int = 0, batch: int | None = None,
                 spinning: bool = True) -> None:
        self.path = Path(path)
        with np.load(self.path) as data:
            self.w, shape = data["w"], tuple(int(d) for d in data["shape"])
        self.input_name, self.output_names = "x", ["logits"]
        self.input_shape = (None, *shape)
        self.metadata = {"edgekd.id": "toy"}
        self.precision, self.device = "fp32", "numpy"

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.check_feed(feed)
        x = feed[self.input_name]
        return {"logits": x.reshape(len(x), -1) @ self.w}

    def prepare(self, feed: dict[str, np.ndarray]) -> None:
        self.check_feed(feed)
        self.feed = feed

    def run_prepared(self) -> None:
        ToyRunner.runs += 1
        self.infer(self.feed)

    def describe(self) -> dict[str, Any]:
        return {"backend": "toy", "precision": self.precision, "device": self.device,
                "versions": {"numpy": np.__version__}}


@pytest.fixture
def toy_backend():
    ToyRunner.runs = 0
    backend = register_backend(Backend("toy", "NumPy matmul", open=ToyRunner, suffixes=(".toy",),
                                       needs="numpy", timing="perf_counter around one NumPy matmul"))
    yield backend
    unregister_backend("toy")


def test_a_toy_backend_is_benchmarked_by_deploy_bench(toy_backend, tmp_path, capsys) -> None:
    model = tmp_path / "model.toy"
    with model.open("wb") as f:
        np.savez(f, w=np.random.default_rng(0).standard_normal((28 * 28, 10)).astype(np.float32),
                 shape=np.array([1, 28, 28]))
    with pytest.raises(SystemExit):
        deploy_cli.main(["bench", "--help"])
    assert "{ort,trt,toy}" in capsys.readouterr().out
    out = tmp_path / "m.json"
    assert deploy_cli.main(["bench", str(model), "--batch", "4", "--warmup", "2", "--iters", "7",
                            "--out", str(out)]) == 0  # the backend comes from the .toy suffix
    assert ToyRunner.runs == 2 + 7
    measurement = json.loads(out.read_text())
    assert measurement["backend"] == "toy" and measurement["batch"] == 4
    assert measurement["timing"] == "perf_counter around one NumPy matmul"
    assert measurement["sha256"] == sha256_file(model) and measurement["input_shape"] == [1, 28, 28]
    assert 0 < measurement["latency_ms"]["min"] <= measurement["latency_ms"]["median"]
    assert "[toy fp32 batch 4]" in capsys.readouterr().out
    # no per-layer profiler registered: one line, exit status 2
    assert deploy_cli.main(["profile", str(model)]) == 2
    assert "backend 'toy' has no per-layer profiler" in capsys.readouterr().err


def test_builtin_entries_and_unknown_names() -> None:
    assert list(BACKENDS)[:2] == ["ort", "trt"]
    assert backend_for_path("m.engine").name == "trt" and backend_for_path("m.onnx").name == "ort"
    assert backend_for_path("m.bin").name == "ort"
    assert get_backend("trt").gpu and not get_backend("ort").gpu
    with pytest.raises(DeployError, match="unknown backend 'nope': use ort or trt"):
        get_backend("nope")
    assert get_backend("trt").build("model.onnx", None, "fp16", 512) == (
        "python3 -m deploy build model.onnx --fp16 --workspace-mb 512 --timing-cache timing.cache")


def test_profiles_and_bundle_commands_follow_the_table() -> None:
    from edgekd.inputs.profiles import BACKENDS as PROFILE_BACKENDS, GPU_BACKENDS, load_profile
    from edgekd.ship.bundle_readme import ReadmeInputs, build_commands, run_commands

    def _commands(profile, batch: int, has_teacher: bool, int8: bool) -> str:
        info = ReadmeInputs(batch=batch, model_sha="", has_teacher=has_teacher, input_shape=(),
                            dynamic=False, int8=int8)
        return "\n".join(build_commands(profile, info) + run_commands(profile, info))

    assert PROFILE_BACKENDS[:2] == ("ort", "trt") and GPU_BACKENDS == ("trt",)
    orin = load_profile("jetson-orin-nano-8gb")
    assert orin.runtime.backend == "trt"
    lines = _commands(orin, 1, has_teacher=False, int8=True).splitlines()
    assert lines[0].startswith("python3 -m deploy build model.int8.onnx --fp16 --out model.engine")
    assert lines[1].startswith("python3 -m deploy bench model.engine --batch 1")
    host = _commands(load_profile("host-cpu"), 8, has_teacher=True, int8=False).splitlines()
    assert host[0].startswith("python3 -m deploy bench model.onnx --batch 8")
    assert host[1].startswith("python3 -m deploy bench teacher.onnx")
