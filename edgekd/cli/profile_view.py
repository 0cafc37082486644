"""Terminal views of device profiles (``edgekd profiles list`` and ``edgekd profiles show``)."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

from edgekd.inputs.profiles import DeviceProfile, load_profile, shipped_profiles
from edgekd.core.units import format_count

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

#: Width used when output is not a terminal (pipes, CliRunner), so tables are not truncated.
PIPE_WIDTH = 160


def make_console() -> Console:
    """A rich console; wide enough for the profile table when stdout is not a terminal."""
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=max(console.width, PIPE_WIDTH))
    return console


def profiles_table(profiles: list[DeviceProfile]) -> RenderableType:
    """One row per profile: peaks, bandwidth, budget and runtime."""
    from rich.table import Table

    table = Table(title="device profiles", title_justify="left")
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("kind")
    for header in ("FP32 TFLOP/s", "FP16 TFLOP/s", "INT8 TOP/s", "GB/s"):
        table.add_column(header, justify="right")
    table.add_column("latency @ batch", justify="right")
    table.add_column("MACs", justify="right")
    table.add_column("runtime")
    for p in profiles:
        hw, b, rt = p.hardware, p.budget, p.runtime
        table.add_row(p.name, p.kind, f"{hw.fp32_tflops:g}", f"{hw.fp16_tflops:g}",
                      f"{hw.int8_tops:g}", f"{hw.memory_bandwidth_gbs:g}",
                      f"{b.latency_ms:g} ms @ {b.batch}", format_count(b.macs),
                      f"{rt.backend}/{rt.precision}")
    return table


def profile_details(profile: DeviceProfile) -> RenderableType:
    """Every field of one profile, grouped as in the TOML (hardware, budget, runtime)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    header = Text.assemble((profile.name, "bold"), f"  ({profile.kind})\n",
                           f"{profile.description}\n", ("source: ", "dim"), profile.source)
    groups: list[RenderableType] = [header]
    for section in ("hardware", "budget", "runtime"):
        value = getattr(profile, section)
        table = Table(title=Text(f"[{section}]", style="bold"), title_justify="left",
                      show_header=False,
                      box=None, padding=(0, 2))
        table.add_column("key", style="cyan", no_wrap=True)
        table.add_column("value", justify="right")
        table.add_column("unit", style="dim")
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if isinstance(v, float):
                shown = f"{v:g}"
            elif f.name == "macs":
                shown = f"{v:,} ({format_count(v)})"
            else:
                shown = str(v)
            table.add_row(f.name, shown, f.metadata.get("unit", ""))
        groups += [Text(""), table]
    return Group(*groups)


def list_profiles(as_json: bool = False) -> RenderableType | str:
    """What ``edgekd profiles list`` prints: the table, or a JSON list of profiles."""
    profiles = shipped_profiles()
    if as_json:
        return json.dumps([p.to_dict() for p in profiles], indent=2)
    return profiles_table(profiles)


def show_profile(name_or_path: str, as_json: bool = False) -> RenderableType | str:
    """What ``edgekd profiles show`` prints: the grouped fields, or the profile as JSON."""
    profile = load_profile(name_or_path)
    if as_json:
        return json.dumps(profile.to_dict(), indent=2)
    return profile_details(profile)
