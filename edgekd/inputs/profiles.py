"""Device profiles: what a target device can do and what a student must fit into.

A profile is a TOML file (the shipped ones live in the top-level ``profiles/`` folder, installed
as the package ``edgekd.device_profiles``)::

    name = "jetson-orin-nano-8gb"
    kind = "jetson"                 # cpu | gpu | jetson
    description = "..."

    [hardware]                      # datasheet peaks, used by the roofline latency model
    fp32_tflops = 1.28              # TFLOP/s, FP32 (CUDA cores or CPU SIMD)
    fp16_tflops = 10.2              # TFLOP/s, FP16 (dense tensor cores)
    int8_tops = 20.5                # TOP/s, INT8 (dense, i.e. half the "sparse" marketing figure)
    memory_bandwidth_gbs = 68.0     # GB/s, DRAM
    dla_cores = 0                   # NVDLA engines (Jetson only)
    layer_overhead_us = 15.0        # fixed cost per layer (kernel launch, op dispatch)

    [budget]                        # defaults; CLI flags override them (DeviceProfile.with_budget)
    latency_ms = 0.5                # per batch
    batch = 1
    macs = 2_000_000                # multiply-accumulates per sample

    [runtime]
    backend = "ort"                 # ort (ONNX Runtime) | trt (TensorRT)
    precision = "fp16"              # fp32 | fp16 | int8
    workspace_mb = 1024             # TensorRT builder workspace
    tensorrt = "10.3"               # optional: the device's TensorRT (JetPack 5.1: 8.5, 6.0: 8.6,
                                    # 6.1/6.2: 10.3, 7.2: 10.16, 7.2.2+: 11.4.1; x86 pip: 11.5)

    [search]                        # optional section
    channel_multiple = 8            # student widths are rounded to multiples of this

``runtime.tensorrt`` names the TensorRT the device runs: the bundle's ONNX models are checked
against that version's ONNX parser (``deploy/opcheck.py``) and the search skips families it
cannot build; without it a TensorRT bundle is checked against every version with a table.
Every other key is required (except the optional ``[search]`` section, whose
``channel_multiple`` defaults to 8 for ``gpu`` / ``jetson`` profiles, where tensor cores
and vectorised kernels want channel counts in multiples of 8, and to 2 for ``cpu``) and
unknown keys are errors, so a typo never silently falls back to a
default. Any problem is raised as one :class:`~edgekd.core.errors.EdgekdError` line that names the
file and the dotted key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd_deploy import backends as deploy_backends
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import loads_json, loads_toml

if TYPE_CHECKING:
    from importlib.abc import Traversable

KINDS = ("cpu", "gpu", "jetson")
#: ``runtime.backend`` values: the deploy kit's backend table (deploy.backends), read at import.
BACKENDS = tuple(deploy_backends.BACKENDS)
PRECISIONS = ("fp32", "fp16", "int8")
#: Backends that need an NVIDIA GPU (so a ``cpu`` profile cannot use them).
GPU_BACKENDS = tuple(b.name for b in deploy_backends.BACKENDS.values() if b.gpu)
#: The package that holds the shipped ``*.toml`` files (the repo's ``profiles/`` folder).
SHIPPED_PACKAGE = "edgekd.device_profiles"
DEFAULT_PROFILE = "host-cpu"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _positive(unit: str) -> Any:
    """A numeric field that must be > 0."""
    return field(metadata={"min": 0, "strict": True, "unit": unit})


def _non_negative(unit: str) -> Any:
    """A numeric field that must be >= 0."""
    return field(metadata={"min": 0, "strict": False, "unit": unit})


def _choice(choices: tuple[str, ...]) -> Any:
    return field(metadata={"choices": choices})


@dataclass(frozen=True)
class Hardware:
    """Datasheet peaks of the device (dense figures; sparse marketing numbers are halved)."""

    fp32_tflops: float = _positive("TFLOP/s")
    fp16_tflops: float = _positive("TFLOP/s")
    int8_tops: float = _positive("TOP/s")
    memory_bandwidth_gbs: float = _positive("GB/s")
    dla_cores: int = _non_negative("engines")
    layer_overhead_us: float = _non_negative("us/layer")

    def peak_ops(self, precision: str) -> float:
        """Peak arithmetic rate in operations per second (1 MAC = 2 ops) at ``precision``."""
        per_precision = {"fp32": self.fp32_tflops, "fp16": self.fp16_tflops, "int8": self.int8_tops}
        if precision not in per_precision:
            raise EdgekdError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
        return per_precision[precision] * 1e12


@dataclass(frozen=True)
class Budget:
    """What a student must fit: latency per batch of ``batch`` samples, and MACs per sample."""

    latency_ms: float = _positive("ms")
    batch: int = _positive("samples")
    macs: int = _positive("MACs/sample")


@dataclass(frozen=True)
class Runtime:
    """How the model is run on the device."""

    backend: str = _choice(BACKENDS)
    precision: str = _choice(PRECISIONS)
    workspace_mb: int = _positive("MB")
    #: the device's TensorRT version ("8.5", "10.3", "11.4.1"); "" when the profile does not say
    tensorrt: str = field(default="", metadata={"optional": True, "version": True})


@dataclass(frozen=True)
class SearchSettings:
    """How the student search suits this device: widths rounded to ``channel_multiple``."""

    channel_multiple: int = _positive("channels")

    @classmethod
    def default_for(cls, kind: str) -> "SearchSettings":
        """8 on GPUs and Jetsons (tensor cores), 2 on CPUs (the even widths of the first space)."""
        return cls(channel_multiple=8 if kind in ("gpu", "jetson") else 2)


@dataclass(frozen=True)
class DeviceProfile:
    """One target device: its hardware, default budget and runtime. ``source`` = where it came from."""

    name: str
    kind: str = _choice(KINDS)
    description: str
    hardware: Hardware
    budget: Budget
    runtime: Runtime
    source: str = ""
    search: SearchSettings = field(default_factory=lambda: SearchSettings(2))

    def with_budget(self, latency_ms: float | None = None, macs: int | None = None,
                    batch: int | None = None) -> DeviceProfile:
        """A copy with some budget values replaced (how CLI flags override the profile).

        The new values are validated like the file's (positive; ``macs`` and ``batch``
        integers), so ``--latency-ms -1`` fails with the same kind of one-line error.
        """
        overrides = {"latency_ms": latency_ms, "macs": macs, "batch": batch}
        values = dataclasses.asdict(self.budget)
        values.update({k: v for k, v in overrides.items() if v is not None})
        where = f"budget override for profile '{self.name}'"
        return dataclasses.replace(self, budget=_build(Budget, values, "budget", where))

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON-ready), ``source`` included; inverse of :meth:`from_dict`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | None = None) -> DeviceProfile:
        """Rebuild a profile from :meth:`to_dict` output (e.g. a run's ``run.json``), validated."""
        data = dict(data)
        origin = source or str(data.pop("source", "") or "<dict>")
        data.pop("source", None)
        return _profile_from_mapping(data, origin, f"profile '{origin}'")


# --------------------------------------------------------------------------- validation
_SECTIONS: dict[str, type] = {"hardware": Hardware, "budget": Budget, "runtime": Runtime}
_SCALARS: tuple[str, ...] = ("name", "kind", "description")


def _type_name(value: Any) -> str:
    return {bool: "boolean", str: "string", int: "integer", float: "number",
            dict: "table", list: "array"}.get(type(value), type(value).__name__)


def _check_value(value: Any, f: dataclasses.Field, key: str, where: str) -> Any:
    """Check one scalar against its dataclass field (type + bounds/choices); return it typed."""
    expected = f.type if isinstance(f.type, str) else f.type.__name__
    got = f"got {_type_name(value)} {value!r}"
    if expected == "str":
        if not isinstance(value, str):
            raise EdgekdError(f"{where}: key '{key}' must be a string, {got}: quote it")
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise EdgekdError(f"{where}: key '{key}' is {value!r}: use one of "
                              f"{', '.join(repr(c) for c in choices)}")
        if f.metadata.get("version") and value:
            _check_tensorrt(value, key, where)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EdgekdError(f"{where}: key '{key}' must be a number, {got}: "
                          "write a plain number without quotes")
    if expected == "int":
        if isinstance(value, float):
            raise EdgekdError(f"{where}: key '{key}' must be an integer, {got}: "
                              "write a whole number such as 2_000_000")
    else:
        if not math.isfinite(value):
            raise EdgekdError(f"{where}: key '{key}' must be a finite number, {got}")
        value = float(value)
    if "min" in f.metadata:
        low, strict = f.metadata["min"], f.metadata["strict"]
        if value < low or (strict and value == low):
            bound = f"> {low}" if strict else f">= {low}"
            raise EdgekdError(f"{where}: key '{key}' must be {bound}, got {value!r}: "
                              f"set a value {bound} ({f.metadata['unit']})")
    return value


def _check_keys(table: Any, allowed: list[str], section: str, where: str,
                optional: tuple[str, ...] = ()) -> None:
    prefix = f"{section}." if section else ""
    if not isinstance(table, dict):
        raise EdgekdError(f"{where}: '{section}' must be a table, got {_type_name(table)}: "
                          f"write it as a [{section}] section")
    unknown = [k for k in table if k not in allowed]
    if unknown:
        raise EdgekdError(f"{where}: unknown key '{prefix}{unknown[0]}': remove it or check the "
                          f"spelling (allowed: {', '.join(allowed)})")
    missing = [k for k in allowed if k not in table and k not in optional]
    if missing:
        raise EdgekdError(f"{where}: missing key '{prefix}{missing[0]}': add it "
                          f"(see 'edgekd profiles show {DEFAULT_PROFILE}' for a complete profile)")


def _check_tensorrt(value: str, key: str, where: str) -> None:
    """A TensorRT version the parser check has an operator table for."""
    from edgekd_deploy.errors import DeployError
    from edgekd_deploy.opcheck import supported_versions, table_version

    if not re.fullmatch(r"\d+\.\d+(\.\d+)*", value):
        raise EdgekdError(f"{where}: key '{key}' is {value!r}: write a version such as \"8.5\" "
                          "or \"10.3\" (what 'dpkg -l | grep nvinfer' or pip reports)")
    try:
        table_version(value)
    except DeployError:
        raise EdgekdError(f"{where}: key '{key}' is {value!r}: the ONNX parser check knows "
                          f"TensorRT {', '.join(supported_versions())} (and later minor versions)") from None


def _build(cls: type, table: Any, section: str, where: str) -> Any:
    """Validate a TOML table against the dataclass ``cls`` and build it."""
    fields = dataclasses.fields(cls)
    optional = tuple(f.name for f in fields if f.metadata.get("optional"))
    _check_keys(table, [f.name for f in fields], section, where, optional)
    return cls(**{f.name: _check_value(table[f.name], f, f"{section}.{f.name}", where)
                  for f in fields if f.name in table})


def _profile_from_mapping(data: dict[str, Any], origin: str, where: str) -> DeviceProfile:
    _check_keys(data, [*_SCALARS, *_SECTIONS, "search"], "", where, optional=("search",))
    scalars = {f.name: f for f in dataclasses.fields(DeviceProfile) if f.name in _SCALARS}
    values = {k: _check_value(data[k], scalars[k], k, where) for k in _SCALARS}
    if not _NAME_RE.match(values["name"]):
        raise EdgekdError(f"{where}: key 'name' is {values['name']!r}: use only letters, digits, "
                          "'.', '_' and '-' (it becomes part of file names)")
    sections = {k: _build(cls, data[k], k, where) for k, cls in _SECTIONS.items()}
    search = (_build(SearchSettings, data["search"], "search", where) if "search" in data
              else SearchSettings.default_for(values["kind"]))
    profile = DeviceProfile(**values, **sections, source=origin, search=search)
    if profile.runtime.backend in GPU_BACKENDS and profile.kind == "cpu":
        raise EdgekdError(f"{where}: key 'runtime.backend' is {profile.runtime.backend!r} but "
                          f"kind is 'cpu': {deploy_backends.get_backend(profile.runtime.backend).title} needs an "
                          "NVIDIA GPU, use backend = \"ort\"")
    return profile


def parse_profile(text: str, origin: str) -> DeviceProfile:
    """Parse and validate profile TOML ``text``; ``origin`` names it in error messages."""
    where = f"profile '{origin}'"
    try:
        data = loads_toml(text)
    except ValueError as error:
        raise EdgekdError(f"{where}: {error}: fix the syntax there") from None
    return _profile_from_mapping(data, origin, where)


# --------------------------------------------------------------------------- loading
def _shipped_dir() -> Traversable:
    """The shipped profiles: the installed ``edgekd.device_profiles`` package (pyproject maps
    the repository's ``profiles/`` onto it), or ``profiles/`` itself when edgekd runs from a
    source tree that was never installed (``PYTHONPATH=.``, as on a lent GPU machine)."""
    try:
        return resources.files(SHIPPED_PACKAGE)
    except ModuleNotFoundError:
        return _source_tree_profiles()


def _source_tree_profiles() -> Traversable:
    folder = Path(__file__).resolve().parents[2] / "profiles"
    if not folder.is_dir():
        raise EdgekdError(f"the shipped device profiles are missing (no {SHIPPED_PACKAGE} package "
                          f"and no {folder}): reinstall edgekd (pip install .)")
    return folder


def available_profiles() -> list[str]:
    """Names of the shipped profiles (the ``*.toml`` files in ``edgekd.device_profiles``)."""
    return sorted(entry.name[: -len(".toml")] for entry in _shipped_dir().iterdir()
                  if entry.name.endswith(".toml") and entry.is_file())


def _read_text(resource: Traversable | Path, origin: str) -> str:
    try:
        return resource.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise EdgekdError(f"profile '{origin}': not UTF-8 text ({error.reason} at byte "
                          f"{error.start}): save it as UTF-8") from error
    except OSError as error:
        raise EdgekdError(f"profile '{origin}': cannot read it ({error.strerror}): "
                          "check the path and its permissions") from error


def _looks_like_path(text: str) -> bool:
    return text.endswith((".toml", ".json")) or "/" in text or os.sep in text


def parse_profile_json(text: str, origin: str) -> DeviceProfile:
    """A profile in JSON, as ``edgekd profiles show NAME --json`` prints it (its ``source``,
    where it was read from, is ignored); validated like TOML."""
    where = f"profile '{origin}'"
    try:
        data = loads_json(text)
    except ValueError as error:
        raise EdgekdError(f"{where}: {error}: fix the syntax there") from None
    if not isinstance(data, dict):
        raise EdgekdError(f"{where}: holds a JSON {type(data).__name__}, not an object: pass "
                          "the output of 'edgekd profiles show NAME --json'")
    data.pop("source", None)
    return _profile_from_mapping(data, origin, where)


def profile_text(name_or_path: str | os.PathLike) -> str:
    """The TOML text of a shipped profile or a user's file, as written (comments included):
    what ``edgekd profiles show NAME --toml`` prints, to copy and edit."""
    text = os.fspath(name_or_path)
    load_profile(text)  # validated, and a bad name or path is one line
    if not _looks_like_path(text) and text in available_profiles():
        shipped = _shipped_dir() / f"{text}.toml"
        return _read_text(shipped, str(shipped))
    path = Path(text).expanduser()
    if path.suffix == ".json":
        return profile_toml(load_profile(text), f"edgekd profiles show {text} --toml")
    return _read_text(path, str(path))


def profile_toml(profile: DeviceProfile, writer: str) -> str:
    """TOML text of a profile (scalars first, then one table per section); ``writer`` names
    the command that wrote it, in the first comment line."""
    import json

    data = profile.to_dict()
    data.pop("source", None)
    lines = [f"# edgekd device profile '{data['name']}' (written by {writer})"]
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    for key, value in data.items():
        if key not in tables:
            lines.append(f"{key} = {json.dumps(value)}")
    for table, values in tables.items():
        lines += ["", f"[{table}]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def load_profile(name_or_path: str | os.PathLike) -> DeviceProfile:
    """Load a shipped profile by name (``"jetson-orin-nano-8gb"``) or a user's ``.toml`` file.

    A value ending in ``.toml`` or containing a path separator is a file; otherwise a shipped
    name is tried first, then an existing file of that name. Unknown names list the choices.
    """
    text = os.fspath(name_or_path)
    names = available_profiles()
    choices = ", ".join(names)
    if not _looks_like_path(text) and text in names:
        shipped = _shipped_dir() / f"{text}.toml"
        return parse_profile(_read_text(shipped, str(shipped)), str(shipped))
    path = Path(text).expanduser()
    if path.is_dir():
        raise EdgekdError(f"profile '{text}' is a directory: give a .toml file or one of: {choices}")
    if path.is_file():
        parse = parse_profile_json if path.suffix == ".json" else parse_profile
        return parse(_read_text(path, str(path)), str(path))
    if _looks_like_path(text):
        raise EdgekdError(f"profile file '{text}' not found: give an existing .toml (or .json) file "
                          f"or one of: {choices}")
    raise EdgekdError(f"unknown profile '{text}': use one of: {choices} (or a path to a .toml file)")


def shipped_profiles() -> list[DeviceProfile]:
    """Every shipped profile, loaded and validated, in name order."""
    return [load_profile(name) for name in available_profiles()]
