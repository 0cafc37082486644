"""The run directory (DESIGN.md): one folder holds everything a ``compress`` run produced.

```
runs/NAME/
  run.json            command line, versions, and the run's identity: profile, budget,
                      data + teacher fingerprints, seed, config
  candidates.jsonl    every enumerated student
  halving.jsonl       one line per finished (rung, trial): the resume bookkeeping
  trials/ID/          spec.json metrics.jsonl checkpoint.pt result.json
  export/  measurements/  bundle/  report/
```

A run is identified by :func:`identity` (everything that changes its results). Opening a
folder that holds a run with a different identity is refused with one line naming what
differs; an identical run is continued (a finished (rung, trial) is never trained again).
"""

from __future__ import annotations

import platform
import re
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import append_jsonl, atomic_write_bytes, atomic_write_json, read_json, read_jsonl

RUN_FORMAT = "edgekd.run/1"
#: What a trial or model id read from a run file may look like: one plain file-name part
#: (no separator, no ``..``), so a path built from it stays inside the run.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
#: The identity's parts, in the order differences are named in a refusal.
IDENTITY_KEYS = ("teacher", "data", "profile", "budget", "seed", "config")


def versions() -> dict[str, str]:
    """Versions of Python and the libraries that change results (read from package metadata,
    so nothing heavy is imported)."""
    found = {"python": platform.python_version()}
    for name in ("edgekd", "torch", "torchvision", "onnx", "onnxruntime", "numpy"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def identity(*, teacher: dict, data: dict, profile: dict, budget: dict, seed: int,
             config: dict) -> dict[str, Any]:
    """What makes two runs the same run. ``teacher``/``data`` carry a ``fingerprint``."""
    return {"teacher": teacher, "data": data, "profile": profile, "budget": budget,
            "seed": seed, "config": config}


def differences(old: dict, new: dict) -> list[str]:
    """Human names of what differs between two identities, e.g. ``budget.latency_ms 0.5 -> 0.3``."""
    names: list[str] = []
    for key in IDENTITY_KEYS:
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if key in ("teacher", "data"):
            names.append(f"{key} ({_fp(a)} -> {_fp(b)})")
        elif isinstance(a, dict) and isinstance(b, dict):
            for sub in sorted(set(a) | set(b)):
                if a.get(sub) != b.get(sub):
                    names.append(f"{key}.{sub} {_short(a.get(sub))} -> {_short(b.get(sub))}")
        else:
            names.append(f"{key} {_short(a)} -> {_short(b)}")
    return names


def _fp(part: Any) -> str:
    if isinstance(part, dict):
        label = part.get("name") or part.get("source") or ""
        return f"{label} {str(part.get('fingerprint', ''))[:12]}".strip()
    return _short(part)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass
class RunDir:
    """Paths inside one run folder, and the (rung, trial) bookkeeping used on resume."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    # ------------------------------------------------------------------ paths
    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def candidates(self) -> Path:
        return self.root / "candidates.jsonl"

    @property
    def halving_log(self) -> Path:
        return self.root / "halving.jsonl"

    @property
    def trials(self) -> Path:
        return self.root / "trials"

    def trial(self, trial_id: str) -> Path:
        return self.trials / safe_id(trial_id, self.root)

    def inside(self, path: str | Path, source: str | Path) -> Path:
        """``path`` (relative to the run, or absolute) resolved; refused (one line naming
        ``source``, the file it was read from) unless it stays inside the run folder."""
        candidate = Path(path)
        resolved = (candidate if candidate.is_absolute() else self.root / candidate).resolve()
        root = self.root.resolve()
        if resolved != root and root not in resolved.parents:
            raise EdgekdError(f"{source} points outside the run folder ({_short(str(path))}): "
                              f"the file was edited or is not from this run; rebuild it with "
                              f"'edgekd report {self.root}'")
        return resolved

    @property
    def export(self) -> Path:
        return self.root / "export"

    @property
    def measurements(self) -> Path:
        return self.root / "measurements"

    @property
    def bundle(self) -> Path:
        return self.root / "bundle"

    @property
    def report(self) -> Path:
        return self.root / "report"

    # ------------------------------------------------------------------ run.json
    def manifest(self) -> dict:
        if not self.run_json.exists():
            raise EdgekdError(f"{self.root} holds no run.json: pass the folder of an edgekd "
                              "compress run (runs/NAME)")
        try:
            return read_json(self.run_json)
        except (OSError, ValueError) as error:
            raise EdgekdError(f"{self.run_json} is not readable JSON ({error}): "
                              "restore it or start a new run with another --out") from None

    # ------------------------------------------------------------------ rung bookkeeping
    def rung_result(self, rung: int, trial_id: str, epochs: int,
                    folder: str | None = None) -> dict | None:
        """The result of ``trial_id`` at ``rung`` if it finished, else None.

        A line in halving.jsonl is authoritative. Without one (killed between the trial's
        result.json and the line), a result.json in the trial's folder (``folder``, default
        the trial id) whose ``epochs_done`` equals the rung's epochs is the same finished
        trial, so it is recorded and returned.
        """
        for record in self._rung_records():
            if record["rung"] == rung and record["trial"] == trial_id and record["epochs"] == epochs:
                return record["result"]
        result_path = self.trial(folder or trial_id) / "result.json"
        if result_path.exists():
            result = read_json(result_path)
            if int(result.get("epochs_done", -1)) == epochs:
                self.record_rung(rung, trial_id, epochs, result)
                return result
        return None

    def record_rung(self, rung: int, trial_id: str, epochs: int, result: dict) -> None:
        append_jsonl(self.halving_log, {"rung": rung, "trial": trial_id, "epochs": epochs,
                                        "result": result})
        self._records = None

    def rung_records(self) -> list[dict]:
        return list(self._rung_records())

    def _rung_records(self) -> list[dict]:
        if getattr(self, "_records", None) is None:
            self._records = read_jsonl(self.halving_log)
        return self._records

    def write_trial_files(self, trial_id: str, files: dict[str, bytes]) -> None:
        """Write files a remote worker sent back; result.json last, so its presence means
        the rest is complete."""
        folder = self.trial(trial_id)
        for name in sorted(files, key=lambda n: n == "result.json"):
            atomic_write_bytes(folder / name, files[name])


def safe_id(value: Any, source: str | Path) -> str:
    """``value`` if it is a plain id (letters, digits, ``-_.``; see ``_SAFE_ID``), else one
    line naming ``source``: an id read from a run file must not lead outside the run."""
    text = str(value)
    if not isinstance(value, str) or not _SAFE_ID.match(text) or ".." in text:
        raise EdgekdError(f"{source} names a trial or model {_short(text)!r} that is not a plain "
                          "id: the file was edited or is not from this run; restore it or start "
                          "a new run with another --out")
    return text


def default_out(profile: str | None, data: str | None, teacher: str | None) -> Path:
    """The deterministic default ``--out``: ``runs/default`` for the embedded default, else
    ``runs/<profile>-<data>-<teacher>`` from the names given (so ``--resume`` needs no --out)."""
    if profile is None and data is None and teacher is None:
        return Path("runs/default")
    parts = [profile or "host-cpu", Path(data).stem if data else "mnist-subset",
             Path(teacher).stem if teacher else "builtin"]
    slug = "-".join(parts)
    return Path("runs") / "".join(c if c.isalnum() or c in "-_." else "_" for c in slug)


def open_run(root: str | Path, run_identity: dict, *, resume: bool,
             command: list[str] | None = None) -> tuple[RunDir, bool]:
    """Create ``root`` for a new run, or reopen it to continue the same run.

    Returns ``(run_dir, resumed)``. Refuses (EdgekdError, one line) a folder that holds a
    different run (naming what differs), or a non-empty folder that holds no run at all.
    Without ``--resume`` an existing identical run is refused too, so a finished run is never
    touched by accident; with it, the run continues.
    """
    run = RunDir(Path(root))
    if run.root.exists() and not run.root.is_dir():
        raise EdgekdError(f"--out {run.root} is a file: pass a folder path")
    has_files = run.root.exists() and any(run.root.iterdir())
    if has_files:
        if not run.run_json.exists():
            raise EdgekdError(f"--out {run.root} is not empty and holds no edgekd run: "
                              "pass a new or empty folder")
        old = run.manifest()
        diff = differences(old.get("identity", {}), run_identity)
        if diff:
            verb = "cannot resume" if resume else "holds a different run"
            raise EdgekdError(f"--out {run.root} {verb}: {'; '.join(diff)}; pass a new --out "
                              "or the same teacher, data and budget")
        if not resume:
            raise EdgekdError(f"--out {run.root} already holds this run: add --resume to "
                              "continue it, or pass a new --out")
        return run, True
    run.root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run.run_json, {
        "format": RUN_FORMAT,
        "command": list(command if command is not None else sys.argv),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": versions(),
        "identity": run_identity,
    })
    return run, False
