"""The run folder's one owner: every path and every JSON document of a run, named and versioned.

```
runs/NAME/
  run.json                 edgekd.run/1       command line, versions, the run's identity
  candidates.jsonl         (lines)            every enumerated student within the budget
  outcome.json             edgekd.outcome/1   the halving outcome: rungs, finalists, winner,
                                              baselines, the trained trials, timing
  halving.jsonl            (lines)            one line per finished (rung, trial): resume bookkeeping
  teacher.json             edgekd.teacher/1   the teacher's MACs, params, accuracy, predicted latency
  trials/ID/spec.json                         the student spec trained there
  trials/ID/checkpoint.pt  edgekd.checkpoint/1  (edgekd.core.checkpoint)
  trials/ID/result.json                       the trainer's TrainResult
  trials/ID/metrics.jsonl  (lines)            one line per epoch
  export/NAME.onnx, export/NAME.json  edgekd.export/1  (the marker: which weights, which bytes)
  measurements/host-NAME.json, target-*.json  edgekd.measurement/1 (deploy kit)
  report/summary.json      edgekd.summary/1   + report.md, report.html, *.png
  bundle/                                     the device bundle (manifest.json: edgekd.bundle/1)
  .lock                                       held by the process working on the run
```

Every file and folder name above is a constant here (``RESULT_JSON``, ``TRIALS_DIR``, ...); no
other module spells one (``tests/test_run_file_names.py``). A run made before ``outcome.json``
holds its outcome in ``search.json`` (:meth:`RunDir.outcome_path`).

Reading goes through :func:`read_doc` / :func:`read_records`, which check the document's shape
(:data:`DOCUMENTS`): a corrupt, truncated or foreign file gives one line that names the file and
the command that fixes it (:class:`RunFileError`), never a JSONDecodeError or KeyError deeper
in. :func:`read_doc_or_none` is for files a resume can rebuild (teacher.json, a trial's
result.json, an export marker, a host measurement): damaged means "not there, do it again".
Every id read from a run file goes through :func:`safe_id` and every path through
:meth:`RunDir.inside`, so no run file can lead a read or a write outside the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

from edgekd.core.errors import EdgekdError
from edgekd.core.runguard import RunLock, acquire_file, check_tree
from edgekd.core.fileio import (append_jsonl, atomic_write_bytes, atomic_write_json, iter_jsonl_lines,
                                loads_json, read_text_bounded, write_jsonl)

# ---------------------------------------------------------------------------- names
RUN_JSON = "run.json"
CANDIDATES_JSONL = "candidates.jsonl"
OUTCOME_JSON = "outcome.json"
#: what ``edgekd search --out DIR`` writes beside its candidates.jsonl (and an old run's outcome)
SEARCH_JSON = "search.json"
HALVING_JSONL = "halving.jsonl"
TEACHER_JSON = "teacher.json"
LOCK_FILE = ".lock"
TRIALS_DIR = "trials"
EXPORT_DIR = "export"
MEASUREMENTS_DIR = "measurements"
REPORT_DIR = "report"
BUNDLE_DIR = "bundle"
SUPERNET_DIR = "supernet"
#: a trial folder (``trials/ID``, or ``edgekd train --out``)
SPEC_JSON = "spec.json"
CHECKPOINT_PT = "checkpoint.pt"
RESULT_JSON = "result.json"
METRICS_JSONL = "metrics.jsonl"
#: the report folder
SUMMARY_JSON = "summary.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
#: the supernet folder (and its checkpoint, CHECKPOINT_PT)
SUBNETS_JSONL = "subnets.jsonl"
#: the bundle's file list with hashes (edgekd.bundle/1)
MANIFEST_JSON = "manifest.json"
#: The folders of a run (each trial's folder is below TRIALS_DIR) and its files that must not be
#: folders: what :meth:`RunDir.check_tree` checks.
RUN_FOLDERS = (TRIALS_DIR, EXPORT_DIR, MEASUREMENTS_DIR, REPORT_DIR, BUNDLE_DIR)
RUN_FILES = (RUN_JSON, CANDIDATES_JSONL, OUTCOME_JSON, HALVING_JSONL, TEACHER_JSON)
#: The files of a trial folder (and the ones that travel between driver and Ray worker).
TRIAL_FILES = (SPEC_JSON, METRICS_JSONL, CHECKPOINT_PT, RESULT_JSON)

#: What a trial or model id read from a run file may look like: one plain file-name part
#: (no separator, no ``..``), so a path built from it stays inside the run.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_NUMBER = (int, float)


@dataclass(frozen=True)
class Document:
    """One kind of run file: its name, format tag (None: untagged), the keys (and types) a
    sound one has, and what to do when it is damaged."""

    name: str
    format: str | None
    required: dict[str, Any] = field(default_factory=dict)
    fix: str = "start a new run with another --out"
    #: a further check of a document whose keys are sound (None: none)
    check: Callable[[dict[str, Any]], str | None] | None = None

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not a sound document of this kind, or None."""
        if not isinstance(value, dict):
            return f"holds {type(value).__name__}, not an object"
        found = value.get("format")
        if self.format and found is not None and found != self.format:
            return f"is a {found!r} file, not {self.format!r}"
        for key, kind in self.required.items():
            if key not in value:
                return f"lacks '{key}'"
            item = value[key]
            if kind is not None and (not isinstance(item, kind) or isinstance(item, bool)):
                return f"has a bad '{key}' ({_short(item)})"
        return self.check(value) if self.check is not None else None


def _winner_problem(outcome: dict[str, Any]) -> str | None:
    """outcome.json's winner must be one of its trials (an edited ``../X`` is none)."""
    trials = {t.get("trial") for t in outcome["trials"] if isinstance(t, dict)}
    winner = outcome["winner"]
    return None if winner in trials else f"names a winner {_short(winner)!r} that is none of its trials"


RUN = Document(RUN_JSON, "edgekd.run/1", {"identity": dict},
               "restore it from a backup or start a new run with another --out")
OUTCOME = Document(OUTCOME_JSON, "edgekd.outcome/1",
                   {"trials": list, "winner": str, "rungs": list, "survivors": list},
                   "rebuild it with 'edgekd compress --out RUN --resume'", _winner_problem)
TEACHER = Document(TEACHER_JSON, "edgekd.teacher/1",
                   {"fingerprint": str, "macs": int, "params": int, "test_acc": _NUMBER,
                    "predicted_latency": dict},
                   "resume the run, which rebuilds it ('edgekd compress --out RUN --resume')")
RESULT = Document(RESULT_JSON, None, {"epochs_done": int, "val_acc": (int, float, type(None))},
                  "resume the run, which rebuilds it ('edgekd compress --out RUN --resume')")
#: A result.json the report can show (the trainer always writes test_acc).
FINISHED_RESULT = Document(RESULT_JSON, None, {**RESULT.required, "test_acc": _NUMBER}, RESULT.fix)
EXPORT = Document("export marker", "edgekd.export/1", {"source_sha256": str, "onnx_sha256": str},
                  "resume the run, which exports again ('edgekd compress --out RUN --resume')")
MEASUREMENT = Document("measurement", "edgekd.measurement/1", {"sha256": str, "latency_ms": dict},
                       "remove it, or measure again and pass the file 'python -m deploy bench' "
                       "wrote with 'edgekd report RUN --measurements FILE'")
SUMMARY = Document(SUMMARY_JSON, "edgekd.summary/1", {},
                   "rebuild it with 'edgekd report RUN'")
SPEC = Document(SPEC_JSON, None, {})
#: Not a run file: what ``edgekd search --out DIR`` writes beside its candidates.jsonl.
SEARCH = Document(SEARCH_JSON, "edgekd.search/1", {})
CANDIDATE = Document(f"{CANDIDATES_JSONL} line", None, {"id": str, "spec": dict})
RUNG = Document(f"{HALVING_JSONL} line", None,
                {"rung": int, "trial": str, "epochs": int, "result": dict})
METRIC = Document(f"{METRICS_JSONL} line", None, {"epoch": int})
SUBNET = Document(f"{SUBNETS_JSONL} line", None, {"id": str, "spec": dict, "val_acc": _NUMBER})
#: Every JSON document of a run, by the name it is known by.
DOCUMENTS = {doc.name: doc for doc in (RUN, OUTCOME, TEACHER, FINISHED_RESULT, EXPORT, MEASUREMENT,
                                       SUMMARY, SPEC, CANDIDATE, RUNG, METRIC, SUBNET, SEARCH)}


class RunFileError(EdgekdError):
    """A run file that is missing where it must be, corrupt or foreign: one line naming it."""

    def __init__(self, path: Path, message: str) -> None:
        self.path = Path(path)
        super().__init__(message)


def _fix(doc: Document, root: Path | None) -> str:
    return doc.fix.replace("RUN", str(root)) if root is not None else doc.fix


def read_doc(doc: Document, path: str | Path, *, root: Path | None = None) -> dict[str, Any]:
    """The document at ``path``, checked against ``doc``; RunFileError (one line naming the
    file and the fix) when it is missing, unreadable or of another shape."""
    path = Path(path)
    try:
        value = loads_json(read_text_bounded(path))
    except FileNotFoundError:
        raise RunFileError(path, f"{path} is missing: {_fix(doc, root)}") from None
    except (OSError, ValueError) as error:
        reason = "is empty" if path.exists() and path.stat().st_size == 0 else \
            f"is not readable JSON ({str(error).splitlines()[0][:60]})"
        raise RunFileError(path, f"{path} {reason}: {_fix(doc, root)}") from None
    problem = doc.problem(value)
    if problem:
        raise RunFileError(path, f"{path} {problem} (not a sound {doc.name}): {_fix(doc, root)}")
    return value


def read_doc_or_none(doc: Document, path: str | Path) -> dict[str, Any] | None:
    """The document, or None when it is missing or damaged (for files a resume rebuilds)."""
    try:
        return read_doc(doc, path)
    except RunFileError:
        return None


def write_doc(doc: Document, path: str | Path, value: dict[str, Any]) -> Path:
    """Write ``value`` atomically, tagged with ``doc``'s format."""
    body = {"format": doc.format, **value} if doc.format else dict(value)
    return atomic_write_json(path, body)


def read_records(doc: Document, path: str | Path) -> tuple[list[dict], int]:
    """The sound lines of a JSON-lines file and how many were not (torn by a kill, garbage,
    of another shape). A missing file has no lines."""
    records, bad = [], 0
    for line in iter_jsonl_lines(path):
        try:
            value = loads_json(line)
        except ValueError:
            bad += 1
            continue
        if doc.problem(value):
            bad += 1
            continue
        records.append(value)
    return records, bad


def safe_id(value: Any, source: str | Path) -> str:
    """``value`` if it is a plain id (letters, digits, ``-_.``; see ``_SAFE_ID``), else one
    line naming ``source``: an id read from a run file must not lead outside the run."""
    text = str(value)
    if not isinstance(value, str) or not _SAFE_ID.match(text) or ".." in text:
        raise EdgekdError(f"{source} names a trial or model {_short(text)!r} that is not a plain "
                          "id: the file was edited or is not from this run; restore it or start "
                          "a new run with another --out")
    return text


def acquire(root: str | Path) -> RunLock:
    """Take the lock of the run at ``root`` (its LOCK_FILE, :func:`edgekd.core.runguard.acquire_file`)."""
    return acquire_file(Path(root) / LOCK_FILE)


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
        return self.root / RUN_JSON

    @property
    def candidates(self) -> Path:
        return self.root / CANDIDATES_JSONL

    @property
    def outcome(self) -> Path:
        return self.root / OUTCOME_JSON

    def outcome_path(self) -> Path:
        """outcome.json, or a run's ``search.json`` from before the rename."""
        legacy = self.root / SEARCH_JSON
        return legacy if not self.outcome.exists() and legacy.exists() else self.outcome

    @property
    def halving_log(self) -> Path:
        return self.root / HALVING_JSONL

    @property
    def teacher_json(self) -> Path:
        return self.root / TEACHER_JSON

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def supernet_checkpoint(self) -> Path:
        """supernet/checkpoint.pt: the weight-sharing supernet of ``--strategy supernet``."""
        return self.root / SUPERNET_DIR / CHECKPOINT_PT

    @property
    def subnets(self) -> Path:
        """supernet/subnets.jsonl: every sub-network evaluated with inherited weights."""
        return self.root / SUPERNET_DIR / SUBNETS_JSONL

    @property
    def trials(self) -> Path:
        return self.root / TRIALS_DIR

    def trial(self, trial_id: str) -> Path:
        return self.trials / safe_id(trial_id, self.root)

    def trial_file(self, trial_id: str, name: str) -> Path:
        """trials/ID/NAME for NAME in spec.json, checkpoint.pt, result.json, metrics.jsonl."""
        if name not in TRIAL_FILES:
            raise ValueError(f"not a trial file: {name}")
        return self.trial(trial_id) / name

    @property
    def export(self) -> Path:
        return self.root / EXPORT_DIR

    def export_onnx(self, name: str) -> Path:
        return self.export / f"{safe_id(name, self.root)}.onnx"

    def export_marker(self, name: str) -> Path:
        return self.export / f"{safe_id(name, self.root)}.json"

    @property
    def measurements(self) -> Path:
        return self.root / MEASUREMENTS_DIR

    def host_measurement(self, name: str) -> Path:
        return self.measurements / f"host-{safe_id(name, self.root)}.json"

    def target_measurement(self, file_name: str) -> Path:
        """measurements/target-NAME.json for a device Measurement file called ``file_name``."""
        name = file_name if file_name.startswith("target-") else f"target-{file_name}"
        return self.measurements / safe_id(name, self.root)

    def measurement_files(self) -> list[Path]:
        return sorted(self.measurements.glob("*.json")) if self.measurements.is_dir() else []

    @property
    def bundle(self) -> Path:
        return self.root / BUNDLE_DIR

    @property
    def report(self) -> Path:
        return self.root / REPORT_DIR

    @property
    def summary(self) -> Path:
        return self.report / SUMMARY_JSON

    @property
    def report_md(self) -> Path:
        return self.report / REPORT_MD

    @property
    def report_html(self) -> Path:
        return self.report / REPORT_HTML

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

    # ------------------------------------------------------------------ the lock
    def hold(self, lock: RunLock) -> None:
        """Keep the run's lock (:func:`acquire`) until :meth:`release`."""
        self._lock = lock

    def release(self) -> None:
        """Release the lock (its file is removed: a finished run keeps no ``.lock``)."""
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.release()
            self._lock = None

    @contextmanager
    def locked(self) -> Iterator["RunDir"]:
        """Hold the run's lock and check its tree (:mod:`edgekd.core.runguard`) while a command
        other than compress writes into the run (``edgekd report``)."""
        self.hold(acquire(self.root))
        try:
            self.check_tree()
            yield self
        finally:
            self.release()

    def check_tree(self) -> None:
        """Refuse a link out of the run, or a file where it has a folder, in one line
        (:func:`edgekd.core.runguard.check_tree`)."""
        check_tree(self.root, RUN_FOLDERS, RUN_FILES, parents=(TRIALS_DIR,))

    # ------------------------------------------------------------------ documents
    def manifest(self) -> dict:
        """run.json, checked; a folder without one is not a run."""
        if not self.run_json.exists():
            raise EdgekdError(f"{self.root} holds no run.json: pass the folder of an edgekd "
                              "compress run (runs/NAME)")
        return read_doc(RUN, self.run_json, root=self.root)

    def read(self, doc: Document, path: Path) -> dict[str, Any]:
        return read_doc(doc, path, root=self.root)

    # ------------------------------------------------------------------ rung bookkeeping
    def rung_result(self, rung: int, trial_id: str, epochs: int,
                    folder: str | None = None) -> dict | None:
        """The result of ``trial_id`` at ``rung`` if it finished, else None.

        A line in halving.jsonl is authoritative. Without one (killed between the trial's
        result.json and the line), a sound result.json in the trial's folder (``folder``,
        default the trial id) whose ``epochs_done`` equals the rung's epochs is the same
        finished trial, so it is recorded and returned.
        """
        for record in self._rung_records():
            if record["rung"] == rung and record["trial"] == trial_id and record["epochs"] == epochs:
                return record["result"]
        result = read_doc_or_none(RESULT, self.trial_file(folder or trial_id, RESULT_JSON))
        if result is not None and result["epochs_done"] == epochs:
            self.record_rung(rung, trial_id, epochs, result, folder=folder)
            return result
        return None

    def record_rung(self, rung: int, trial_id: str, epochs: int, result: dict,
                    folder: str | None = None) -> None:
        """Append the halving line of a finished (rung, trial), with the folder it trained in."""
        append_jsonl(self.halving_log, {"rung": rung, "trial": trial_id, "epochs": epochs,
                                        "folder": folder or trial_id, "result": result})
        self._records = None

    def rung_records(self) -> list[dict]:
        return list(self._rung_records())

    def forget_folders(self, folders: Iterable[str], folder_of: Callable[[dict], str]) -> None:
        """Drop the halving lines whose trial folder (``folder_of(line)``) is in ``folders``
        (their weights are lost: those trials train again)."""
        drop = set(folders)
        write_jsonl(self.halving_log, [r for r in self._rung_records() if folder_of(r) not in drop])
        self._records = None

    def _rung_records(self) -> list[dict]:
        if getattr(self, "_records", None) is None:
            records, bad = read_records(RUNG, self.halving_log)
            if bad:  # a torn or garbage line: keep the sound ones, so appends start clean
                write_jsonl(self.halving_log, records)
            self._records = records
        return self._records

    def write_trial_files(self, trial_id: str, files: dict[str, bytes]) -> None:
        """Write files a remote worker sent back; result.json last, so its presence means
        the rest is complete."""
        for name in sorted(files, key=lambda n: n == RESULT_JSON):
            atomic_write_bytes(self.trial_file(trial_id, name), files[name])

