"""Executors run the trials the scheduler (:class:`edgekd.run.halving.SuccessiveHalving`) hands
them; the scheduler and the run folder are the same for both.

* :class:`LocalExecutor` trains in this process, one trial after the other, straight into
  ``trials/ID/`` (the trainer checkpoints every epoch there, so a kill loses one epoch).
* :class:`RayExecutor` runs every trial as a Ray task with a CPU/GPU request and
  ``max_retries``. Workers need no shared filesystem: the driver sends the trial's files
  (checkpoint to continue from, metrics so far) with the task, the worker trains in a
  temporary folder and returns every file as bytes with the result, and the DRIVER writes
  them into the run folder atomically. ``address`` joins an existing cluster (every node needs
  edgekd installed); without it a local Ray instance starts with ``num_cpus``.

A trial is ``train_student(spec, teachers, dataset, config, out_dir)`` from
:mod:`edgekd.distill` for the job's :class:`~edgekd.run.halving.TrialPayload` (spec, TrainConfig); what it returns to the scheduler is its result.json plus
``job_seconds`` (wall time of this job, for the ETA).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import atomic_write_json
from edgekd.run.halving import TrialJob, TrialPayload
from edgekd.core.runfolder import RESULT, RESULT_JSON, SPEC_JSON, TRIAL_FILES, RunDir, read_doc

if TYPE_CHECKING:
    import torch.nn as nn

    from edgekd.inputs.data import ImageDataset

#: result.json fields that name a worker's paths or its clock; not part of the rung record.
_LOCAL_FIELDS = ("checkpoint", "seconds")


@dataclass
class TrialContext:
    """What every trial of a run shares: the teachers, the data and their fingerprints."""

    teachers: list[nn.Module]
    dataset: ImageDataset
    teacher_fps: list[str] = field(default_factory=list)
    #: torch threads of one trial (None: torch's default, all cores). A trial's numbers depend
    #: slightly on its thread count (parallel reductions), so runs that must agree bit for
    #: bit (local vs Ray, interrupted vs not) use the same value.
    threads: int | None = None


def trial_payload(spec: dict[str, Any], config: dict[str, Any]) -> TrialPayload:
    """The job payload of a student spec (its JSON document) and the TrainConfig fields."""
    from edgekd.distill.config import TrainConfig

    return TrialPayload(spec=spec, config=TrainConfig(**config))


def train_trial(payload: TrialPayload, context: TrialContext, out_dir: Path, *,
                progress: bool = False) -> dict[str, Any]:
    """Train one trial into ``out_dir`` (continuing from its checkpoint if there is one)."""
    from edgekd.distill import train_student
    from edgekd.search.space import StudentSpec

    import torch

    started = time.monotonic()
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / SPEC_JSON, payload.spec)
    previous = torch.get_num_threads()
    if context.threads:
        torch.set_num_threads(context.threads)
    try:
        train_student(StudentSpec.from_dict(payload.spec), list(context.teachers),
                      context.dataset, payload.config, out_dir,
                      teacher_fps=context.teacher_fps, progress=progress,
                      init_state=payload.init_state)
    finally:
        torch.set_num_threads(previous)
    result = {k: v for k, v in read_doc(RESULT, out_dir / RESULT_JSON).items() if k not in _LOCAL_FIELDS}
    result["job_seconds"] = round(time.monotonic() - started, 3)
    return result


class LocalExecutor:
    """Trains every job in this process, in order."""

    name = "local"

    def __init__(self, run: RunDir, context: TrialContext) -> None:
        self.folder, self.context = run, context

    def run(self, jobs: list[TrialJob], on_done: Callable[[TrialJob, dict], None]) -> None:
        for job in jobs:
            on_done(job, train_trial(job.payload, self.context, self.folder.trial(job.folder)))

    def close(self) -> None:
        pass


def _ray_trial(payload: TrialPayload, context: TrialContext, files: dict[str, bytes]
               ) -> dict[str, Any]:
    """The Ray task: train in a temporary folder and send every file back as bytes."""
    with tempfile.TemporaryDirectory(prefix="edgekd-trial-") as tmp:
        folder = Path(tmp)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        result = train_trial(payload, context, folder)
        back = {name: (folder / name).read_bytes() for name in TRIAL_FILES if (folder / name).exists()}
    return {"result": result, "files": back}


class RayExecutor:
    """Runs jobs as Ray tasks (``num_cpus``/``num_gpus`` per trial, ``max_retries``).

    A trial asks for ``context.threads`` CPUs (1 when unset) and trains with that many torch
    threads, so Ray packs ``num_cpus / threads`` trials side by side.
    """

    name = "ray"

    def __init__(self, run: RunDir, context: TrialContext, *, address: str | None = None,
                 num_cpus: int | None = None, gpus_per_trial: float = 0,
                 max_retries: int = 2) -> None:
        try:
            import ray
        except ImportError:
            raise EdgekdError("--executor ray needs Ray: pip install 'edgekd[ray]' "
                              "(or use --executor local)") from None
        if not context.threads:
            context = dataclasses.replace(context, threads=1)
        self.ray, self.folder, self.context = ray, run, context
        self.cpus_per_trial, self.gpus_per_trial = context.threads, gpus_per_trial
        self.max_retries = max_retries
        self._started_here = False
        if not ray.is_initialized():
            if address:
                _check_reachable(address)
            try:
                if address:
                    ray.init(address=address, log_to_driver=False)
                else:
                    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as error:
                where = f"the Ray cluster at {address}" if address else "a local Ray instance"
                raise EdgekdError(f"could not start or join {where} ({error}): check "
                                  "--ray-address, or use --executor local") from None
            self._started_here = True
        self._context_ref = ray.put(context)

    def run(self, jobs: list[TrialJob], on_done: Callable[[TrialJob, dict], None]) -> None:
        ray = self.ray
        task = ray.remote(_ray_trial).options(num_cpus=self.cpus_per_trial,
                                              num_gpus=self.gpus_per_trial,
                                              max_retries=self.max_retries)
        pending: dict[Any, TrialJob] = {}
        for job in jobs:
            folder = self.folder.trial(job.folder)
            files = {n: (folder / n).read_bytes() for n in TRIAL_FILES if (folder / n).exists()}
            files.pop(RESULT_JSON, None)  # the worker writes a fresh one
            ref = task.remote(job.payload, self._context_ref, files)
            pending[ref] = job
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(ready[0])
                out = self._get(ready[0])
                self.folder.write_trial_files(job.folder, out["files"])
                on_done(job, out["result"])
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(context, *args)`` as one Ray task with a trial's resources and retries
        (for work that is not a trial, such as a chunk of supernet training); its result."""
        task = self.ray.remote(function).options(num_cpus=self.cpus_per_trial,
                                                 num_gpus=self.gpus_per_trial,
                                                 max_retries=self.max_retries)
        return self._get(task.remote(self._context_ref, *args))

    def _get(self, ref: Any) -> Any:
        """A finished task's result; a worker's EdgekdError is raised here as itself."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as error:
            cause = getattr(error, "cause", None)
            if isinstance(cause, EdgekdError):
                raise cause from None
            raise

    def close(self) -> None:
        if self._started_here:
            self.ray.shutdown()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a ``host:port`` nobody listens on (ray.init would retry for minutes).
    ``auto`` and ``ray://`` client addresses are left to Ray."""
    import socket

    if address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as error:
        raise EdgekdError(f"no Ray cluster answers at --ray-address {address} ({error}): start "
                          "one with 'ray start --head' or drop --ray-address for a local one") from None


def make_executor(kind: str, run: RunDir, context: TrialContext, *, address: str | None = None,
                  num_cpus: int | None = None, gpus_per_trial: float = 0) -> LocalExecutor | RayExecutor:
    """``local`` or ``ray`` (see the classes); anything else is a one-line error."""
    if kind == "local":
        return LocalExecutor(run, context)
    if kind == "ray":
        return RayExecutor(run, context, address=address, num_cpus=num_cpus,
                           gpus_per_trial=gpus_per_trial)
    raise EdgekdError(f"unknown executor {kind!r}: use local or ray")
