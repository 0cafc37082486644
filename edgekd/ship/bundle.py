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

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deploy import onnxmeta
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_file
from edgekd.ship.bundle_readme import ReadmeInputs, build_commands, render_readme, run_commands

if TYPE_CHECKING:  # pragma: no cover
    from edgekd.inputs.data import ImageDataset, Normalization
    from edgekd.inputs.profiles import DeviceProfile

CALIB_SAMPLES = 512
VAL_SAMPLES = 1000


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def copy_deploy_kit(destination: Path) -> Path:
    """Copy the deploy package's .py files (and nothing else) to ``destination/deploy``."""
    import deploy

    source = Path(deploy.__file__).resolve().parent
    target = destination / "deploy"
    if target.resolve() == source:
        raise EdgekdError(f"bundle folder '{destination}' is where the deploy kit lives: pick another --out")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for file in sorted(source.glob("*.py")):
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


def _commands(profile: DeviceProfile, batch: int, has_teacher: bool, int8: bool) -> str:
    """The device commands (TensorRT <= 10.x build route), from the deploy kit's backend table:
    the build step per model (if any), then bench, check and profile (see bundle_readme)."""
    info = ReadmeInputs(batch=batch, model_sha="", has_teacher=has_teacher, input_shape=(),
                        dynamic=False, int8=int8)
    return "\n".join(build_commands(profile, info) + run_commands(profile, info))


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
                val_samples: int = VAL_SAMPLES) -> Path:
    """Write the device bundle for ``onnx_path`` into ``out_dir`` (see the module docstring)
    and return ``out_dir``. ``profile`` is a DeviceProfile or a profile name/path;
    ``normalization`` defaults to the data set's."""
    from edgekd.inputs.data import Normalization
    from edgekd.ship.export import read_metadata  # layering: TODO issue 10 (export <-> bundle cycle)
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
    out.mkdir(parents=True, exist_ok=True)
    batch = bundle_batch(onnxmeta.batch_of(metadata), profile.budget.batch)

    model_bytes = onnx_path.read_bytes()
    atomic_write_bytes(out / "model.onnx", model_bytes)
    if teacher_onnx is not None and Path(teacher_onnx).is_file():
        atomic_write_bytes(out / "teacher.onnx", Path(teacher_onnx).read_bytes())
    copy_deploy_kit(out)
    atomic_write_text(out / "profile.toml", profile_toml(profile, "edgekd export --bundle"))

    calib, x_float, y_val, logits, norm_pair = _write_data(out, onnx_path, dataset, norm,
                                                           calib_samples, val_samples)
    int8 = profile.runtime.precision == "int8"
    checks = _precision_copies(out, profile, calib, norm_pair, x_float, y_val, logits)
    model_sha = sha256_file(out / "model.onnx")
    info = ReadmeInputs(batch=batch, model_sha=model_sha, has_teacher=(out / "teacher.onnx").exists(),
                        input_shape=tuple(dataset.input_shape),
                        dynamic=not onnxmeta.batch_of(metadata).get("static"),
                        run_dir=Path(run_dir) if run_dir else None, int8=int8,
                        checks=tuple(_check_line(c) for c in checks))
    atomic_write_text(out / "README.md", render_readme(profile, info))
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"
                   and "__pycache__" not in p.parts)
    atomic_write_json(out / "manifest.json", {
        "format": "edgekd.bundle/1", "profile": profile.name, "batch": batch,
        "model_sha256": model_sha, "model_id": metadata.get(onnxmeta.ID), "host_checks": checks,
        "normalization": {"mean": norm_pair[0], "std": norm_pair[1]},
        "files": {str(p.relative_to(out)): sha256_file(p) for p in files},
    })
    return out


def _write_data(out: Path, onnx_path: Path, dataset: "ImageDataset", norm: "Normalization",
                calib_samples: int, val_samples: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[list[float], list[float]]]:
    """``calib.npz`` (uint8 training images) and ``val.npz`` (test images, labels and the
    model's FP32 ONNX logits) with the normalisation; returns (calibration images, normalised
    validation inputs, labels, logits, (mean, std))."""
    from deploy.check import prepare_inputs
    from edgekd.ship.export import onnx_logits  # layering: TODO issue 10 (export <-> bundle cycle)

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
                      y_val: np.ndarray, logits: np.ndarray) -> list[dict]:
    """The INT8 Q/DQ copy (int8 profiles) or the FP16 copies (TensorRT fp16 profiles), each
    checked against the FP32 ONNX on the validation images; returns the checks."""
    from edgekd.ship.export import onnx_logits  # layering: TODO issue 10 (export <-> bundle cycle)

    checks: list[dict] = []
    if profile.runtime.precision == "int8":
        from edgekd.ship.fp16 import compare_precision

        _add_int8(out, calib, norm_pair)  # measured and reported next to FP32, never refused
        checks.append(compare_precision("int8", logits, onnx_logits(out / "model.int8.onnx", x_float),
                                        y_val).to_dict())
    if profile.runtime.backend == "trt" and profile.runtime.precision == "fp16":
        from edgekd.ship.fp16 import make_checked_fp16

        checks.append(make_checked_fp16(out / "model.onnx", out / "model.fp16.onnx",
                                        x_float, y_val, logits).to_dict())
        if (out / "teacher.onnx").is_file():
            make_checked_fp16(out / "teacher.onnx", out / "teacher.fp16.onnx", x_float,
                              y_val, onnx_logits(out / "teacher.onnx", x_float),
                              max_drop=1.0)  # the teacher is only a speed baseline
    return checks
