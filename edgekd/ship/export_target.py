"""What ``edgekd export CHECKPOINT_OR_RUN`` does: find the student, export it with its
metadata and a parity check, and optionally write the device bundle.

* a checkpoint (``edgekd.core.checkpoint``'s self-describing file): rebuilt from its spec,
  exported to ``OUT/<spec id>.onnx``;
* a run folder: the best trial of ``RUN/report/summary.json`` (``"best": {"id",
  "checkpoint"}``, or else ``"winner"``). When the run already exported it
  (``RUN/export/<id>.onnx``) and no export option asks for something else, that file is
  copied byte for byte, so its sha256 still matches the run's measurements; the bundle
  also takes ``RUN/export/teacher.onnx`` when present (the device speed-up baseline).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd_deploy import onnxmeta as meta
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import atomic_write_bytes, read_json
from edgekd.core.runfolder import BUNDLE_DIR, MANIFEST_JSON, SUMMARY, RunDir, safe_id

if TYPE_CHECKING:  # pragma: no cover
    from edgekd.inputs.data import ImageDataset, Normalization
    from edgekd.inputs.profiles import DeviceProfile


@dataclass
class ExportResult:
    onnx: Path
    model_id: str
    source: str                        # "checkpoint" or "run"
    parity: dict[str, Any] | None      # ParityReport.to_dict() of this export
    bundle: Path | None = None
    int8: dict[str, Any] | None = None  # edgekd.ship.int8 sidecar, with --int8
    notes: list[str] = field(default_factory=list)


def _dataset(data: str | None, input_shape: tuple[int, ...], fingerprint: str | None = None) -> ImageDataset:
    from edgekd.inputs.loaders import load_dataset

    dataset = load_dataset(data)
    if tuple(dataset.input_shape) != tuple(input_shape):
        raise EdgekdError(f"data '{data or 'mnist-subset'}' has images {tuple(dataset.input_shape)}, "
                          f"the student takes {tuple(input_shape)}: pass the student's data with --data")
    if fingerprint and dataset.fingerprint() != fingerprint:
        raise EdgekdError(f"data '{data or 'mnist-subset'}' is not the data the run was trained on "
                          "(fingerprint differs): pass the run's data with --data")
    return dataset


def _run_best(run: Path) -> tuple[str, Path]:
    """The best trial's id and checkpoint named by summary.json; both are checked to stay
    inside the run (a summary edited to ``../../X`` must not write or read outside it)."""
    rundir = RunDir(run)
    summary_path = rundir.summary
    if not summary_path.is_file():
        raise EdgekdError(f"{run} has no report/summary.json: finish the run first "
                          f"(edgekd compress --out {run} --resume, or edgekd report {run})")
    summary = rundir.read(SUMMARY, summary_path)
    best = summary.get("best")
    if isinstance(best, dict) and best.get("id"):
        trial = safe_id(best["id"], summary_path)
        relative = best.get("checkpoint") or f"trials/{trial}/checkpoint.pt"
    elif summary.get("winner"):
        trial = safe_id(summary["winner"], summary_path)
        relative = f"trials/{trial}/checkpoint.pt"
    else:
        raise EdgekdError(f"{summary_path} names no best trial: rebuild it with 'edgekd report {run}'")
    # paths in the summary are relative to the run folder: joined once (rundir.inside), never
    # to a path that already starts with the run folder (runs/default/runs/default/...)
    return trial, rundir.inside(relative, summary_path)


def require_onnxslim() -> None:
    """``--simplify`` without onnxslim is refused up front instead of doing nothing."""
    import importlib.util

    if importlib.util.find_spec("onnxslim") is None:
        raise EdgekdError("--simplify needs onnxslim, which is not installed: "
                          "pip install 'edgekd[simplify]', or drop --simplify")


def _run_manifest(run: Path) -> dict[str, Any]:
    rundir = RunDir(run)
    if not rundir.run_json.is_file():
        return {}
    return dict(rundir.manifest())


def _recorded_data(manifest: dict[str, Any]) -> str | None:
    """The data a run was made with, as given to compress (``options.data``: a path relative to
    the folder it ran in, or a name), else the name in its identity; None: the shipped subset."""
    options = manifest.get("options") if isinstance(manifest.get("options"), dict) else {}
    given = options.get("data")
    if isinstance(given, str) and given:
        return given
    name = (manifest.get("identity", {}).get("data") or {}).get("name")
    return None if name in (None, "mnist-subset") else str(name)


def _int8(onnx_path: Path, dataset: ImageDataset, norm: Normalization, run: Path | None, trial: str) -> dict[str, Any]:
    """``--int8``: OUT/ID.int8.onnx + ID.int8.json; for a run, also copied into RUN/export/ (when
    RUN/export/ID.onnx is this very export) so ``edgekd report RUN`` shows the INT8 row."""
    from edgekd.core.fileio import sha256_file
    from edgekd.ship.int8 import export_int8, sidecar_path

    record = export_int8(onnx_path, dataset, norm)
    existing = RunDir(run).export_onnx(trial) if run else None
    if existing is None or not existing.is_file() or sha256_file(existing) != record["source_sha256"]:
        return record
    if not writable(existing.parent):  # a read-only run is left as it is
        return {**record, "not_recorded": f"{existing.parent} is read-only"}
    made = onnx_path.with_name(record["onnx"])
    with RunDir(run).locked():  # the run's lock and tree check, as every write into a run
        atomic_write_bytes(existing.with_name(made.name), made.read_bytes())
        atomic_write_bytes(sidecar_path(existing.with_name(made.name)), sidecar_path(made).read_bytes())
    return {**record, "recorded_in": str(existing.parent)}


def writable(folder: Path) -> bool:
    """Whether this process may create files in ``folder``."""
    return os.access(folder, os.W_OK | os.X_OK)


def export_target(target: str | Path, out: str | Path, *, bundle: bool = False,
                  profile: str | None = None, dynamic_batch: tuple[int, int, int] | None = None,
                  simplify: bool = False, data: str | None = None, batch: int | None = None,
                  int8: bool = False, int8_tolerance: float | None = None) -> ExportResult:
    """Export a checkpoint or a run's best student to ``out`` (see the module docstring)."""
    from edgekd.core.checkpoint import load_student
    from edgekd.inputs.data import Normalization
    from edgekd.ship.export import export_onnx, parity_inputs, read_metadata, student_metadata
    from edgekd.search.space import StudentSpec

    target, out = Path(target), Path(out)
    if simplify:
        require_onnxslim()
    notes: list[str] = []
    run, trial, checkpoint, manifest = _resolve_target(target)
    identity = manifest.get("identity", {})
    device = _target_device(profile, identity, run)
    if bundle and device is None:
        raise EdgekdError("--bundle needs the target device: add --profile NAME "
                          "(see 'edgekd profiles list')")
    export_batch = batch or (device.budget.batch if device else 1)

    model, info = load_student(checkpoint)
    model_id = trial or (StudentSpec.from_dict(info.spec).id if info.spec else checkpoint.stem)
    data_fp = (identity.get("data") or {}).get("fingerprint") if data is None else None
    dataset = _dataset(data if data is not None else _recorded_data(manifest),
                       tuple(info.input_shape), data_fp)
    norm = Normalization.from_dict(info.normalization)
    onnx_path = out / f"{model_id}.onnx"
    existing = RunDir(run).export_onnx(trial) if run else None
    reuse = (existing is not None and existing.is_file() and dynamic_batch is None and not simplify
             and meta.batch_of(read_metadata(existing)).get("static") == export_batch)
    if reuse:
        atomic_write_bytes(onnx_path, existing.read_bytes())
        notes.append(f"copied the run's parity-checked export {existing} unchanged (same sha256 "
                     "as the run's measurements)")
    else:
        metrics = info.metrics or {}
        export_onnx(model, tuple(info.input_shape), onnx_path, batch=export_batch,
                    dynamic_batch=dynamic_batch, simplify=simplify,
                    parity_x=parity_inputs(dataset, normalization=norm),
                    metadata=student_metadata(
                        spec=info.spec, classes=info.classes, input_shape=info.input_shape,
                        normalization=norm, accuracy=metrics.get("test_acc"),
                        profile=device.name if device else None, model_id=model_id,
                        method=info.method))
    metadata = read_metadata(onnx_path)
    if simplify and not metadata.get(meta.SIMPLIFIED, "").startswith("yes"):
        notes.append(f"--simplify: {metadata.get(meta.SIMPLIFIED)}; the plain export was kept")
    parity = meta.json_value(metadata, meta.PARITY)
    parity = parity if isinstance(parity, dict) else None
    int8_record = _int8(onnx_path, dataset, norm, run, trial) if int8 else None
    bundle_dir = (_bundle(onnx_path, out / BUNDLE_DIR, device, dataset, norm, run, notes, int8_tolerance)
                  if bundle else None)
    return ExportResult(onnx=onnx_path, model_id=model_id, source="run" if run else "checkpoint",
                        parity=parity, bundle=bundle_dir, int8=int8_record, notes=notes)


def _resolve_target(target: Path) -> tuple[Path | None, str, Path, dict[str, Any]]:
    """(run folder or None, trial id or "", checkpoint, the run's run.json or {}) for a run
    folder (its best student) or a checkpoint file."""
    if target.is_dir():
        trial, checkpoint = _run_best(target)
        return target, trial, checkpoint, _run_manifest(target)
    if target.is_file():
        return None, "", target, {}
    raise EdgekdError(f"'{target}' not found: pass a checkpoint.pt or a run folder (runs/NAME)")


def _target_device(profile: str | None, identity: dict[str, Any], run: Path | None
                   ) -> "DeviceProfile | None":
    """The device to export for: ``--profile``, else the run's profile and budget, else None."""
    from edgekd.inputs.profiles import DeviceProfile, load_profile

    if profile:
        return load_profile(profile)
    if identity.get("profile"):
        return DeviceProfile.from_dict({**identity["profile"], "budget": identity["budget"]},
                                       source=f"{run}/run.json")
    return None


def _bundle(onnx_path: Path, folder: Path, device: "DeviceProfile", dataset: "ImageDataset",
            norm: "Normalization", run: Path | None, notes: list[str],
            int8_tolerance: float | None = None) -> Path:
    """The device bundle of ``onnx_path`` (with the run's teacher export as the speed baseline
    when there is one; a note when a run has none)."""
    from edgekd.ship.bundle import BundleConfig, make_bundle

    teacher = RunDir(run).export_onnx("teacher") if run else None
    if run is not None and not (teacher and teacher.is_file()):
        notes.append("the run has no export/teacher.onnx, so the bundle has no teacher baseline")

    config = BundleConfig() if int8_tolerance is None else BundleConfig(int8_tolerance=int8_tolerance)
    made = make_bundle(onnx_path, folder, profile=device, dataset=dataset, normalization=norm,
                       teacher_onnx=teacher, run_dir=run, config=config)
    fallback = read_json(made / MANIFEST_JSON).get("fallback")
    if fallback:
        notes.append(fallback)
    return made
