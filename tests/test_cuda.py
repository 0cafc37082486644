"""deploy.cuda on a real GPU: both bindings (ctypes on the system libcudart, cuda-python) copy
data through device memory on an explicitly created and destroyed stream. Skipped, with the
reason, where no CUDA GPU is usable (tests/test_trt_api.py covers the no-GPU errors)."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd_deploy.cuda import Cuda, import_cuda_python, load_ctypes_cudart


def _bindings():
    found = []
    ctypes_binding, _failed = load_ctypes_cudart()
    if ctypes_binding is not None:
        found.append(pytest.param(ctypes_binding, id="ctypes"))
    python = import_cuda_python()
    if python is not None:
        try:
            err, count = python.device_count()
        except Exception:  # noqa: BLE001 - cuda-python without a driver
            err, count = 1, 0
        if err == 0 and count > 0:
            found.append(pytest.param(python, id="cuda-python"))
    return found


BINDINGS = _bindings()
pytestmark = pytest.mark.skipif(not BINDINGS, reason="no usable CUDA GPU (or no libcudart / cuda-python)")


@pytest.mark.parametrize("binding", BINDINGS or [None])
def test_round_trip_through_the_device(binding) -> None:
    cuda = Cuda(binding)
    assert cuda.device_count() >= 1 and cuda.device_name()
    assert {"cuda_runtime", "cuda_driver"} <= set(cuda.versions())
    x = np.arange(4096, dtype=np.float32)
    y = np.zeros_like(x)
    pointer = cuda.malloc(x.nbytes)
    try:
        with cuda.stream() as stream:
            assert stream.handle != 0
            cuda.h2d(pointer, x, stream)
            cuda.d2h(y, pointer, stream)
            cuda.sync(stream)
        assert stream.closed
        stream.close()  # idempotent
    finally:
        cuda.free(pointer)
    np.testing.assert_array_equal(x, y)
