"""What the CLI shows of the data stage functions return: the search's shortlist table and a
host Measurement (``edgekd search``, ``edgekd measure``). The stages return data; turning it
into text is presentation, so it lives here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgekd.core.runfolder import CANDIDATES_JSONL, SEARCH_JSON
from edgekd.core import fmt
from edgekd.core.units import format_count
from edgekd.ship.measure import LATENCY_KEYS

if TYPE_CHECKING:  # pragma: no cover
    from edgekd.search.search import SearchResult

__all__ = ["format_search", "summary_line", "measurement_rows"]


def format_search(result: "SearchResult") -> str:
    """The shortlist as a table plus a summary (plain text, for the CLI)."""
    header = ("id", "family", "depth", "widths", "MACs", "params", "latency", "pareto")
    rows = [(c.id, c.spec.family, str(c.depth), "-".join(map(str, c.spec.widths)),
             format_count(c.macs), format_count(c.params),
             f"{c.latency.ms:.4f} ms {c.latency.label}", "yes" if c.pareto else "")
            for c in result.shortlist]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    line = lambda r: "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip()  # noqa: E731
    lines = [f"budget ({result.profile}): MACs <= {format_count(result.max_macs)}, latency <= "
             f"{result.latency_ms:g} ms at batch {result.batch} "
             f"({result.latency_label}{', ' + result.calibration if result.calibration else ''})",
             f"{len(result.candidates)} students enumerated, {len(result.feasible)} fit, "
             f"{len(result.pareto)} on the Pareto front (latency, params, depth); "
             f"shortlist of {len(result.shortlist)}:",
             "", line(header), line(tuple("-" * w for w in widths)), *map(line, rows)]
    if result.out_dir is not None:
        lines += ["", f"wrote {result.out_dir / CANDIDATES_JSONL} and {result.out_dir / SEARCH_JSON}"]
    return "\n".join(lines)


def summary_line(measurement: dict[str, Any]) -> str:
    """``t03.onnx: latency 0.12 ms (median, batch 1), top-1 accuracy 97.20% on 2,000 test
    images of mnist-subset`` (the accuracy part when the measurement has one)."""
    line = (f"{measurement['model']}: latency {fmt.ms(measurement['latency_ms']['median'])} ms "
            f"(median, batch {measurement['batch']})")
    acc = measurement.get("accuracy")
    if acc:
        line += (f", top-1 accuracy {fmt.percent(acc['top1'])} on {acc['samples']:,} "
                 f"{acc['split']} images of {acc['data']}")
    return line


def measurement_rows(measurement: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, value) rows for printing a Measurement."""
    latency = measurement["latency_ms"]
    rows = [("model", measurement["model"]), ("sha256", measurement["sha256"][:16]),
            ("backend", f"{measurement['backend']} ({measurement.get('provider', '')})"),
            ("precision", measurement["precision"]), ("batch", str(measurement["batch"])),
            ("device", measurement["device"]),
            ("iterations", f"{measurement['iterations']} (+{measurement['warmup']} warm-up)")]
    rows += [(f"latency {key} (ms)", fmt.ms(latency[key])) for key in LATENCY_KEYS]
    rows.append(("throughput (samples/s)", fmt.rate(measurement["throughput"])))
    return rows
