"""The ship end of ``edgekd compress``: teacher.json and the teacher's ONNX, every trained
student exported to ONNX (parity-checked, skipped when the same weights were exported
already), host latency through the deploy kit, and the winner's device bundle."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgekd.core.fileio import sha256_file
from edgekd.core.runfolder import CHECKPOINT_PT, EXPORT, MEASUREMENT, TEACHER, read_doc_or_none, write_doc
from edgekd.run.config import CompressConfig
from edgekd.run.rundir import RunDir
from edgekd.run.setup import Inputs

if TYPE_CHECKING:
    import torch.nn as nn

    from edgekd.search.space import StudentSpec

__all__ = ["bundle_stage", "export_stage", "int8_stage", "measure_stage", "on_cpu", "teacher_stage"]


def on_cpu(model: nn.Module) -> nn.Module:
    """The one place every stage after training gets a model from: moved to the CPU, in eval mode.
    Training may leave a model on the GPU (the trainer moves teachers to its device); export,
    costing (MACs), accuracy on the test split and the report run on the CPU, so none of them
    may assume where training put it."""
    return model.to("cpu").eval()


def teacher_stage(inputs: Inputs, run: RunDir) -> dict:
    """teacher.json (MACs, params, test accuracy, predicted target latency) and teacher.onnx."""
    from edgekd.search.cost import module_cost
    from edgekd.search.kernel_model import find_table
    from edgekd.search.latency import predict_latency
    from edgekd.distill.builtin_teacher import model_accuracy as accuracy

    teacher = on_cpu(inputs.teacher)
    info = read_doc_or_none(TEACHER, run.teacher_json)  # damaged: made again
    if info is None or info["fingerprint"] != inputs.teacher_fp:
        data = inputs.dataset
        cost = module_cost(teacher, data.input_shape)
        table = find_table(inputs.profile)  # edgekd calibrate's table: a *calibrated* figure
        latency = (table.predict(cost, inputs.profile.budget.batch) if table is not None
                   else predict_latency(cost, inputs.profile))
        info = {"fingerprint": inputs.teacher_fp, "macs": int(cost.macs), "params": int(cost.params),
                "test_acc": accuracy(teacher, data.x_test, data.y_test, data.normalization),
                "predicted_latency": {"ms": float(latency.ms), "label": latency.label,
                                      "batch": inputs.profile.budget.batch}}
        write_doc(TEACHER, run.teacher_json, info)
    _export(teacher, "teacher", inputs, run, source_sha=inputs.teacher_fp,
            metadata=_metadata(inputs, "teacher", accuracy=info["test_acc"]))
    return info


def _export(model: nn.Module, name: str, inputs: Inputs, run: RunDir, *, source_sha: str,
            metadata: dict[str, Any]) -> Path:
    """export/NAME.onnx with a parity check; skipped when export/NAME.json says the same
    weights were exported already (so measurements brought back still match its sha256)."""
    from edgekd.ship.export import export_onnx, parity_inputs

    onnx_path, marker = run.export_onnx(name), run.export_marker(name)
    done = read_doc_or_none(EXPORT, marker) if onnx_path.exists() else None  # damaged: again
    if done and done["source_sha256"] == source_sha and done["onnx_sha256"] == sha256_file(onnx_path):
        return onnx_path
    export_onnx(model, inputs.dataset.input_shape, onnx_path, batch=inputs.profile.budget.batch,
                metadata=metadata, parity_x=parity_inputs(inputs.dataset, inputs.parity_samples),
                parity_min=inputs.parity_samples)
    write_doc(EXPORT, marker, {"source_sha256": source_sha, "onnx_sha256": sha256_file(onnx_path)})
    return onnx_path


def _metadata(inputs: Inputs, name: str, *, spec: StudentSpec | None = None, accuracy: float | None = None,
              method: str | None = None) -> dict[str, Any]:
    from edgekd.ship.export import student_metadata

    data = inputs.dataset
    return student_metadata(spec=spec, classes=list(data.classes), input_shape=data.input_shape,
                            normalization=data.normalization, accuracy=accuracy,
                            profile=inputs.profile.name, model_id=name, method=method)


def export_stage(inputs: Inputs, run: RunDir, trial_ids: list[str],
                 note: Callable[[str], None] = lambda text: None) -> list[Path]:
    from edgekd.core.checkpoint import load_student

    paths = []
    for number, trial_id in enumerate(trial_ids, 1):
        checkpoint = run.trial_file(trial_id, CHECKPOINT_PT)
        model, info = load_student(checkpoint)
        model = on_cpu(model)
        metadata = _metadata(inputs, trial_id, spec=info.spec, method=info.method,
                             accuracy=info.metrics.get("test_acc"))
        paths.append(_export(model, trial_id, inputs, run, source_sha=sha256_file(checkpoint),
                             metadata=metadata))
        note(f"exported {trial_id} ({number}/{len(trial_ids)})")
    return paths


def int8_stage(inputs: Inputs, run: RunDir, trial_ids: list[str],
               note: Callable[[str], None] = lambda text: None) -> None:
    """``export/ID.int8.onnx`` + ``ID.int8.json`` for each finalist (kept when made from the same
    FP32 export): the report's INT8 row with its accuracy delta against FP32, and the figure an int8
    bundle's ``--int8-tolerance`` is compared with."""
    from edgekd.ship.int8 import export_int8, recorded_int8

    for trial_id in trial_ids:
        onnx_path = run.export_onnx(trial_id)
        if recorded_int8(onnx_path) is None:
            record = export_int8(onnx_path, inputs.dataset, inputs.dataset.normalization)
            note(f"int8 {trial_id}: {record['line']}")


def measure_stage(config: CompressConfig, inputs: Inputs, run: RunDir, names: list[str],
                  note: Callable[[str], None] = lambda text: None) -> None:
    """measurements/host-NAME.json for the teacher and every exported student, timed together
    (skipped when each one's file still matches its ONNX and they come from one session).

    All models are timed in one ``python -m deploy bench`` call under the latency benchmark's
    protocol (:func:`deploy.bench.bench_interleaved`): ``config.measure_rounds`` rounds, each
    model in turn per round, one intra-op thread, no spinning, each model for at least
    ``config.measure_seconds`` and ``config.measure_iters`` runs. A load that comes and goes on
    a shared machine then hits teacher and students alike, and the per-round medians
    (``round_ms``) give the speed-up's spread over the rounds (see edgekd.report.tables)."""
    import shutil
    import tempfile

    from edgekd.ship.measure import run_deploy

    onnx = {name: run.export_onnx(name) for name in names}
    done = [read_doc_or_none(MEASUREMENT, run.host_measurement(name)) for name in names]
    sessions = {(d.get("protocol") or {}).get("session") for d in done if d is not None}
    if all(d is not None and d["sha256"] == sha256_file(onnx[n]) for n, d in zip(names, done)) \
            and len(sessions) == 1 and None not in sessions:
        return
    with tempfile.TemporaryDirectory(prefix="edgekd-measure-") as tmp:
        run_deploy(["bench", *(str(onnx[n].resolve()) for n in names), "--backend", "ort",
                    "--batch", str(inputs.profile.budget.batch), "--warmup", str(config.measure_warmup),
                    "--iters", str(config.measure_iters), "--min-seconds", str(config.measure_seconds),
                    "--rounds", str(config.measure_rounds), "--threads", "1", "--no-spin",
                    "--out", tmp], timeout=600 + 10 * config.measure_seconds * len(names))
        for name in names:  # deploy names each file MODEL.ort.fp32.bBATCH.json
            found = list(Path(tmp).glob(f"{onnx[name].stem}.ort.*.json"))
            if len(found) != 1:
                raise RuntimeError(f"deploy bench wrote {len(found)} files for {onnx[name].name}")
            run.measurements.mkdir(parents=True, exist_ok=True)
            shutil.move(str(found[0]), run.host_measurement(name))
    from edgekd.core import fmt
    from edgekd.core.fileio import read_json

    for name in names:
        found = read_json(run.host_measurement(name))
        note(f"measured {name}: {fmt.ms(found['latency_ms']['median'])} ms")


def bundle_stage(inputs: Inputs, run: RunDir, winner_trial: str, int8_tolerance: float) -> Path:
    from edgekd.ship.bundle import BundleConfig, make_bundle

    return make_bundle(run.export_onnx(winner_trial), run.bundle, profile=inputs.profile,
                       dataset=inputs.dataset, teacher_onnx=run.export_onnx("teacher"),
                       run_dir=run.root, config=BundleConfig(int8_tolerance=int8_tolerance))

