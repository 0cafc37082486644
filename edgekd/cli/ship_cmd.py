"""``edgekd export`` (ONNX, parity, bundle) and ``edgekd measure`` (host latency through the
deploy kit)."""

from __future__ import annotations

from pathlib import Path

import click

from edgekd.cli.base import MAX_BATCH, default_of, verbose_option
from edgekd.ship.bundle import BundleConfig

__all__ = ["export", "measure"]


def _parse_dynamic_batch(_ctx: click.Context, _param: click.Parameter, value: str | None
                         ) -> tuple[int, int, int] | None:
    if value is None:
        return None
    try:
        low, opt, high = (int(p) for p in value.split(","))
    except ValueError:
        raise click.BadParameter(f"'{value}' is not MIN,OPT,MAX, e.g. 1,8,32") from None
    if not 1 <= low <= opt <= high:
        raise click.BadParameter(f"'{value}': need 1 <= MIN <= OPT <= MAX, e.g. 1,8,32")
    return low, opt, high


@click.command()
@click.argument("target", metavar="CHECKPOINT_OR_RUN", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for ID.onnx (and bundle/ with --bundle).")
@click.option("--bundle", is_flag=True, default=False,
              help="Also write OUT/bundle: model.onnx, the deploy kit, profile.toml, calib.npz, "
                   "val.npz and a README with the commands to run on the device.")
@click.option("--profile", "profile_name", default=None,
              help="Target device profile (name or .toml) [default: the run's profile].")
@click.option("--dynamic-batch", callback=_parse_dynamic_batch, default=None, metavar="MIN,OPT,MAX",
              help="Export a dynamic batch dimension (TensorRT optimisation profile MIN/OPT/MAX) "
                   "instead of the static batch.")
@click.option("--batch", type=click.IntRange(min=1, max=MAX_BATCH), default=None,
              help="Static batch [default: the profile's budget batch, else 1].")
@click.option("--simplify", is_flag=True, default=False,
              help="Simplify with onnxslim; kept only if parity still holds.")
@click.option("--int8", is_flag=True, default=False,
              help="Also write OUT/ID.int8.onnx (Q/DQ, per-channel weights, calibrated on the "
                   "training images) and ID.int8.json with its ONNX Runtime accuracy next to FP32.")
@click.option("--data", default=None,
              help="Data for the parity check and the bundle's npz files "
                   "[default: the run's data, else mnist-subset].")
@click.option("--int8-tolerance", type=click.FloatRange(min=0),
              default=default_of(BundleConfig, "int8_tolerance"), show_default=True,
              help="For an int8 profile's bundle: the most top-1 points the INT8 model may lose "
                   "against FP32 on the host; beyond it the bundle builds FP16 and says why.")
@verbose_option
def export(target: Path, out_dir: Path, bundle: bool, profile_name: str | None,
           dynamic_batch: tuple[int, int, int] | None, batch: int | None, simplify: bool,
           int8: bool, data: str | None, int8_tolerance: float) -> None:
    """Export a trained student to ONNX (opset 17, GlobalAveragePool, onnx.checker, parity with PyTorch on 256
    real test samples: max |logit difference| <= 1e-4 and 100% top-1 agreement), with its
    spec, classes, input shape, normalisation, accuracy and profile in the model metadata.
    CHECKPOINT_OR_RUN is a student checkpoint.pt or a run folder (its best trial). With
    --bundle, also write the folder to copy to the device.

    \b
    Example:
        edgekd export runs/orin --out exported --bundle
        edgekd export runs/orin/trials/t03/checkpoint.pt --out exported \\
            --profile jetson-orin-nano-8gb --dynamic-batch 1,8,32 --simplify --bundle
        edgekd export runs/orin --out exported --int8
    """
    from edgekd.core.stack import check_stack

    check_stack()  # a broken torch/torchvision install: one line now, not a traceback later
    from edgekd.core import fmt
    from edgekd.ship.export_target import export_target

    result = export_target(target, out_dir, bundle=bundle, profile=profile_name,
                           dynamic_batch=dynamic_batch, simplify=simplify, data=data, batch=batch,
                           int8=int8, int8_tolerance=int8_tolerance)
    click.echo(f"exported {result.model_id} -> {result.onnx}")
    if result.parity:
        p = result.parity
        click.echo(f"parity: max |logit difference| {p['max_abs_diff']:.3g} (limit {p['atol']:g}), "
                   f"top-1 agreement {fmt.percent(p['top1_agreement'])} on {p['samples']} samples")
    if result.int8:
        click.echo(f"int8 -> {result.onnx.with_name(result.int8['onnx'])}: {result.int8['line']}")
        if result.int8.get("recorded_in"):
            click.echo(f"int8: recorded in {result.int8['recorded_in']} ('edgekd report' shows it)")
        elif result.int8.get("not_recorded"):
            click.echo(f"int8: not recorded in the run ({result.int8['not_recorded']}): the report "
                       "of the run has no INT8 row")
    for note in result.notes:
        click.echo(f"note: {note}")
    if result.bundle:
        click.echo(f"bundle -> {result.bundle} (copy it to the device; see {result.bundle / 'README.md'})")


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--batch", type=click.IntRange(min=1, max=MAX_BATCH), default=1, show_default=True)
@click.option("--iters", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
              help="ONNX Runtime intra-op threads (0 = one per core).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Keep the Measurement JSON here.")
@click.option("--data", "data", default=None, metavar="SPEC",
              help="Also measure top-1 accuracy on this data set's test split: a .npz with "
                   "x_test/y_test, an image folder DIR/test/<class>/, or 'mnist-subset' "
                   "[default: no accuracy].")
@verbose_option
def measure(model: Path, batch: int, iters: int, warmup: int, threads: int,
            out_file: Path | None, data: str | None) -> None:
    """Measure an ONNX model's latency on this host through the deploy kit
    (python -m deploy bench in a subprocess: the same timing code as on the device)
    and print the Measurement: median, p90, p99, min, mean, std in ms and throughput.
    With --data, top-1 accuracy on the data's test split too (deploy check's ONNX Runtime
    path, normalised with the model's metadata; no torch), on one line with the latency and
    as "accuracy" in the JSON.

    \b
    Example:
        edgekd measure exported/t03.onnx --batch 1 --iters 200 --out host.json
        edgekd measure exported/t03.onnx --data mnist-subset --out host.json
    """
    from rich.console import Console
    from rich.table import Table

    from edgekd.core.fileio import atomic_write_json
    from edgekd.cli.views import measurement_rows, summary_line
    from edgekd.ship.measure import data_accuracy, measure_onnx

    accuracy = data_accuracy(model, data) if data is not None else None  # fails before timing
    result = measure_onnx(model, batch=batch, warmup=warmup, iters=iters, out=out_file,
                          threads=threads)
    if accuracy is not None:
        result["accuracy"] = accuracy
        if out_file:
            atomic_write_json(out_file, result)
    table = Table(title=f"{result['model']} on this host", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for name, value in measurement_rows(result):
        table.add_row(name, value)
    Console().print(table)
    if accuracy is not None:
        click.echo(summary_line(result))
    if out_file:
        click.echo(f"wrote {out_file}")
