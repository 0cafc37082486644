"""The device bundle: one self-contained folder to copy to a Jetson (or any target).

```
bundle/
  model.onnx        the exported student, byte-identical to the run's export (same sha256,
                    so the device's Measurement JSON maps back onto the run's report)
  teacher.onnx      the teacher, when given (device speed-up baseline)
  *.int8.onnx       explicit Q/DQ INT8 copies, when the profile's precision is int8
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

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from deploy import onnxmeta
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_file

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


def _commands(profile: Any, batch: int, has_teacher: bool, int8: bool) -> str:
    """The device commands, from the profile's entry in the deploy kit's backend table: its
    build step (if any) per model, then bench, check and profile on the file it runs."""
    from deploy.backends import get_backend

    runtime = profile.runtime
    backend = get_backend(runtime.backend)
    lines: list[str] = []
    models = ["model"] + (["teacher"] if has_teacher else [])
    suffix = backend.suffixes[0]
    if backend.build is not None:
        for name in models:
            source = f"{name}.int8.onnx" if int8 else f"{name}.onnx"
            lines.append(backend.build(source, f"{name}{suffix}" if int8 else None, runtime.precision,
                                       runtime.workspace_mb))
    run_models = [f"{name}{suffix}" for name in models]
    for name, model in zip(models, run_models):
        lines.append(f"python3 -m deploy bench {model} --batch {batch} --warmup 50 --iters 500 "
                     f"--out measurement-{name}.json")
    lines.append(f"python3 -m deploy check {run_models[0]} --data val.npz")
    lines.append(f"python3 -m deploy profile {run_models[0]} --batch {batch} --out profile-model.json")
    return "\n".join(lines)


def _readme(profile: Any, batch: int, model_sha: str, has_teacher: bool, int8: bool,
            run_dir: Path | None) -> str:
    from deploy.backends import get_backend

    needs = get_backend(profile.runtime.backend).needs
    run = str(run_dir) if run_dir else "runs/NAME"
    return f"""# edgekd device bundle — {profile.name}

{profile.description}

Everything here runs with Python 3, numpy and {needs}; no torch, no edgekd.
`model.onnx` has sha256 `{model_sha}`; the Measurement JSON carries it, which is how the
host matches device numbers to the run.

## On the device

```
cd bundle
{_commands(profile, batch, has_teacher, int8)}
```

`build` writes `model.engine` and `model.engine.json` (TensorRT version, GPU, precision); an
engine only runs with the TensorRT version that built it, so build on the device itself.
`check` prints the accuracy on `val.npz` and the top-1 agreement with the host's ONNX outputs
stored in it. Every command prints `error: ...` and exits 2 on bad input.
{"INT8 uses the `*.int8.onnx` files: explicit Q/DQ scales calibrated on the host from calib.npz (TensorRT 10 deprecates implicit calibration)." if int8 else "INT8 (optional): `python3 -m deploy build model.onnx --int8 --calib calib.npz` (needs `pip install onnx onnxruntime` on the device to quantize)."}

## Bring the numbers back

```
scp DEVICE:bundle/measurement-*.json .
edgekd report {run} --measurements measurement-model.json{" --measurements measurement-teacher.json" if has_teacher else ""}
```

No GPU or TensorRT on the host is needed for this; the report marks these figures as
measured on the target.
"""


def make_bundle(onnx_path: str | Path, out_dir: str | Path, *, profile: Any, dataset: Any,
                normalization: Any = None, teacher_onnx: str | Path | None = None,
                run_dir: str | Path | None = None, calib_samples: int = CALIB_SAMPLES,
                val_samples: int = VAL_SAMPLES) -> Path:
    """Write the device bundle for ``onnx_path`` into ``out_dir`` (see the module docstring)
    and return ``out_dir``. ``profile`` is a DeviceProfile or a profile name/path;
    ``normalization`` defaults to the data set's."""
    from deploy.check import prepare_inputs
    from edgekd.inputs.data import Normalization
    from edgekd.ship.export import onnx_logits, read_metadata  # layering: TODO issue 10 (export <-> bundle cycle)
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

    int8 = profile.runtime.precision == "int8"
    if int8:  # explicit Q/DQ made here, so the device needs only TensorRT
        from deploy.errors import DeployError
        from deploy.quantize import quantize_qdq

        for name in ("model", "teacher"):
            if (out / f"{name}.onnx").is_file():
                try:
                    quantize_qdq(out / f"{name}.onnx", calib, out / f"{name}.int8.onnx",
                                 normalization=norm_pair)
                except DeployError as error:
                    raise EdgekdError(str(error)) from None
    model_sha = sha256_file(out / "model.onnx")
    atomic_write_text(out / "README.md", _readme(profile, batch, model_sha,
                                                 (out / "teacher.onnx").exists(), int8,
                                                 Path(run_dir) if run_dir else None))
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"
                   and "__pycache__" not in p.parts)
    atomic_write_json(out / "manifest.json", {
        "format": "edgekd.bundle/1", "profile": profile.name, "batch": batch,
        "model_sha256": model_sha, "model_id": metadata.get(onnxmeta.ID),
        "normalization": {"mean": norm_pair[0], "std": norm_pair[1]},
        "files": {str(p.relative_to(out)): sha256_file(p) for p in files},
    })
    return out
