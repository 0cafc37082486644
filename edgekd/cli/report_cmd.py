"""``edgekd report``: summary.json, report.md/html and plots of a run."""

from __future__ import annotations

from pathlib import Path

import click

from edgekd.cli.base import verbose_option

__all__ = ["report"]


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--measurements", "-m", "measurements", multiple=True,
              type=click.Path(path_type=Path),
              help="Measurement JSON from 'python -m deploy bench' on the device (repeatable).")
@click.option("--force", is_flag=True, default=False,
              help="Merge measurements whose device, backend, precision or batch is not the run "
                   "profile's (labelled 'measured, forced' in the report).")
@verbose_option
def report(run_dir: Path, measurements: tuple[Path, ...], force: bool) -> None:
    """Rebuild a run's report (summary.json, report.md, report.html, plots) from its files,
    merging latencies measured on the target device.

    \b
    Example:
        edgekd report runs/default
        edgekd report runs/orin --measurements orin-bench/*.json
    """
    from edgekd.core.runfolder import RunDir
    from edgekd.report.merge import merge_lines
    from edgekd.report.report import headline, shown_summary, write_report
    from edgekd.report.tables import changes

    # what the report showed before this rebuild (write_report says what is wrong with the folder)
    before = shown_summary(run_dir) if measurements else None
    merged: list = []
    summary = write_report(run_dir, measurements, force=force, merged=merged)
    for line in merge_lines(merged, bool(summary["search"].get("target_is_host"))):
        click.echo(line)
    for line in changes(before, summary) if before is not None else ():
        click.echo(line)
    click.echo(headline(summary))
    click.echo(f"report: {RunDir(run_dir).report_html} (and report.md, summary.json)")
