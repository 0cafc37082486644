"""What ``edgekd train`` and ``edgekd layers`` print: the summary of a training result and the
table of a model's tappable layers (the data comes from :mod:`edgekd.distill.commands`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgekd.distill.commands import LayerListing
    from edgekd.distill.config import TrainResult


def format_result(result: TrainResult) -> str:
    """A few lines summarising a training result for the terminal."""
    from edgekd.core import fmt

    lines = [f"{result.method}: val acc {fmt.percent(result.val_acc)}, "
             f"test acc {fmt.percent(result.test_acc)} "
             f"after {result.epochs_done} epochs ({result.seconds:.1f} s)"]
    for pair in result.hints or ([result.hint] if result.hint else []):  # several with --hint-mode multi
        lines.append(f"hint layer {pair['hint_layer']} {pair['hint_shape']} <- guided "
                     f"layer {pair['guided_layer']} {pair['guided_shape']}")
    for gen in result.generations or []:
        lines.append(f"generation {gen['generation']} ({gen['method']}): test acc {fmt.percent(gen['test_acc'])}")
    if result.ensemble_test_acc is not None:
        lines.append(f"ensemble of generations: test acc {fmt.percent(result.ensemble_test_acc)}")
    lines.append(f"wrote {result.checkpoint} (+ metrics.jsonl, result.json)")
    return "\n".join(lines)


def print_layers(listing: LayerListing) -> None:
    """A rich table: node name, kind, output shape, and what training uses the node for."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=listing.title)
    for column in ("node", "kind", "output shape", "used by fitnet"):
        table.add_column(column)
    rows = _marked_rows(listing)
    for i, layer in enumerate(listing.layers):
        shape = "x".join(str(v) for v in layer.shape) if layer.shape else "-"
        mark = rows.get(i, "")
        table.add_row(layer.name, layer.kind, shape, mark, style="bold green" if mark else None)
    Console().print(table)
    for line in listing.pairs:
        Console().print(line, soft_wrap=True)
    Console().print(listing.note)


def _marked_rows(listing: LayerListing) -> dict[int, str]:
    """Row index -> mark; a block name marks the last node inside the block."""
    rows: dict[int, str] = {}
    for name, mark in listing.marks.items():
        exact = [i for i, layer in enumerate(listing.layers) if layer.name == name]
        inside = [i for i, layer in enumerate(listing.layers) if layer.name.startswith(name + ".")]
        index = exact[0] if exact else inside[-1] if inside else None
        if index is not None:
            rows[index] = mark + ("" if listing.layers[index].name == name else f" (= {name})")
    return rows
