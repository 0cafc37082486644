"""Device profiles: the shipped TOMLs, strict validation with one-line errors, budget overrides,
count/shape units, the `profiles` CLI, and that a built wheel carries the profiles and data."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekd.cli.cli import cli
from edgekd.core.errors import EdgekdError
from edgekd.inputs.profiles import (
    DeviceProfile,
    _shipped_dir,
    available_profiles,
    load_profile,
    parse_profile,
)
from edgekd.core.units import format_count, parse_count, parse_shape

REPO = Path(__file__).resolve().parents[1]
SHIPPED = {"host-cpu", "jetson-orin-nano-8gb", "jetson-orin-nx-16gb", "jetson-agx-orin-64gb",
           "jetson-xavier-nx", "t4", "a100", "h100", "rtx4090"}
# the shipped profiles as edgekd finds them: the installed package, or profiles/ of a source tree
BASE_TEXT = (_shipped_dir() / "host-cpu.toml").read_text("utf-8")
#: The line the "bad TOML" case breaks (``batch = 1`` -> ``batch = ``), 1-based.
BAD_LINE = BASE_TEXT.splitlines().index("batch = 1") + 1


def _edit(pattern: str, replacement: str, text: str = BASE_TEXT) -> str:
    """Replace one whole line of the host-cpu profile (the test fails if nothing matched)."""
    new, count = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
    assert count == 1, f"pattern {pattern!r} not found in host-cpu.toml"
    return new


# --------------------------------------------------------------------------- shipped profiles
def test_every_shipped_profile_loads_with_the_nine_names() -> None:
    assert set(available_profiles()) == SHIPPED
    for name in SHIPPED:
        profile = load_profile(name)
        assert profile.name == name
        assert Path(profile.source).name == f"{name}.toml"
        hw = profile.hardware
        # Tensor cores / SIMD never make lower precision slower; dense figures are consistent.
        assert hw.fp32_tflops <= hw.fp16_tflops <= hw.int8_tops, name
        assert (profile.runtime.backend == "ort") == (profile.kind == "cpu"), name
        assert isinstance(profile.budget.macs, int) and isinstance(profile.budget.batch, int)
        assert hw.peak_ops(profile.runtime.precision) > 0
        assert (hw.dla_cores > 0) <= (profile.kind == "jetson"), name


def test_to_dict_from_dict_round_trip_and_json() -> None:
    profile = load_profile("jetson-orin-nano-8gb")
    data = json.loads(json.dumps(profile.to_dict()))
    assert data["hardware"]["memory_bandwidth_gbs"] == 68.0
    assert DeviceProfile.from_dict(data) == profile


def test_user_file_by_path_and_profiles_are_frozen(tmp_path: Path) -> None:
    path = tmp_path / "my-device.toml"
    path.write_text(_edit(r'^name = .*$', 'name = "my-device"'), encoding="utf-8")
    profile = load_profile(str(path))
    assert profile.name == "my-device" and profile.source == str(path)
    with pytest.raises(FrozenInstanceError):
        profile.budget.latency_ms = 5.0  # type: ignore[misc]


# --------------------------------------------------------------------------- budget overrides
def test_with_budget_overrides_and_validates() -> None:
    base = load_profile("host-cpu")
    tighter = base.with_budget(latency_ms=2, macs=parse_count("300K"))
    assert tighter.budget.latency_ms == 2.0 and isinstance(tighter.budget.latency_ms, float)
    assert tighter.budget.macs == 300_000
    assert tighter.budget.batch == base.budget.batch  # None keeps the profile's value
    assert base.budget.macs == 1_500_000  # the original is untouched
    assert tighter.hardware == base.hardware and tighter.runtime == base.runtime
    assert base.with_budget(batch=8).budget.batch == 8
    with pytest.raises(EdgekdError, match=r"'budget\.latency_ms' must be > 0"):
        base.with_budget(latency_ms=-1.0)
    with pytest.raises(EdgekdError, match=r"'budget\.batch' must be an integer"):
        base.with_budget(batch=2.5)  # type: ignore[arg-type]
    with pytest.raises(EdgekdError, match=r"'budget\.macs' must be > 0"):
        base.with_budget(macs=0)


# --------------------------------------------------------------------------- malformed files
MALFORMED = [
    # (id, edited text, the dotted key or phrase the one-line error must name)
    ("missing-key", _edit(r"^macs = .*\n", ""), "budget.macs"),
    ("missing-section", BASE_TEXT.split("[runtime]")[0], "'runtime'"),
    ("unknown-key", _edit(r"^batch = 1$", "batch = 1\nlatncy_ms = 2.0"), "budget.latncy_ms"),
    ("unknown-top-key", _edit(r'^kind = "cpu"$', 'kind = "cpu"\ncolour = "red"'), "colour"),
    ("unknown-section", BASE_TEXT + "\n[extra]\nx = 1\n", "extra"),
    ("string-for-number", _edit(r"^latency_ms = .*$", 'latency_ms = "0.1"'), "budget.latency_ms"),
    ("bool-for-number", _edit(r"^dla_cores = .*$", "dla_cores = true"), "hardware.dla_cores"),
    ("float-for-int", _edit(r"^batch = .*$", "batch = 1.5"), "budget.batch"),
    ("negative-budget", _edit(r"^latency_ms = .*$", "latency_ms = -1.0"), "budget.latency_ms"),
    ("zero-hardware", _edit(r"^fp32_tflops = .*$", "fp32_tflops = 0"), "hardware.fp32_tflops"),
    ("unknown-kind", _edit(r'^kind = .*$', 'kind = "tpu"'), "kind"),
    ("unknown-backend", _edit(r'^backend = .*$', 'backend = "tflite"'), "runtime.backend"),
    ("unknown-precision", _edit(r'^precision = .*$', 'precision = "fp8"'), "runtime.precision"),
    ("trt-on-cpu", _edit(r'^backend = .*$', 'backend = "trt"'), "runtime.backend"),
    ("bad-name", _edit(r'^name = .*$', 'name = "my device"'), "name"),
    ("bad-toml", _edit(r"^batch = 1$", "batch = "), f"line {BAD_LINE},"),
]


def _invoke(*args: str):
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.mark.parametrize(("text", "key"), [(t, k) for _, t, k in MALFORMED],
                         ids=[case for case, _, _ in MALFORMED])
def test_malformed_profile_is_one_line_naming_file_and_key(tmp_path: Path, text: str,
                                                           key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    result = _invoke("profiles", "show", str(path))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and str(path) in lines[0] and key in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_bad_toml_names_the_line_directly() -> None:
    with pytest.raises(EdgekdError, match=rf"profile 'x\.toml': invalid TOML: .*line {BAD_LINE},"):
        parse_profile(_edit(r"^batch = 1$", "batch = "), "x.toml")


@pytest.mark.parametrize("arg", ["no-such-device", "missing/dir/device.toml"])
def test_unknown_name_or_missing_file_lists_the_available_names(arg: str) -> None:
    result = _invoke("profiles", "show", arg)
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line and arg in line
    assert all(name in line for name in SHIPPED), line


def test_verbose_shows_the_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(_edit(r"^latency_ms = .*$", "latency_ms = -1.0"), encoding="utf-8")
    result = _invoke("profiles", "show", str(path), "--verbose")
    assert result.exit_code == 2 and "Traceback" in result.stderr


# --------------------------------------------------------------------------- CLI output
def test_profiles_list_shows_all_nine() -> None:
    result = _invoke("profiles", "list")
    assert result.exit_code == 0, result.output
    for name in SHIPPED:
        assert re.search(rf"\b{re.escape(name)}\b", result.stdout), name
    assert "trt/fp16" in result.stdout and "ort/fp32" in result.stdout
    listed = json.loads(_invoke("profiles", "list", "--json").stdout)
    assert {p["name"] for p in listed} == SHIPPED


def test_profiles_show_prints_hardware_and_budget() -> None:
    result = _invoke("profiles", "show", "jetson-orin-nano-8gb")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in ("[hardware]", "[budget]", "[runtime]", "memory_bandwidth_gbs", "latency_ms",
                 "1,500,000 (1.5M)", "trt"):
        assert text in out, text
    shown = json.loads(_invoke("profiles", "show", "jetson-orin-nano-8gb", "--json").stdout)
    assert shown == load_profile("jetson-orin-nano-8gb").to_dict()


# --------------------------------------------------------------------------- units
@pytest.mark.parametrize(("text", "value"), [
    ("30M", 30_000_000), ("107M", 107_000_000), ("1.5k", 1_500), ("2G", 2_000_000_000),
    ("30000000", 30_000_000), ("30_000_000", 30_000_000), (" 250K ", 250_000), (".5M", 500_000),
    ("1e6", 1_000_000), (42, 42),
])
def test_parse_count(text: str | int, value: int) -> None:
    assert parse_count(text) == value


@pytest.mark.parametrize("text", ["12Q", "-3M", "1.2345K", "", "M", "abc", "1e400", True, -1])
def test_parse_count_rejects(text: object) -> None:
    with pytest.raises(EdgekdError) as info:
        parse_count(text)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message and str(text) in message and "e.g." in message, message


@pytest.mark.parametrize(("count", "text"), [
    (0, "0"), (999, "999"), (1_500, "1.5K"), (30_000_000, "30.0M"), (1_400_000, "1.4M"),
    (999_950, "1.0M"), (11_000_000_000, "11.0G"), (-2_500, "-2.5K"),
])
def test_format_count(count: int, text: str) -> None:
    assert format_count(count) == text
    if count >= 0 and count % 100_000 == 0:
        assert parse_count(text) == count  # format -> parse round-trips at one decimal


def test_parse_shape() -> None:
    assert parse_shape("1x28x28") == (1, 28, 28)
    assert parse_shape("(3, 32, 32)") == (3, 32, 32)
    assert parse_shape("3X224X224") == (3, 224, 224)
    assert parse_shape([1, 28, 28]) == (1, 28, 28)
    for bad in ("1x0x28", "1x-2", "axb", "", "1.5x2"):
        with pytest.raises(EdgekdError, match="1x28x28"):
            parse_shape(bad)


# --------------------------------------------------------------------------- packaging
def _package_roots() -> list[str]:
    """Top-level folders the wheel is built from, read from pyproject's [tool.setuptools]."""
    import tomllib

    setup = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]
    dirs = {setup.get("package-dir", {}).get(p, p.replace(".", "/")) for p in setup["packages"]}
    return sorted({d.split("/")[0] for d in dirs})


def test_wheel_contains_profiles_and_mnist_subset(tmp_path: Path) -> None:
    """Build a wheel from a copy of the sources (the shared checkout stays clean) and check
    that the 9 TOMLs and the MNIST subset are inside and are found through the package."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ["pyproject.toml", "README.md", "LICENSE"]:
        if (REPO / name).exists():
            shutil.copy2(REPO / name, src / name)
    for root in _package_roots():
        shutil.copytree(REPO / root, src / root,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist"), str(src)], check=True,
                   capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("edgekd-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"edgekd/device_profiles/{n}.toml" for n in SHIPPED} <= names
    assert "edgekd/assets/mnist_subset.npz" in names
    # A pure-Python wheel is importable as a zip: the profiles load through importlib.resources.
    code = ("import edgekd, edgekd.inputs.profiles as p; "
            "assert edgekd.__file__.startswith(%r), edgekd.__file__; "
            "print(len(p.available_profiles()), p.load_profile('t4').budget.batch)" % str(wheel))
    out = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(wheel)!r}); "
                          + code], cwd=tmp_path, check=True, capture_output=True, text=True)
    assert out.stdout.split() == ["9", "64"]


def test_profiles_show_output_is_a_profile(tmp_path: Path) -> None:
    """The README says to copy `profiles show t4` to make a profile: that JSON was rejected as
    "invalid TOML" (issue 15, item 5). --toml prints the file as written; --json output saved
    as .json loads too; both give the same profile, and --profile accepts them."""
    from edgekd.inputs.profiles import load_profile

    runner = CliRunner()
    shown = runner.invoke(cli, ["profiles", "show", "t4", "--toml"])
    assert shown.exit_code == 0, shown.output
    assert shown.output == (_shipped_dir() / "t4.toml").read_text()
    (tmp_path / "mine.toml").write_text(shown.output)
    as_json = runner.invoke(cli, ["profiles", "show", "t4", "--json"])
    (tmp_path / "mine.json").write_text(as_json.output)
    t4 = load_profile("t4").to_dict()
    for name in ("mine.toml", "mine.json"):
        loaded = load_profile(str(tmp_path / name)).to_dict()
        assert {**loaded, "source": None} == {**t4, "source": None}
    again = runner.invoke(cli, ["profiles", "show", str(tmp_path / "mine.json"), "--toml"])
    (tmp_path / "again.toml").write_text(again.output)
    assert {**load_profile(str(tmp_path / "again.toml")).to_dict(), "source": None} == \
        {**t4, "source": None}
    (tmp_path / "bad.json").write_text("[1, 2]")
    bad = runner.invoke(cli, ["profiles", "show", str(tmp_path / "bad.json")])
    assert bad.exit_code == 2 and "not an object" in bad.output


def test_shipped_profiles_load_from_a_source_tree_that_was_never_installed(monkeypatch) -> None:
    """Without ``pip install`` there is no ``edgekd.device_profiles`` package (pyproject maps
    ``profiles/`` onto it); a lent GPU machine runs the checkout with PYTHONPATH=. and hit
    ModuleNotFoundError. The repository's profiles/ folder serves then."""
    import edgekd.inputs.profiles as profiles

    monkeypatch.setattr(profiles, "SHIPPED_PACKAGE", "edgekd._not_installed_profiles")
    names = profiles.available_profiles()
    assert "host-cpu" in names and "jetson-orin-nano-8gb" in names
    assert profiles.load_profile("host-cpu").name == "host-cpu"
