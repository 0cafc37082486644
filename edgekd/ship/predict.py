"""``edgekd predict MODEL.onnx IMAGES...|DIR``: the top-k classes of image files with an
exported model, as Ultralytics' ``predict`` does, without torch.

The model runs through the deploy kit's ONNX Runtime runner (:mod:`deploy.runners`, the same
code a device runs), images are read with Pillow, converted to the model's channels (grey
for 1, RGB for 3), resized to its input size and normalised with the statistics the export
stored in the model (``edgekd.normalization``, :func:`deploy.check.prepare_inputs`). Class
names come from the model's ``edgekd.classes`` metadata (indices when it has none).
Probabilities are the softmax of the logits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import loads_json

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


@dataclass
class Prediction:
    """One image's top-k: ``(class name, probability)``, most likely first."""

    image: str
    top: list[tuple[str, float]]

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["top"] = [{"class": name, "probability": round(p, 6)} for name, p in self.top]
        return record


def image_paths(inputs: list[str | Path]) -> list[Path]:
    """Image files from files and folders (a folder: its images, recursively, sorted)."""
    if not inputs:
        raise EdgekdError("no images given: pass image files or a folder of images")
    found: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                            and p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise EdgekdError(f"'{item}' not found: pass image files or a folder of images")
    if not found:
        raise EdgekdError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in "
                          f"{', '.join(map(str, inputs))}: pass a folder that holds images")
    return found


def load_images(paths: list[Path], sample_shape: tuple[int, ...]) -> np.ndarray:
    """uint8 ``(N, C, H, W)`` images, converted and resized to ``sample_shape`` (C, H, W)."""
    from PIL import Image, UnidentifiedImageError

    channels, height, width = sample_shape
    if channels not in (1, 3):
        raise EdgekdError(f"the model takes {channels}-channel inputs: predict reads grey (1) "
                          "or RGB (3) images only")
    out = np.empty((len(paths), channels, height, width), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                image = image.convert("L" if channels == 1 else "RGB")
                image = image.resize((width, height), Image.Resampling.BILINEAR)
                array = np.asarray(image, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
            raise EdgekdError(f"image '{path}' cannot be read ({error}): pass image files "
                              "Pillow can open") from None
        out[i] = array[None] if channels == 1 else array.transpose(2, 0, 1)
    return out


def class_names(metadata: dict[str, str], count: int) -> list[str]:
    raw = metadata.get("edgekd.classes")
    try:
        names = loads_json(raw) if raw else None
    except ValueError:
        names = None
    if isinstance(names, list) and len(names) == count:
        return [str(name) for name in names]
    return [str(i) for i in range(count)]


def run_model(model: Path) -> Path:
    """``model`` itself, or for a run folder (runs/NAME) the ONNX export of its winner."""
    if not model.is_dir():
        return model
    from edgekd.core.runfolder import OUTCOME, RunDir, safe_id

    run = RunDir(model)
    if not run.outcome_path().is_file():
        raise EdgekdError(f"'{model}' is neither an .onnx file nor a finished run folder (no "
                          f"outcome.json): pass a model, or finish the run with 'edgekd compress "
                          f"--out {model} --resume'")
    winner = safe_id(run.read(OUTCOME, run.outcome_path()).get("winner"), run.outcome_path())
    onnx = run.export_onnx(winner)
    if not onnx.is_file():
        raise EdgekdError(f"run '{model}' has no export of its winner ({onnx}): finish the run "
                          f"with 'edgekd compress --out {model} --resume'")
    return onnx


def predict(model: str | Path, inputs: list[str | Path], *, top_k: int = 5,
            batch_size: int = 64, normalize: str | None = None) -> list[Prediction]:
    """The ``top_k`` classes of every image in ``inputs`` (see the module docstring).
    ``normalize`` (imagenet | none | MEAN,STD, :func:`deploy.onnxmeta.parse_normalize`) replaces
    the model's ``edgekd.normalization``, e.g. for an ONNX model that edgekd did not export;
    None or ``dataset`` keeps the model's."""
    from edgekd_deploy.check import normalization_of, prepare_inputs
    from edgekd_deploy.onnxmeta import parse_normalize
    from edgekd_deploy.errors import DeployError
    from edgekd_deploy.runners import OrtRunner, run_batched

    model = run_model(Path(model))
    if model.suffix != ".onnx" or not model.is_file():
        raise EdgekdError(f"model '{model}' is not an .onnx file: pass a model from "
                          "'edgekd export', a run's export/ folder or a run folder")
    paths = image_paths(list(inputs))
    try:
        runner = OrtRunner(model)
        images = load_images(paths, tuple(runner.sample_shape))
        given = parse_normalize(normalize, runner.sample_shape[0]) if normalize else None
        x = prepare_inputs(images, tuple(runner.sample_shape), given or normalization_of(runner),
                           "the images")
        logits = run_batched(runner, x, batch_size=batch_size).astype(np.float64)
    except DeployError as error:
        raise EdgekdError(str(error)) from None
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    names = class_names(runner.metadata, probs.shape[1])
    k = max(1, min(top_k, probs.shape[1]))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [Prediction(str(path), [(names[j], float(probs[i, j])) for j in order[i]])
            for i, path in enumerate(paths)]


def format_predictions(predictions: list[Prediction]) -> str:
    """One line per image: ``photo.png: 7 97.20%, 1 1.10%, ...``."""
    from edgekd.core import fmt

    return "\n".join(f"{p.image}: " + ", ".join(f"{name} {fmt.percent(prob)}" for name, prob in p.top)
                     for p in predictions)
