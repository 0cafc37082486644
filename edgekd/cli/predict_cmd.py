"""``edgekd predict``: top-k classes of images with an exported ONNX model (no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgekd.cli.base import verbose_option


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, metavar="IMAGES...|DIR")
@click.option("--top", "-k", "top_k", type=click.IntRange(min=1), default=5, show_default=True,
              help="How many classes to print per image.")
@click.option("--json", "as_json", is_flag=True, default=False, help="Print one JSON object per image.")
@click.option("--normalize", default=None, metavar="imagenet|none|MEAN,STD",
              help="Feed the model with these statistics instead of its edgekd.normalization metadata "
                   "(for an ONNX model that edgekd did not export): imagenet = ImageNet's mean/std; "
                   "none = pixels in 0..1; MEAN,STD or C means then C stds, in 0..1 units "
                   "[the model's metadata].")
@verbose_option
def predict(model: Path, images: tuple[str, ...], top_k: int, as_json: bool, normalize: str | None) -> None:
    """Classify image files (or every image in a folder) with an exported MODEL.onnx (or a
    run folder: its winner) and print
    each image's top classes with their probabilities. Class names and normalisation come from
    the model's metadata (edgekd export writes them); images are converted to the model's
    channels and resized to its input size. Runs through the deploy kit's ONNX Runtime
    runner: torch is not imported.

    \b
    Example:
        edgekd predict runs/default images/
        edgekd predict runs/default/export/teacher.onnx digit.png
        edgekd predict exported/6e4768515f76.onnx photos/ --top 3 --json
    """
    from edgekd.ship.predict import format_predictions, predict as run_predict

    predictions = run_predict(model, list(images), top_k=top_k, normalize=normalize)
    if as_json:
        for prediction in predictions:
            click.echo(json.dumps(prediction.to_dict()))
    else:
        click.echo(format_predictions(predictions))
