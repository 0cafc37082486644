"""The few CUDA runtime calls the TensorRT runner needs, without a pip package where possible.

Two bindings, tried in this order:

1. **ctypes on the system ``libcudart``** (as Polygraphy does): the CUDA runtime that came with
   the driver (JetPack's ``/usr/local/cuda/lib64/libcudart.so.*``: ``.so.11.0`` on JetPack 5,
   ``.so.12`` on 6, ``.so.13`` on 7; a CUDA toolkit, or the ``nvidia-cuda-runtime`` wheel). Nothing to install on a Jetson. Every candidate library is
   tried until one initialises, so a newer ``libcudart.so.13`` that the driver is too old for
   does not hide a working ``libcudart.so.12``. ``DEPLOY_CUDART=/path/libcudart.so.12`` picks
   one explicitly.
2. **cuda-python** when no ``libcudart`` loads: ``cuda.bindings.runtime`` (cuda-python >= 12.6)
   or the older ``cuda.cudart``. cuda-python 12.x/13.x implements the runtime on top of the
   driver library ``libcuda.so.1``; 12.6 raises ``RuntimeError("Failed to dlopen libcuda.so.1")``
   where the driver is missing, and 13.x needs an R580+ driver (JetPack 6 has R36/CUDA 12.6).

Every failure is one :class:`DeployError` line naming the library, the CUDA error, the driver
version when known and the fix for this platform (:mod:`deploy.cuda_platforms`). Nothing is released in ``__del__``: a :class:`Stream` is
destroyed by ``close()`` (or a ``with`` block), device memory by ``Cuda.free`` (the TensorRT
runner does both in its own ``close()``).
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
from pathlib import Path
from typing import Any

from .cuda_platforms import fix_hint
from .errors import DeployError

LIBCUDART_NAMES = ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0")
LIBCUDART_DIRS = ("/usr/local/cuda/lib64", "/usr/local/cuda/targets/aarch64-linux/lib",
                  "/usr/local/cuda/targets/sbsa-linux/lib", "/usr/local/cuda/targets/x86_64-linux/lib")

SUCCESS = 0
MEMORY_ALLOCATION = 2
INITIALIZATION_ERROR = 3
INSUFFICIENT_DRIVER = 35
NO_DEVICE = 100
UNKNOWN = 999
H2D, D2H = 1, 2   # cudaMemcpyKind values (stable since CUDA 4)

def _dotted(version: int | None) -> str | None:
    if not version:
        return None
    return f"{version // 1000}.{(version % 1000) // 10}"


def kernel_driver_version() -> str | None:
    """The NVIDIA kernel module's version (e.g. '540.4.0') from /proc, None when unknown."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text(errors="replace")
    except OSError:
        return None
    for word in text.split():
        parts = word.split(".")
        if len(parts) >= 2 and all(p.isdigit() for p in parts):
            return word
    return None


def cuda_error_line(library: str, call: str, code: int, name: str, *,
                    runtime: str | None, driver: str | None) -> str:
    """The one line for a failed CUDA call: what failed, in which library, and the fix."""
    module = kernel_driver_version()
    if driver:
        drv = f"driver supports CUDA {driver}" + (f", kernel module {module}" if module else "")
    elif module:
        drv = f"kernel module {module}"
    else:
        drv = "no NVIDIA driver found"
    where = f"{library} (CUDA runtime {runtime or 'unknown'}, {drv})"
    if code == INSUFFICIENT_DRIVER and not driver and not module:
        fix = ("no NVIDIA driver is loaded here: run on a machine with an NVIDIA GPU and its driver "
               "(nvidia-smi, or tegrastats on a Jetson), or use --backend ort")
    elif code == INSUFFICIENT_DRIVER:
        fix = "the driver is older than this CUDA runtime: " + fix_hint(driver)
    elif code in (NO_DEVICE, INITIALIZATION_ERROR, UNKNOWN):
        fix = ("no usable CUDA GPU is visible: check nvidia-smi (tegrastats on a Jetson), "
               "CUDA_VISIBLE_DEVICES, and that this user may open the GPU (groups video/render)")
    elif code == MEMORY_ALLOCATION:
        fix = "out of GPU memory: use a smaller --batch or stop other GPU programs"
    else:
        fix = f"see the CUDA runtime documentation of {name}"
    return f"CUDA call {call} failed with {name} ({code}) in {where}: {fix}"


# --------------------------------------------------------------------------- ctypes binding
class CtypesCudart:
    """``libcudart`` through ctypes. Every method returns ``(error_code, value)``."""

    kind = "ctypes"

    def __init__(self, lib: Any, path: str) -> None:
        self.lib, self.library = lib, path
        c_int_p, c_void_pp = ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_void_p)
        signatures = {
            "cudaGetDeviceCount": [c_int_p], "cudaGetDevice": [c_int_p],
            "cudaRuntimeGetVersion": [c_int_p], "cudaDriverGetVersion": [c_int_p],
            "cudaMalloc": [c_void_pp, ctypes.c_size_t], "cudaFree": [ctypes.c_void_p],
            "cudaStreamCreate": [c_void_pp], "cudaStreamDestroy": [ctypes.c_void_p],
            "cudaStreamSynchronize": [ctypes.c_void_p],
            "cudaMemcpyAsync": [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                ctypes.c_void_p],
        }
        for name, argtypes in signatures.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = argtypes, ctypes.c_int
        # CUDA 12 has the current struct layout under _v2; CUDA 13 under the plain name. Only
        # ``name`` (the first field, char[256]) is read, into a buffer larger than either struct.
        self._props = getattr(lib, "cudaGetDeviceProperties_v2", None) or lib.cudaGetDeviceProperties
        self._props.argtypes, self._props.restype = [ctypes.c_void_p, ctypes.c_int], ctypes.c_int
        lib.cudaGetErrorName.argtypes, lib.cudaGetErrorName.restype = [ctypes.c_int], ctypes.c_char_p

    def _int(self, fn: Any) -> tuple[int, int]:
        value = ctypes.c_int(0)
        return int(fn(ctypes.byref(value))), value.value

    def device_count(self) -> tuple[int, int]:
        return self._int(self.lib.cudaGetDeviceCount)

    def device(self) -> tuple[int, int]:
        return self._int(self.lib.cudaGetDevice)

    def device_name(self, device: int) -> tuple[int, str]:
        buffer = ctypes.create_string_buffer(8192)
        err = int(self._props(buffer, device))
        return err, buffer.raw[:256].split(b"\x00", 1)[0].decode(errors="replace")

    def runtime_version(self) -> tuple[int, int]:
        return self._int(self.lib.cudaRuntimeGetVersion)

    def driver_version(self) -> tuple[int, int]:
        return self._int(self.lib.cudaDriverGetVersion)

    def malloc(self, nbytes: int) -> tuple[int, int]:
        pointer = ctypes.c_void_p(0)
        err = int(self.lib.cudaMalloc(ctypes.byref(pointer), max(1, int(nbytes))))
        return err, int(pointer.value or 0)

    def free(self, pointer: int) -> tuple[int, None]:
        return int(self.lib.cudaFree(ctypes.c_void_p(pointer))), None

    def stream_create(self) -> tuple[int, Any]:
        stream = ctypes.c_void_p(0)
        return int(self.lib.cudaStreamCreate(ctypes.byref(stream))), int(stream.value or 0)

    def stream_destroy(self, stream: Any) -> tuple[int, None]:
        return int(self.lib.cudaStreamDestroy(ctypes.c_void_p(stream))), None

    def stream_sync(self, stream: Any) -> tuple[int, None]:
        return int(self.lib.cudaStreamSynchronize(ctypes.c_void_p(stream))), None

    def memcpy_async(self, dst: int, src: int, nbytes: int, kind: int, stream: Any) -> tuple[int, None]:
        err = self.lib.cudaMemcpyAsync(ctypes.c_void_p(dst), ctypes.c_void_p(src), nbytes, kind,
                                       ctypes.c_void_p(stream))
        return int(err), None

    @staticmethod
    def handle(stream: Any) -> int:
        return int(stream)

    def error_name(self, code: int) -> str:
        name = self.lib.cudaGetErrorName(int(code))
        return name.decode() if name else f"cudaError {code}"


def libcudart_candidates() -> list[str]:
    """Where to look for ``libcudart``: $DEPLOY_CUDART alone when set, else the loader's search
    path by name (unversioned, then 13, 12, 11), the usual CUDA folders, and pip's
    nvidia-cuda-runtime wheels."""
    explicit = os.environ.get("DEPLOY_CUDART")
    if explicit:
        return [explicit]
    found: list[str] = list(LIBCUDART_NAMES)
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    folders = ([os.path.join(home, "lib64"), os.path.join(home, "lib")] if home else []) + list(LIBCUDART_DIRS)
    folders += [os.path.join(p, "nvidia", sub, "lib") for p in sys.path if p
                for sub in ("cuda_runtime", "cu13", "cu12")]
    for folder in folders:
        found += sorted(glob.glob(os.path.join(folder, "libcudart.so*")), reverse=True)
    return list(dict.fromkeys(found))


def _loaded_path(name: str) -> str:
    """The file the loader picked for ``name`` (from /proc/self/maps), else ``name``."""
    if os.path.isabs(name):
        return name
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return name
    stem = name.split(".so")[0]
    paths = {line.split()[-1] for line in maps if f"/{stem}.so" in line}
    return paths.pop() if len(paths) == 1 else name


def load_ctypes_cudart(candidates: list[str] | None = None
                       ) -> tuple[CtypesCudart | None, list[tuple[CtypesCudart, int]]]:
    """The first ``libcudart`` that loads and initialises (cudaGetDeviceCount succeeds), and
    the ones that loaded but failed, with their error codes."""
    failed: list[tuple[CtypesCudart, int]] = []
    for name in candidates if candidates is not None else libcudart_candidates():
        try:
            lib = ctypes.CDLL(name)
            binding = CtypesCudart(lib, _loaded_path(name))
        except (OSError, AttributeError):
            continue
        err, count = binding.device_count()
        if err == SUCCESS and count > 0:
            return binding, failed
        failed.append((binding, err if err != SUCCESS else NO_DEVICE))
    return None, failed


# --------------------------------------------------------------------------- cuda-python
class CudaPythonCudart:
    """cuda-python's runtime module (``cuda.bindings.runtime`` or ``cuda.cudart``), with the same
    ``(error_code, value)`` methods as :class:`CtypesCudart`. cuda-python's own RuntimeError
    (``Failed to dlopen libcuda.so.1``) becomes one DeployError line."""

    kind = "cuda-python"

    def __init__(self, rt: Any, module: str, version: str | None) -> None:
        self.rt, self.module, self.version = rt, module, version
        self.library = f"cuda-python {version or '(version unknown)'} ({module}, on libcuda.so.1)"

    def _call(self, fn: Any, *args: Any) -> tuple[int, Any]:
        try:
            result = fn(*args)
        except RuntimeError as error:  # cuda-python 12.6: "Failed to dlopen libcuda.so.1"
            raise DeployError(f"{self.library} cannot reach the CUDA driver ({error}): run on a "
                              f"machine with an NVIDIA GPU and driver, or {fix_hint()}") from None
        err, *values = result if isinstance(result, tuple) else (result,)
        return int(err), (values[0] if len(values) == 1 else tuple(values) if values else None)

    def device_count(self) -> tuple[int, int]:
        return self._call(self.rt.cudaGetDeviceCount)

    def device(self) -> tuple[int, int]:
        return self._call(self.rt.cudaGetDevice)

    def device_name(self, device: int) -> tuple[int, str]:
        err, props = self._call(self.rt.cudaGetDeviceProperties, device)
        if err != SUCCESS:
            return err, ""
        name = props.name
        text = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        return err, text.split("\x00", 1)[0]

    def runtime_version(self) -> tuple[int, int]:
        return self._call(self.rt.cudaRuntimeGetVersion)

    def driver_version(self) -> tuple[int, int]:
        return self._call(self.rt.cudaDriverGetVersion)

    def malloc(self, nbytes: int) -> tuple[int, int]:
        err, pointer = self._call(self.rt.cudaMalloc, max(1, int(nbytes)))
        return err, int(pointer or 0)

    def free(self, pointer: int) -> tuple[int, None]:
        return self._call(self.rt.cudaFree, pointer)

    def stream_create(self) -> tuple[int, Any]:
        return self._call(self.rt.cudaStreamCreate)

    def stream_destroy(self, stream: Any) -> tuple[int, None]:
        return self._call(self.rt.cudaStreamDestroy, stream)

    def stream_sync(self, stream: Any) -> tuple[int, None]:
        return self._call(self.rt.cudaStreamSynchronize, stream)

    def memcpy_async(self, dst: int, src: int, nbytes: int, kind: int, stream: Any) -> tuple[int, None]:
        kinds = self.rt.cudaMemcpyKind
        kind_value = kinds.cudaMemcpyHostToDevice if kind == H2D else kinds.cudaMemcpyDeviceToHost
        return self._call(self.rt.cudaMemcpyAsync, dst, src, nbytes, kind_value, stream)

    @staticmethod
    def handle(stream: Any) -> int:
        return int(stream)  # cuda-python's cudaStream_t converts to its address

    def error_name(self, code: int) -> str:
        try:
            name = self.rt.cudaGetErrorName(self.rt.cudaError_t(code))[1]
        except (ValueError, RuntimeError):
            return f"cudaError {code}"
        return name.decode() if isinstance(name, bytes) else str(name)


def import_cuda_python() -> CudaPythonCudart | None:
    """cuda-python's runtime module, or None when cuda-python is not installed."""
    from .system import package_version

    try:
        from cuda.bindings import runtime as rt
        module = "cuda.bindings.runtime"
    except ImportError:
        try:
            from cuda import cudart as rt  # type: ignore[no-redef]
            module = "cuda.cudart"
        except ImportError:
            return None
    version = package_version("cuda-bindings") or package_version("cuda-python")
    return CudaPythonCudart(rt, module, version)


# --------------------------------------------------------------------------- the one entry
class Cuda:
    """The CUDA runtime calls of the deploy kit, on whichever binding initialises (see the
    module docstring); every failure becomes one DeployError line."""

    def __init__(self, binding: CtypesCudart | CudaPythonCudart | None = None) -> None:
        if binding is None:
            binding = self._find()
        self.b = binding
        self.library = binding.library

    @staticmethod
    def _find() -> CtypesCudart | CudaPythonCudart:
        binding, failed = load_ctypes_cudart()
        if binding is not None:
            return binding
        python = import_cuda_python()
        if python is not None:
            try:
                err, count = python.device_count()
            except DeployError:  # cuda-python could not even open libcuda.so.1
                if not failed:
                    raise
            else:
                if err == SUCCESS and count > 0:
                    return python
                failed.append((python, err if err != SUCCESS else NO_DEVICE))
        if failed:
            # report the library that came closest: the one that reached a driver, else the first
            failed.sort(key=lambda item: item[1] == INSUFFICIENT_DRIVER)
            Cuda(failed[0][0]).check(failed[0][1], "cudaGetDeviceCount")
        module = kernel_driver_version()
        driver = f"NVIDIA driver {module}" if module else "no NVIDIA driver found either"
        raise DeployError("no CUDA runtime found (no libcudart.so in the loader path or "
                          f"{LIBCUDART_DIRS[0]}, and no cuda-python; {driver}): {fix_hint()}; on a PC "
                          "nvidia-smi shows the driver's CUDA version")

    def _version(self, which: str) -> str | None:
        try:
            err, value = getattr(self.b, which)()
        except DeployError:
            return None
        return _dotted(value) if err == SUCCESS else None

    def check(self, err: int, call: str) -> None:
        if err == SUCCESS:
            return
        raise DeployError(cuda_error_line(self.library, call, err, self.b.error_name(err),
                                          runtime=self._version("runtime_version"),
                                          driver=self._version("driver_version")))

    CALLS = {"device_count": "cudaGetDeviceCount", "device": "cudaGetDevice",
             "device_name": "cudaGetDeviceProperties", "malloc": "cudaMalloc", "free": "cudaFree",
             "stream_create": "cudaStreamCreate", "stream_destroy": "cudaStreamDestroy",
             "stream_sync": "cudaStreamSynchronize", "memcpy_async": "cudaMemcpyAsync"}

    def _call(self, call: str, *args: Any) -> Any:
        err, value = getattr(self.b, call)(*args)
        self.check(err, self.CALLS.get(call, call))
        return value

    def device_count(self) -> int:
        return int(self._call("device_count"))

    def device_name(self) -> str:
        device = self._call("device")
        return str(self._call("device_name", device)).rstrip("\x00")

    def versions(self) -> dict[str, str]:
        found = {"cuda_runtime": self._version("runtime_version"),
                 "cuda_driver": self._version("driver_version"),
                 "cuda_binding": self.library}
        return {k: v for k, v in found.items() if v}

    def malloc(self, nbytes: int) -> int:
        return int(self._call("malloc", nbytes))

    def free(self, pointer: int) -> None:
        self._call("free", pointer)

    def stream(self) -> "Stream":
        return Stream(self, self._call("stream_create"))

    def sync(self, stream: "Stream") -> None:
        self._call("stream_sync", stream.raw)

    def h2d(self, pointer: int, array: Any, stream: "Stream") -> None:
        self._call("memcpy_async", pointer, array.ctypes.data, array.nbytes, H2D, stream.raw)

    def d2h(self, array: Any, pointer: int, stream: "Stream") -> None:
        self._call("memcpy_async", array.ctypes.data, pointer, array.nbytes, D2H, stream.raw)


class Stream:
    """A CUDA stream, destroyed by :meth:`close` (or leaving a ``with`` block), never by the GC."""

    def __init__(self, cuda: Cuda, raw: Any) -> None:
        self.cuda, self.raw = cuda, raw
        self.handle = cuda.b.handle(raw)  # the cudaStream_t value TensorRT's execute_async_v3 takes
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.cuda._call("stream_destroy", self.raw)

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
