"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """EDGEKD_CACHE_DIR -> a fresh temporary folder for each test module, so tests never read
    or write the user's cache (built-in teacher, teacher logits, cost cache) and each module
    starts cold. Module scope: a session-wide one would hide "trained once, then cached" bugs
    between modules."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGEKD_CACHE_DIR", str(tmp_path_factory.mktemp("edgekd-cache")))
        # kernel tables (edgekd calibrate) live in the config dir: keep the user's out too
        patch.setenv("EDGEKD_CONFIG_DIR", str(tmp_path_factory.mktemp("edgekd-config")))
        yield


@pytest.fixture
def one_thread():
    """Run a training test with one torch thread (restored afterwards): on a loaded 2-core
    machine two threads were 4-10x slower per step, and one thread keeps results bit-stable."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
