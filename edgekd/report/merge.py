"""Merging device measurements into a run: ``edgekd report RUN --measurements FILE``.

Each Measurement JSON (written by ``python -m deploy bench``) is checked against the run's
target profile before it is copied to ``measurements/target-*.json``: the backend, precision
and batch must be the profile's, and the device must be the profile's device (every word of
the profile name but "jetson" and a memory size, e.g. "orin" and "nano" for
jetson-orin-nano-8gb, found in the measured device name; not checked for a CPU profile, which
stands for whichever CPU runs it). A mismatch is refused in one line; with ``force`` it is
merged and the file records why (``forced``), which the report shows in the latency label.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import atomic_write_json, sha256_file
from edgekd.core.runfolder import MEASUREMENT, RunDir, read_doc

_MEMORY = re.compile(r"^\d+gb$")


@dataclass(frozen=True)
class Target:
    """What a device figure must have been measured with to stand for the run's target."""

    profile: str
    kind: str
    backend: str
    precision: str
    batch: int

    @classmethod
    def of_run(cls, run: RunDir) -> Target:
        identity = run.manifest()["identity"]
        profile, runtime = identity["profile"], identity["profile"].get("runtime", {})
        return cls(profile=str(profile.get("name")), kind=str(profile.get("kind")),
                   backend=str(runtime.get("backend")), precision=str(runtime.get("precision")),
                   batch=int(identity["budget"]["batch"]))

    def device_words(self) -> list[str]:
        return [w for w in self.profile.lower().split("-") if w != "jetson" and not _MEMORY.match(w)]

    def mismatches(self, record: dict[str, Any]) -> list[str]:
        """Human descriptions of what in ``record`` differs from this target (empty: it fits)."""
        found = []
        for key, wanted in (("backend", self.backend), ("precision", self.precision),
                            ("batch", self.batch)):
            got = record.get(key, "fp32" if key == "precision" else None)
            if str(got) != str(wanted):
                found.append(f"{key} {got} (the profile's is {wanted})")
        device = str(record.get("device", "?"))
        squashed = re.sub(r"[^a-z0-9]", "", device.lower())
        if self.kind != "cpu" and not all(w in squashed for w in self.device_words()):
            found.append(f"device '{device}' is not a {self.profile}")
        return found


@dataclass(frozen=True)
class Merged:
    """One merged file: where it went and which report row shows it."""

    source: Path
    destination: Path
    record: dict[str, Any]
    row: str | None
    forced: tuple[str, ...]


def _read_measurement(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise EdgekdError(f"measurement file {path} does not exist: pass the JSON written by "
                          "'python -m deploy bench' on the device")
    try:
        record = read_doc(MEASUREMENT, path)
        float(record["latency_ms"]["median"])
    except (EdgekdError, KeyError, TypeError, ValueError):
        raise EdgekdError(f"{path} is not a deploy-kit Measurement JSON (needs sha256 and "
                          "latency_ms.median): pass the file 'python -m deploy bench' wrote") from None
    bad = {key: value for key, value in record["latency_ms"].items()
           if not _is_time(value) or (key == "median" and value == 0)}
    if bad:
        raise EdgekdError(f"{path} has latencies that are not positive finite times "
                          f"({', '.join(f'{k} {v!r}' for k, v in sorted(bad.items())[:3])}): "
                          "measure again with 'python -m deploy bench'")
    return record


def _is_time(value: Any) -> bool:
    """A latency in ms: a finite number >= 0 (not a bool, not NaN)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)


def stored_name(file_name: str) -> str:
    """The name a merged file gets under measurements/ (``target-`` prefixed): ``file_name``
    with every character but letters, digits and ``-_.`` turned into ``_`` (any name the user
    gave is accepted; the stored one is a plain id that stays inside the run)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(file_name).stem).strip("._") or "measurement"
    return f"{stem[:100]}.json"


def _rows_by_sha(run: RunDir) -> dict[str, str]:
    """sha256 of each exported ONNX -> its report row (the trial id, or 'teacher')."""
    if not run.export.is_dir():
        return {}
    return {sha256_file(p): p.stem for p in sorted(run.export.glob("*.onnx"))}


def merge_measurements(run_root: str | Path, files: Iterable[str | Path], *,
                       force: bool = False) -> list[Merged]:
    """Check each file against the run's target, then copy it to ``measurements/target-*.json``.
    All files are checked before any is copied, so a refusal leaves the run as it was."""
    run = RunDir(Path(run_root))
    paths = [Path(f) for f in files]
    if not paths:
        return []
    target = Target.of_run(run)
    checked = []
    for path in paths:
        record = _read_measurement(path)
        problems = target.mismatches(record)
        if problems and not force:
            raise EdgekdError(f"{path.name} was not measured on this run's target "
                              f"({target.profile}, {target.backend} {target.precision}, batch "
                              f"{target.batch}): {'; '.join(problems)}: measure with the bundle's "
                              "commands, or pass --force to merge it labelled as such")
        checked.append((path, record, tuple(problems)))
    rows = _rows_by_sha(run)
    merged = []
    for path, record, problems in checked:
        if problems:
            record = {**record, "forced": list(problems)}
        destination = atomic_write_json(run.target_measurement(stored_name(path.name)), record)
        merged.append(Merged(path, Path(destination), record, rows.get(record["sha256"]), problems))
    return merged


def merge_lines(merged: list[Merged], target_is_host: bool) -> list[str]:
    """What ``edgekd report`` prints per merged file: the figure and where the report shows it."""
    column = ("columns 'host ms' (this run's target is a CPU like the host's), speed-up and the "
              "Pareto flags" if target_is_host else "column 'target ms'")
    lines = []
    for m in merged:
        r = m.record
        where = (f"report table row '{m.row}', {column}" if m.row
                 else "no report row: no exported model of this run has its sha256")
        forced = f" [forced: {'; '.join(m.forced)}]" if m.forced else ""
        lines.append(f"merged {m.source.name}: {r.get('device', '?')}, {r.get('backend', '?')} "
                     f"{r.get('precision', 'fp32')} batch {r.get('batch', '?')}, median "
                     f"{float(r['latency_ms']['median']):.4g} ms -> {where}{forced}")
    return lines
