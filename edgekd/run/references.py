"""The reference students of a compress run (``--reference``, and with ``--baselines``): the
torchvision small models a user would otherwise distil into (:mod:`edgekd.search.reference`),
costed by the search's own latency model and MAC count, and those within the run's budget
trained exactly like the finalists (the final rung's method, epochs, augmentation and teacher
views), so the report can say whether the search beat them.

Their rows go into candidates.jsonl beside the search's (with ``"reference": MODEL``); their
trials are ``trials/ref-MODEL`` and their outcome entries have ``"role": "reference"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from edgekd.run.config import CompressConfig, train_config
from edgekd.run.halving import Executor, TrialJob

if TYPE_CHECKING:
    from edgekd.run.rundir import RunDir
    from edgekd.run.setup import Inputs

__all__ = ["REFERENCE_PREFIX", "reference_entries", "reference_rows", "reference_stage"]

REFERENCE_PREFIX = "ref-"
REFERENCE_RUNG = -2  # the rung index under which reference trials are recorded in halving.jsonl


def reference_rows(config: "CompressConfig", inputs: "Inputs", say: Callable[[str], None]) -> list[dict]:
    """Every reference model costed at the run's input and budget; those within the budget
    (MACs and predicted/calibrated latency, as for the search's students), as candidate rows.
    Prints one line naming those left out."""
    from edgekd.search.reference import reference_specs
    from edgekd.search.search import cost_specs, default_cost_cache

    dataset, budget = inputs.dataset, inputs.profile.budget
    specs = reference_specs(tuple(dataset.input_shape), dataset.num_classes, config.reference_models)
    costed = cost_specs(inputs.profile, specs,
                        calibration=config.calibration, cost_cache=default_cost_cache())
    fits = [c for c in costed if c.macs <= budget.macs and c.latency.ms <= budget.latency_ms]
    over = [c.spec.model for c in costed if c not in fits]
    say(f"reference students within the budget: {', '.join(c.spec.model for c in fits) or 'none'}"
        + (f" (over it: {', '.join(over)})" if over else ""))
    return [{**c.to_record(), "reference": c.spec.model} for c in fits]


def reference_trial(row: dict) -> str:
    return f"{REFERENCE_PREFIX}{row['reference']}"


def reference_stage(config: "CompressConfig", run: "RunDir", rows: list[dict], executor: Executor) -> dict[str, str]:
    """Train every reference row with the finalists' method and schedule (a finished trial is
    kept); returns model -> trial id."""
    from edgekd.run.executors import trial_payload

    trials, jobs = {}, []
    for row in rows:
        trial_id = trials[row["reference"]] = reference_trial(row)
        if run.rung_result(REFERENCE_RUNG, trial_id, config.epochs) is None:
            jobs.append(TrialJob(trial_id, REFERENCE_RUNG, config.epochs, trial_payload(
                row["spec"], train_config(config, config.method, config.epochs))))
    if jobs:
        executor.run(jobs, lambda job, result: run.record_rung(REFERENCE_RUNG, job.trial_id,
                                                                job.epochs, result, folder=job.folder))
    return trials


def reference_entries(config: "CompressConfig", rows: list[dict]) -> list[dict]:
    """outcome.json's ``trials`` entries of the reference students."""
    return [{"trial": reference_trial(row), "candidate": row["id"], "method": config.method,
             "role": "reference", "model": row["reference"]} for row in rows]
