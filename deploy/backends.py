"""The backend table: a runtime's name -> how to open a model with it, profile it, build for it.

``python -m deploy``'s ``--backend`` choices, the backend guessed from a file's suffix, the
per-layer profile, the timing note of a Measurement, and (in edgekd) the device bundle's
commands and the profile keys are all read from :data:`BACKENDS`, so a new runtime is one
:func:`register_backend` call plus its runner. Standard library only at import: each built-in entry
imports its runner (numpy and its runtime: onnxruntime, tensorrt) when first used, so a device
with one runtime never imports the other. :func:`open_runner` opens a model with its backend.

A runner is any object with the contract of :mod:`deploy.runners` (``input_name``,
``input_shape``, ``output_names``, ``metadata``, ``path``, ``random_feed``, ``prepare``,
``run_prepared``, ``infer``, ``describe``). Example, a toy backend::

    register_backend(Backend("toy", "a NumPy matmul", open=ToyRunner, suffixes=(".toy",),
                             needs="numpy", timing="perf_counter around one matmul"))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import DeployError

__all__ = ["Backend", "BACKENDS", "register_backend", "unregister_backend", "get_backend",
           "backend_names", "backend_for_path", "backend_for", "open_runner", "DEFAULT_BACKEND"]

#: opens a model file: ``open(path, *, provider, threads, batch, spinning) -> runner`` (an
#: opener ignores the options that do not apply to its runtime)
Opener = Callable[..., Any]
#: per-layer profile: ``profile(path, batch, warmup, iters, provider, threads) -> (runner, layers, samples)``
Profiler = Callable[..., "tuple[Any, list[dict[str, Any]], list[float]]"]
#: the device command that builds the file this backend runs from an ONNX model:
#: ``build(source_onnx, out_or_None, precision, workspace_mb) -> command line``
BuildCommand = Callable[[str, "str | None", str, int], str]


@dataclass(frozen=True)
class Backend:
    """One runtime. ``suffixes``: the model files it runs (the first is the one a bundle runs;
    a file with one of them is given to this backend when ``--backend`` is omitted).
    ``build``: None when it runs the ONNX file itself, else the build step's command.
    ``gpu``: needs an NVIDIA GPU. ``needs``: what to install on the device."""

    name: str
    title: str
    open: Opener
    suffixes: tuple[str, ...]
    needs: str
    timing: str
    profile: Profiler | None = None
    build: BuildCommand | None = None
    gpu: bool = False


BACKENDS: dict[str, Backend] = {}
#: the backend of a file whose suffix no backend claims
DEFAULT_BACKEND = "ort"


def register_backend(backend: Backend, *, replace: bool = False) -> Backend:
    if backend.name in BACKENDS and not replace:
        raise ValueError(f"backend {backend.name!r} is already registered")
    BACKENDS[backend.name] = backend
    return backend


def unregister_backend(name: str) -> None:
    BACKENDS.pop(name, None)


def backend_names() -> list[str]:
    return list(BACKENDS)


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise DeployError(f"unknown backend '{name}': use {' or '.join(BACKENDS)}")
    return BACKENDS[name]


def backend_for_path(path: str | Path) -> Backend:
    """The backend that claims ``path``'s suffix, else :data:`DEFAULT_BACKEND`."""
    suffix = Path(path).suffix.lower()
    for backend in BACKENDS.values():
        if suffix in backend.suffixes and backend.name != DEFAULT_BACKEND:
            return backend
    return BACKENDS[DEFAULT_BACKEND]


def backend_for(path: str | Path, backend: str | None = None) -> str:
    """``backend`` if given (checked against the table), else the backend that
    claims the file's suffix ("trt" for .engine/.plan/.trt) and "ort" otherwise."""
    if backend:
        return get_backend(backend).name
    return backend_for_path(path).name


def open_runner(path: str | Path, backend: str | None = None, *, provider: str = "cpu",
                threads: int = 0, batch: int | None = None,
                spinning: bool = True) -> Any:
    """Open ``path`` with the runner of ``backend`` (guessed from the suffix when None): an object
    with the runner contract of :mod:`deploy.runners`."""
    path = Path(path)
    if not path.is_file():
        raise DeployError(f"model file '{path}' not found: check the path")
    return get_backend(backend_for(path, backend)).open(path, provider=provider, threads=threads, batch=batch,
                                                        spinning=spinning)


# --------------------------------------------------------------------------- built-ins
def _open_ort(path: Path, *, provider: str = "cpu", threads: int = 0, batch: int | None = None,
              spinning: bool = True) -> Any:
    from .runners import OrtRunner

    return OrtRunner(path, provider=provider, threads=threads, spinning=spinning)


def _open_trt(path: Path, *, provider: str = "cpu", threads: int = 0, batch: int | None = None,
              spinning: bool = True) -> Any:
    from .runners import TrtRunner

    if path.suffix.lower() == ".onnx":
        raise DeployError(f"'{path}' is an ONNX model and --backend trt needs an engine: "
                          f"build one first: python -m deploy build {path}")
    return TrtRunner(path, batch=batch)


def _profile_ort(*args: Any) -> Any:
    from .layer_times import profile_ort

    return profile_ort(*args)


def _profile_trt(model: Path, batch: int, warmup: int, iters: int, provider: str, threads: int) -> Any:
    from .layer_times import profile_trt

    return profile_trt(model, batch, warmup, iters)


def _build_trt(source: str, out: str | None, precision: str, workspace_mb: int) -> str:
    flags = {"fp16": " --fp16", "int8": " --int8", "fp32": ""}[precision]
    target = f" --out {out}" if out else ""
    return (f"python3 -m deploy build {source}{flags}{target} "
            f"--workspace-mb {workspace_mb} --timing-cache timing.cache")


register_backend(Backend(
    "ort", "ONNX Runtime", open=_open_ort, suffixes=(".onnx",),
    needs="onnxruntime (`pip install onnxruntime`)",
    timing="perf_counter around ONNX Runtime's synchronous run", profile=_profile_ort))
register_backend(Backend(
    "trt", "TensorRT", open=_open_trt, suffixes=(".engine", ".plan", ".trt"),
    needs="TensorRT 8.5-11.x with the CUDA runtime (a Jetson's system python3 has both)",
    timing="perf_counter around execute_async_v3 + cudaStreamSynchronize",
    profile=_profile_trt, build=_build_trt, gpu=True))
