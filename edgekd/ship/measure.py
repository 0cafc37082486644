"""Host latency measurement through the deploy kit, in a subprocess.

:func:`measure_onnx` runs ``python -m deploy bench`` (the project's one timing routine, the
same code a Jetson runs) in a fresh interpreter, so the figure is not disturbed by the
parent's torch threads or memory, and host and device numbers come from the same code path.

The interpreter is isolated (``python -I``: no working directory, PYTHONPATH or user
site-packages on ``sys.path``) and started in the kit's own folder, with the kit's path given
explicitly, so a ``deploy/`` folder or a ``numpy.py`` in the user's working directory never
runs in its place.
It returns the Measurement dict that the kit wrote (see deploy/bench.py).
:func:`data_accuracy` adds top-1 accuracy on a data set's test split for ``edgekd measure
--data``, through the deploy kit's torch-free ONNX Runtime path (``deploy check``'s
:func:`deploy.check.check_runner`, normalised with the model's ``edgekd.normalization``).
:func:`measured_latency` exports a student spec and measures it this way (the *measured*
label of the latency model, :mod:`edgekd.search.latency`).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd_deploy import onnxmeta
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import read_json

if TYPE_CHECKING:  # pragma: no cover
    from edgekd.search.latency import LatencyEstimate
    from edgekd.search.space import StudentSpec

LATENCY_KEYS = ("mean", "median", "p90", "p99", "min", "std")


#: The name the deploy kit is installed under (``deploy`` is its name in a bundle only).
KIT_PACKAGE = "edgekd_deploy"


def _deploy_root() -> Path:
    """The folder that contains the deploy kit's package (found without importing it)."""
    spec = importlib.util.find_spec(KIT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EdgekdError("the deploy kit is not installed: reinstall edgekd (pip install -e .)")
    return Path(next(iter(spec.submodule_search_locations))).parent


#: ``python -I -c`` program: put the kit's folder (argv[1]) first on sys.path, then run
#: the kit as ``python -m deploy`` would, with the remaining arguments.
_LAUNCH = ("import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
           f"runpy.run_module('{KIT_PACKAGE}', run_name='__main__', alter_sys=True)")


def deploy_command(args: list[str]) -> tuple[list[str], Path]:
    """The isolated ``python -m deploy ARGS`` command line and the folder to run it in (the
    kit's parent folder). Paths in ``args`` must be absolute: the working directory changes."""
    root = _deploy_root()
    return [sys.executable, "-I", "-c", _LAUNCH, str(root), *args], root


def run_deploy(args: list[str], *, timeout: float = 600.0) -> subprocess.CompletedProcess:
    """``python -m deploy ARGS`` in an isolated subprocess (see the module docstring); its
    one-line error becomes an EdgekdError. Paths in ``args`` must be absolute."""
    command, root = deploy_command(args)
    try:
        proc = subprocess.run(command, capture_output=True, text=True, cwd=root,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise EdgekdError(f"'python -m deploy {args[0]}' took longer than {timeout:.0f} s: "
                          "lower --iters or check the machine's load") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit status {proc.returncode}"
        raise EdgekdError(last.removeprefix("error: "))
    return proc


def measure_onnx(onnx_path: str | Path, *, batch: int = 1, backend: str = "ort", warmup: int = 10,
                 iters: int = 50, out: Path | None = None, provider: str = "cpu",
                 threads: int = 0, timeout: float = 600.0) -> dict[str, Any]:
    """Measure ``onnx_path`` (or an engine with ``backend="trt"``) with ``python -m deploy
    bench`` and return its Measurement dict; the JSON is kept at ``out`` when given."""
    onnx_path = Path(onnx_path).resolve()
    if not onnx_path.is_file():
        raise EdgekdError(f"model file '{onnx_path}' not found: check the path")
    with tempfile.TemporaryDirectory(prefix="edgekd-measure-") as tmp:
        target = (Path(out) if out is not None else Path(tmp) / "measurement.json").resolve()
        run_deploy(["bench", str(onnx_path), "--backend", backend, "--batch", str(batch),
                    "--warmup", str(warmup), "--iters", str(iters), "--provider", provider,
                    "--threads", str(threads), "--out", str(target)], timeout=timeout)
        return read_json(target)


def data_accuracy(onnx_path: str | Path, data: str) -> dict[str, Any]:
    """Top-1 accuracy of ``onnx_path`` on the test split of ``data`` (an .npz, an image folder,
    'mnist-subset': see :func:`edgekd.inputs.loaders.load_dataset`; folders are resized to the
    model's input size): ``accuracy = mean(argmax(logits) == y)`` over the split, computed by
    ``deploy check``'s code. A model whose input shape or class count differs from the data's
    is an EdgekdError (nothing is measured)."""
    from edgekd_deploy.check import Data, check_runner
    from edgekd_deploy.errors import DeployError
    from edgekd_deploy.runners import OrtRunner
    from edgekd.inputs.loaders import load_dataset

    onnx_path = Path(onnx_path)
    if onnx_path.suffix != ".onnx" or not onnx_path.is_file():
        raise EdgekdError(f"model '{onnx_path}' is not an .onnx file: accuracy (--data) needs an "
                          "ONNX model from 'edgekd export'")
    try:
        with OrtRunner(onnx_path) as runner:
            shape = tuple(int(v) for v in runner.sample_shape)
            dataset = load_dataset(data, image_size=shape[1:])
            if tuple(dataset.input_shape) != shape:
                raise EdgekdError(f"data '{data}' holds images shaped {tuple(dataset.input_shape)}, "
                                  f"model '{onnx_path.name}' takes {shape}: pass the data set "
                                  "the model was trained on")
            result = check_runner(runner, Data(dataset.x_test, dataset.y_test, None, None), data)
    except DeployError as error:
        raise EdgekdError(str(error)) from None
    if result["classes"] != dataset.num_classes:
        raise EdgekdError(f"model '{onnx_path.name}' has {result['classes']} classes, data "
                          f"'{data}' has {dataset.num_classes}: pass the data set the model "
                          "was trained on")
    return {"top1": result["accuracy"], "split": "test", "samples": result["samples"],
            "classes": dataset.num_classes, "data": dataset.source}


def measured_latency(spec: "StudentSpec", out_dir: str | Path, *, batch: int = 1,
                     warmup: int = 10, iters: int = 50, statistic: str = "median") -> "LatencyEstimate":
    """Export ``build(spec)`` (fresh weights: latency does not depend on their values) to
    ``out_dir/ID.onnx`` and time it on this host with the deploy kit; the Measurement JSON is
    written beside it as ``out_dir/ID-b{batch}.json``."""
    import torch

    from edgekd.ship.export import export_onnx
    from edgekd.search.latency import LatencyEstimate
    from edgekd.search.space import build

    out_dir = Path(out_dir)
    onnx_path = out_dir / f"{spec.id}.onnx"
    if not onnx_path.exists():
        torch.manual_seed(0)
        model = build(spec).eval()
        export_onnx(model, spec.input, onnx_path, batch=batch, dynamic_batch=(1, batch, max(batch, 64)),
                    metadata={onnxmeta.SPEC: spec.to_json()})
    result = measure_onnx(onnx_path, batch=batch, warmup=warmup, iters=iters,
                          out=out_dir / f"{spec.id}-b{batch}.json")
    return LatencyEstimate(ms=float(result["latency_ms"][statistic]), label="measured", batch=batch)
