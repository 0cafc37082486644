"""The device bundle: one self-contained folder to copy to a Jetson (or any target).

```
bundle/
  model.onnx        the exported student, byte-identical to the run's export (same sha256,
                    so the device's Measurement JSON maps back onto the run's report)
  teacher.onnx      the teacher, when given (device speed-up baseline)
  *.int8.onnx       explicit Q/DQ INT8 copies, when the profile's precision is int8
  *.fp16.onnx       FP16 copies (float32 I/O), for fp16 TensorRT profiles: TensorRT 11 builds these;
                    each is checked against the FP32 ONNX with ONNX Runtime first (ship/fp16.py)
  deploy/           a copy of the torch-free deploy kit (python -m deploy ...)
  profile.toml      the target profile (with the run's budget)
  calib.npz         x: uint8 train images for INT8 calibration; mean, std
  val.npz           x: uint8 test images, y: labels, logits: the host's ONNX Runtime outputs
                    (so 'deploy check' reports agreement without ONNX Runtime on the device);
                    mean, std, classes
  README.md         the exact commands to run there and how to bring the JSON back
  manifest.json     every file with its sha256
```
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekd_deploy import onnxmeta
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_file
from edgekd.core.runfolder import MANIFEST_JSON
from edgekd.ship.export import onnx_logits, read_metadata
from edgekd.ship.parser_check import require_parsable
from edgekd.ship.bundle_readme import ReadmeInputs, render_readme

if TYPE_CHECKING:  # pragma: no cover
    from edgekd.inputs.data import ImageDataset, Normalization
    from edgekd.inputs.profiles import DeviceProfile

CALIB_SAMPLES = 512
VAL_SAMPLES = 1000


@dataclass(frozen=True)
class BundleConfig:
    """How a bundle picks its default engine. ``int8_tolerance``: the most top-1 accuracy, in
    points, the INT8 Q/DQ model may lose against FP32 on the host's validation images before an
    int8 bundle builds FP16 by default instead (the Q/DQ files stay in the bundle)."""

    int8_tolerance: float = 1.0


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def copy_deploy_kit(destination: Path) -> Path:
    """Copy the deploy kit's .py files and its data (the parser's operator tables, .json) to
    ``destination/deploy``, and nothing else: installed as ``edgekd_deploy``, it is ``deploy``
    in a bundle (its imports are relative, so it runs as ``python -m deploy`` there)."""
    import edgekd_deploy

    source = Path(edgekd_deploy.__file__).resolve().parent
    target = destination / "deploy"
    if target.resolve() == source:
        raise EdgekdError(f"bundle folder '{destination}' is where the deploy kit lives: pick another --out")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for file in sorted([*source.glob("*.py"), *source.glob("*.json")]):
        shutil.copy2(file, target / file.name)
    return target


def bundle_batch(exported: dict, budget_batch: int) -> int:
    """The batch of the device commands: one the exported file accepts (a static export fixes
    it), and the profile's budget batch whenever a dynamic export's MIN..MAX range holds it, so
    the device is measured where the budget is set (not at the optimisation profile's OPT)."""
    if exported.get("static"):
        return int(exported["static"])
    if "min" in exported and "max" in exported:
        if int(exported["min"]) <= budget_batch <= int(exported["max"]):
            return budget_batch
        return int(exported.get("opt") or exported["min"])
    return budget_batch


def _batch_range(exported: dict) -> tuple[int, int, int] | None:
    """A dynamic export's (min, opt, max) batch, what ``deploy build`` builds its profile from."""
    if exported.get("static") or "min" not in exported:
        return None
    return int(exported["min"]), int(exported.get("opt") or exported["min"]), int(exported["max"])


def _add_int8(out: Path, calib: np.ndarray, norm_pair: tuple[list[float], list[float]]) -> None:
    """Explicit Q/DQ copies made here, so the device needs only TensorRT."""
    from edgekd.ship.int8 import quantize_int8

    for name in ("model", "teacher"):
        if (out / f"{name}.onnx").is_file():
            quantize_int8(out / f"{name}.onnx", out / f"{name}.int8.onnx", calib, norm_pair)


def _check_line(check: dict) -> str:
    return (f"{check['precision']} ONNX vs fp32 ONNX on {check['samples']} validation images: "
            f"accuracy {100 * check['accuracy']:.2f}% vs {100 * check['fp32_accuracy']:.2f}%, "
            f"top-1 agreement {100 * check['top1_agreement']:.2f}%")


def make_bundle(onnx_path: str | Path, out_dir: str | Path, *, profile: DeviceProfile,
                dataset: ImageDataset, normalization: Normalization | None = None, teacher_onnx: str | Path | None = None,
                run_dir: str | Path | None = None, calib_samples: int = CALIB_SAMPLES,
                val_samples: int = VAL_SAMPLES, config: BundleConfig = BundleConfig()) -> Path:
    """Write the device bundle for ``onnx_path`` into ``out_dir`` (see the module docstring)
    and return ``out_dir``. ``profile`` is a DeviceProfile or a profile name/path;
    ``normalization`` defaults to the data set's."""
    from edgekd.inputs.data import Normalization
    from edgekd.inputs.profiles import load_profile, profile_toml

    onnx_path = Path(onnx_path)
    out = Path(out_dir)
    if not onnx_path.is_file():
        raise EdgekdError(f"model '{onnx_path}' not found: export it first (edgekd export)")
    if isinstance(profile, (str, Path)):
        profile = load_profile(str(profile))
    norm = normalization if normalization is not None else dataset.normalization
    if isinstance(norm, dict):
        norm = Normalization.from_dict(norm)
    metadata = read_metadata(onnx_path)
    teacher = Path(teacher_onnx) if teacher_onnx is not None and Path(teacher_onnx).is_file() else None
    # the device's ONNX parser must take every model: checked before anything is written
    require_parsable([onnx_path, *([teacher] if teacher else [])], profile)
    out.mkdir(parents=True, exist_ok=True)
    batch = bundle_batch(onnxmeta.batch_of(metadata), profile.budget.batch)

    model_bytes = onnx_path.read_bytes()
    atomic_write_bytes(out / "model.onnx", model_bytes)
    if teacher is not None:
        atomic_write_bytes(out / "teacher.onnx", teacher.read_bytes())
    copy_deploy_kit(out)
    atomic_write_text(out / "profile.toml", profile_toml(profile, "edgekd export --bundle"))

    calib, x_float, y_val, logits, norm_pair = _write_data(out, onnx_path, dataset, norm,
                                                           calib_samples, val_samples)
    checks, fallback = _precision_copies(out, profile, calib, norm_pair, x_float, y_val, logits,
                                         config.int8_tolerance)
    if fallback:  # the README and the commands build FP16; the Q/DQ files stay for comparison
        profile = dataclasses.replace(profile, runtime=dataclasses.replace(profile.runtime, precision="fp16"))
    int8 = profile.runtime.precision == "int8"
    parsed = require_parsable(sorted(out.glob("*.onnx")), profile)
    model_sha = sha256_file(out / "model.onnx")
    info = ReadmeInputs(batch=batch, model_sha=model_sha, has_teacher=(out / "teacher.onnx").exists(),
                        input_shape=tuple(dataset.input_shape),
                        dynamic=not onnxmeta.batch_of(metadata).get("static"),
                        batch_range=_batch_range(onnxmeta.batch_of(metadata)),
                        run_dir=Path(run_dir) if run_dir else None, int8=int8,
                        checks=tuple(_check_line(c) for c in checks), fallback=fallback)
    atomic_write_text(out / "README.md", render_readme(profile, info))
    _write_manifest(out, {
        "format": "edgekd.bundle/1", "profile": profile.name, "batch": batch,
        "model_sha256": model_sha, "model_id": metadata.get(onnxmeta.ID), "host_checks": checks,
        "precision": profile.runtime.precision, "fallback": fallback or None,
        # checked on the host against onnx-tensorrt's operator tables (deploy/trt_onnx_ops.json),
        # not built: {model: the TensorRT versions whose ONNX parser takes it}
        "tensorrt_parser_check": parsed,
        "onnx_opset": onnxmeta.read_onnx_header(out / "model.onnx").opsets.get(""),
        "normalization": {"mean": norm_pair[0], "std": norm_pair[1]},
    })
    return out


def _write_manifest(out: Path, document: dict) -> None:
    """``manifest.json``: ``document`` plus every other file of the bundle with its sha256."""
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != MANIFEST_JSON
                   and "__pycache__" not in p.parts)
    atomic_write_json(out / MANIFEST_JSON, {
        **document, "files": {str(p.relative_to(out)): sha256_file(p) for p in files}})


def _write_data(out: Path, onnx_path: Path, dataset: "ImageDataset", norm: "Normalization",
                calib_samples: int, val_samples: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[list[float], list[float]]]:
    """``calib.npz`` (uint8 training images) and ``val.npz`` (test images, labels and the
    model's FP32 ONNX logits) with the normalisation; returns (calibration images, normalised
    validation inputs, labels, logits, (mean, std))."""
    from edgekd_deploy.check import prepare_inputs

    stats = {"mean": np.asarray(norm.mean, np.float32), "std": np.asarray(norm.std, np.float32)}
    calib = dataset.x_train[:calib_samples]
    atomic_write_bytes(out / "calib.npz", _npz_bytes(x=calib, **stats))
    x_val, y_val = dataset.x_test[:val_samples], dataset.y_test[:val_samples]
    norm_pair = ([float(v) for v in norm.mean], [float(v) for v in norm.std])
    x_float = prepare_inputs(x_val, tuple(dataset.input_shape), norm_pair, "the test split")
    logits = onnx_logits(onnx_path, x_float).astype(np.float32)
    atomic_write_bytes(out / "val.npz", _npz_bytes(
        x=x_val, y=y_val.astype(np.int64), logits=logits,
        classes=np.asarray([str(c) for c in dataset.classes]), **stats))
    return calib, x_float, y_val, logits, norm_pair


def _precision_copies(out: Path, profile: "DeviceProfile", calib: np.ndarray,
                      norm_pair: tuple[list[float], list[float]], x_float: np.ndarray,
                      y_val: np.ndarray, logits: np.ndarray, int8_tolerance: float) -> tuple[list[dict], str]:
    """The INT8 Q/DQ copy (int8 profiles) or the FP16 copies (TensorRT fp16 profiles), each
    checked against the FP32 ONNX on the validation images; returns the checks and, when the
    INT8 model loses more than ``int8_tolerance`` points, the one-line reason the bundle builds
    FP16 instead (its FP16 copies are then made too)."""
    checks: list[dict] = []
    fallback = ""
    precision = profile.runtime.precision
    if precision == "int8":
        from edgekd.ship.fp16 import compare_precision

        _add_int8(out, calib, norm_pair)
        check = compare_precision("int8", logits, onnx_logits(out / "model.int8.onnx", x_float), y_val)
        checks.append(check.to_dict())
        if 100 * check.drop > int8_tolerance and profile.runtime.backend == "trt":
            fallback = (f"FP16 instead of INT8: the INT8 model loses {100 * check.drop:.2f} points of "
                        f"top-1 on the host ({100 * check.accuracy:.2f}% vs {100 * check.fp32_accuracy:.2f}% "
                        f"FP32 on {check.samples} images), more than --int8-tolerance {int8_tolerance:g}; "
                        "model.int8.onnx stays in the bundle to compare")
            precision = "fp16"
    if profile.runtime.backend == "trt" and precision == "fp16":
        from edgekd.ship.fp16 import make_checked_fp16

        checks.append(make_checked_fp16(out / "model.onnx", out / "model.fp16.onnx",
                                        x_float, y_val, logits).to_dict())
        if (out / "teacher.onnx").is_file():
            make_checked_fp16(out / "teacher.onnx", out / "teacher.fp16.onnx", x_float,
                              y_val, onnx_logits(out / "teacher.onnx", x_float),
                              max_drop=1.0)  # the teacher is only a speed baseline
    return checks, fallback
