""".ci/run, run against stand-ins for python, apt-get and the browser (nothing is installed):
it installs Debian's chromium when no browser is found (and says so), makes the HTML test
required, and fails when pytest fails or collects nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FAKE_PYTHON = """#!/bin/sh
echo "python $* EDGEKD_REQUIRE_BROWSER=$EDGEKD_REQUIRE_BROWSER" >> "$CI_LOG"
case "$*" in *pytest*) exit "$FAKE_PYTEST_RC";; esac
exit 0
"""
FAKE_APT = """#!/bin/sh
echo "apt-get $*" >> "$CI_LOG"
"""


def _run_ci(tmp_path: Path, pytest_rc: int, browser: bool) -> tuple[subprocess.CompletedProcess, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "id"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    for name, text in (("python", FAKE_PYTHON), ("apt-get", FAKE_APT)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    if browser:
        (bin_dir / "chromium").write_text("#!/bin/sh\n")
        (bin_dir / "chromium").chmod(0o755)
    log = tmp_path / "log"
    env = {"PATH": str(bin_dir), "CI_LOG": str(log), "FAKE_PYTEST_RC": str(pytest_rc),
           "HOME": str(tmp_path)}
    proc = subprocess.run([shutil.which("bash"), str(REPO / ".ci" / "run")], env=env,
                          capture_output=True, text=True, timeout=60)
    return proc, log.read_text() if log.exists() else ""


@pytest.mark.skipif(os.geteuid() != 0, reason="the install branch runs as root (as CI does)")
def test_installs_chromium_when_missing_and_requires_the_browser_test(tmp_path: Path) -> None:
    proc, log = _run_ci(tmp_path, 0, browser=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Chromium is missing: installing Debian's chromium" in proc.stdout
    assert "apt-get install -y -qq chromium" in log
    assert "python -m pytest EDGEKD_REQUIRE_BROWSER=1" in log


def test_browser_present_nothing_installed(tmp_path: Path) -> None:
    proc, log = _run_ci(tmp_path, 0, browser=True)
    assert proc.returncode == 0 and "apt-get" not in log and "installing" not in proc.stdout


@pytest.mark.parametrize("rc", [1, 5])  # a failing test; no test collected
def test_fails_when_pytest_fails_or_collects_nothing(tmp_path: Path, rc: int) -> None:
    proc, log = _run_ci(tmp_path, rc, browser=True)
    assert proc.returncode == rc and "python -m pytest" in log


def _ci_commands() -> str:
    """The install and test lines of .ci/run, joined as one shell command."""
    lines = (REPO / ".ci" / "run").read_text().splitlines()
    return " && ".join(line for line in lines if line.startswith("python -m "))


def test_ci_runs_the_readmes_test_command_on_the_newest_allowed_packages() -> None:
    """CI upgrades every dependency to the newest release pyproject allows (a new release that
    breaks edgekd fails CI), and it is exactly the README's second command."""
    ci = _ci_commands()
    assert "--upgrade --upgrade-strategy eager" in ci and ci.endswith("python -m pytest")
    readme = (REPO / "README.md").read_text()
    second = readme.split("```bash\n", 1)[1].splitlines()[1]
    assert second.split("   #")[0].strip() == ci, (second, ci)
