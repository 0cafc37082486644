"""The family registry: a toy family registered at test time is enumerated, costed (through
its cost hook), tapped for hints and searched by `edgekd search` without touching edgekd."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgekd.cli.cli import cli
from edgekd.search.cost import spec_cost
from edgekd.core.errors import EdgekdError
from edgekd.search.families import Block, Family, get_family, register_family, stem_and_stages, unregister_family
from edgekd.search.space import SpaceConfig, Stage, StudentSpec, build, enumerate_specs


class Doubler(nn.Module):
    """An element-wise op the cost model has never heard of; its cost hook names its kind."""

    cost_kind = "elementwise"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


def _make(block: Block) -> nn.Module:
    conv = nn.Conv2d(block.cin, block.cout, block.kernel, block.stride, block.kernel // 2, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(block.cout), nn.ReLU(), Doubler())


@pytest.fixture
def toy():
    family = register_family(Family(
        name="toy", plan=lambda spec: stem_and_stages(spec, "toyblock", 1), make=_make,
        blocks_for_depth=lambda depth, _variant: depth - 1, help="conv-BN-ReLU-x2 blocks"))
    yield family
    unregister_family("toy")


def test_toy_family_builds_taps_and_costs(toy) -> None:
    from torchvision.models.feature_extraction import create_feature_extractor

    spec = StudentSpec("toy", (1, 28, 28), 10, (Stage(8, 2, 1), Stage(16, 2, 2)))
    assert get_family("toy") is toy and spec.depth == 5 and spec.blocks == 5
    model = build(spec).eval()
    x = torch.randn(2, 1, 28, 28)
    assert model(x).shape == (2, 10)
    taps = create_feature_extractor(model, [spec.guided_layer])(x)
    assert tuple(taps[spec.guided_layer].shape[1:]) == spec.guided_shape
    kinds = [layer.kind for layer in spec_cost(spec).layers]
    assert kinds.count("elementwise") == 5  # one Doubler per block (the toy stem has one too)
    assert StudentSpec.from_json(spec.to_json()) == spec


def test_cli_search_runs_a_registered_toy_family(toy, tmp_path) -> None:
    out = tmp_path / "search"
    result = CliRunner().invoke(cli, ["search", "--profile", "host-cpu", "--input", "1x28x28",
                                      "--classes", "10", "--max-macs", "300K", "--family", "toy",
                                      "--max-depth", "7", "--shortlist", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "candidates.jsonl").read_text().splitlines()]
    assert rows and {r["family"] for r in rows} == {"toy"}
    assert all(r["macs"] <= 300_000 and 3 <= r["depth"] <= 7 for r in rows)
    assert "toy" in result.output


def test_unknown_family_is_one_line_error_listing_registered_ones(toy) -> None:
    with pytest.raises(EdgekdError, match="unknown student family nope: .*toy"):
        SpaceConfig(families=("nope",))
    result = CliRunner().invoke(cli, ["search", "--family", "plain,nope"])
    assert result.exit_code == 2 and "unknown student family" in result.output
    assert "Traceback" not in result.output


def test_registry_refuses_a_second_family_of_the_same_name(toy) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_family(toy)
    specs = enumerate_specs((1, 28, 28), 10, SpaceConfig(families=("toy",), max_depth=4))
    assert specs and all(s.family == "toy" and s.depth <= 4 for s in specs)
