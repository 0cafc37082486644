"""Repair a run folder on resume from what is still sound.

A kill, a full disk or an edit can damage any file of a run. Before the scheduler runs,
:func:`reset_damaged_trials` checks every trial folder: a checkpoint that cannot be read (or is
gone while the trial's result or halving lines remain) means that trial's weights are lost, so
its checkpoint, result.json and metrics.jsonl are removed and its halving lines forgotten: the
scheduler trains exactly that trial again (its seed makes the numbers the same), and no other.
After training, :func:`restore_results` rewrites a damaged or missing result.json of a sound
trial from its halving line (the same numbers), so no sound trial is retrained for it.

Damage the other stages repair themselves: teacher.json, an export marker or a host
measurement that does not read as its document is made again; candidates.jsonl,
outcome.json, the report and the bundle are rewritten by every compress; torn or garbage
halving lines are dropped when the log is read (:meth:`RunDir._rung_records`). What cannot be
rebuilt (run.json: the run's identity) is refused in one line naming the file.
"""

from __future__ import annotations

from pathlib import Path

from edgekd.core.checkpoint import read_checkpoint
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import atomic_write_json
from edgekd.core.runfolder import (CHECKPOINT_PT, FINISHED_RESULT, METRICS_JSONL, RESULT_JSON, RunDir,
                                   read_doc_or_none)

#: Fields of result.json that a halving line does not keep (see edgekd.run.executors._LOCAL_FIELDS).
_LINE_ONLY = ("job_seconds",)


def record_folder(record: dict) -> str:
    """The trial folder a halving line's result lives in (lines written before the folder was
    recorded: the trial id)."""
    return str(record.get("folder") or record["trial"])


def _checkpoint_sound(path: Path) -> bool:
    try:
        read_checkpoint(path)
    except EdgekdError:
        return False
    return True


def reset_damaged_trials(run: RunDir) -> list[str]:
    """Reset the trial folders whose weights are lost (see the module docstring); returns
    their names."""
    if not run.trials.is_dir():
        return []
    recorded = {record_folder(r) for r in run.rung_records()}
    reset = []
    for folder in sorted(p for p in run.trials.iterdir() if p.is_dir()):
        checkpoint = folder / CHECKPOINT_PT
        if checkpoint.exists():
            if _checkpoint_sound(checkpoint):
                continue
        elif folder.name not in recorded and not (folder / RESULT_JSON).exists():
            continue  # never trained past its first epoch: nothing is lost
        for name in (CHECKPOINT_PT, RESULT_JSON, METRICS_JSONL):
            (folder / name).unlink(missing_ok=True)
        reset.append(folder.name)
    if reset:
        run.forget_folders(reset, record_folder)
    return reset


def restore_results(run: RunDir, folders: list[str]) -> list[str]:
    """Rewrite the result.json of each trial folder in ``folders`` that is missing or damaged
    from the last halving line of that folder; returns the folders restored."""
    last: dict[str, dict] = {}
    for record in run.rung_records():
        last[record_folder(record)] = record
    restored = []
    for folder in folders:
        path = run.trial_file(folder, RESULT_JSON)
        if read_doc_or_none(FINISHED_RESULT, path) is not None or folder not in last:
            continue
        result = {k: v for k, v in last[folder]["result"].items() if k not in _LINE_ONLY}
        result["checkpoint"] = str(run.trial_file(folder, CHECKPOINT_PT))
        result.setdefault("seconds", float(last[folder]["result"].get("job_seconds", 0.0)))
        atomic_write_json(path, result)
        restored.append(folder)
    return restored
