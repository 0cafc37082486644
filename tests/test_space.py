"""The student space: JSON round trip, stable ids, build(), guided layer, enumeration."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from torch import nn

from edgekd.core.errors import EdgekdError
from edgekd.search.grid import enumerate_specs
from edgekd.search.space import SpaceConfig, Stage, StudentSpec, build

PLAIN = StudentSpec("plain", (1, 28, 28), 10, (Stage(8, 2, 1), Stage(16, 3, 2), Stage(32, 2, 2)))
RESIDUAL = StudentSpec("residual", (3, 32, 32), 100, (Stage(16, 2, 1), Stage(32, 2, 2)),
                       bottleneck=8)


def main_path_convs(model: nn.Module) -> int:
    """Conv layers that are not 1x1 projection shortcuts."""
    return sum(1 for name, m in model.named_modules()
               if isinstance(m, nn.Conv2d) and "shortcut" not in name)


@pytest.mark.parametrize("spec", [PLAIN, RESIDUAL])
def test_json_round_trip(spec: StudentSpec) -> None:
    again = StudentSpec.from_json(spec.to_json())
    assert again == spec and again.id == spec.id
    assert StudentSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_id_is_hash_of_canonical_json_and_ignores_formatting() -> None:
    canonical = ('{"bottleneck":null,"classes":10,"family":"plain","input":[1,28,28],'
                 '"kernel":3,"stages":[{"depth":2,"stride":1,"width":8},'
                 '{"depth":3,"stride":2,"width":16},{"depth":2,"stride":2,"width":32}]}')
    assert PLAIN.to_json() == canonical
    assert PLAIN.id == hashlib.sha256(canonical.encode()).hexdigest()[:12]
    shuffled = json.dumps(dict(reversed(list(PLAIN.to_dict().items()))), indent=4)
    assert StudentSpec.from_json(shuffled).id == PLAIN.id
    # DESIGN.md's example form (no bottleneck key, a consistent "residual" flag) is accepted.
    d = PLAIN.to_dict()
    del d["bottleneck"]
    d["residual"] = False
    assert StudentSpec.from_dict(d).id == PLAIN.id
    wider = StudentSpec.from_dict({**PLAIN.to_dict(), "classes": 11})
    assert wider.id != PLAIN.id


@pytest.mark.parametrize("bad, words", [
    ({"family": "dense"}, "unknown family"),
    ({"kernel": 4}, "kernel must be odd"),
    ({"stages": []}, "stages is empty"),
    ({"stages": [{"width": 8, "depth": 0, "stride": 1}]}, "stage depth"),
    ({"stages": [{"width": 8, "depth": 1, "stride": 3}]}, "stride must be 1 or 2"),
    ({"input": [28, 28]}, "input must be"),
    ({"colour": "red"}, "unknown key"),
    ({"residual": True}, "contradicts"),
])
def test_bad_specs_are_one_line_errors(bad: dict, words: str) -> None:
    with pytest.raises(EdgekdError, match=words):
        StudentSpec.from_dict({**PLAIN.to_dict(), **bad})
    with pytest.raises(EdgekdError, match="not valid JSON"):
        StudentSpec.from_json("{family: plain")


@pytest.mark.parametrize("spec", [PLAIN, RESIDUAL])
def test_build_depth_shapes_and_guided_layer(spec: StudentSpec) -> None:
    from torchvision.models.feature_extraction import create_feature_extractor

    model = build(spec).eval()
    assert main_path_convs(model) == spec.depth
    assert len(model.features) == spec.blocks
    x = torch.randn(2, *spec.input)
    assert model(x).shape == (2, spec.classes)
    names = [f"features.{i}" for i in range(spec.blocks)]
    taps = create_feature_extractor(model, names)(x)  # torch.fx under the hood
    for name, shape in zip(names, spec.feature_shapes()):
        assert tuple(taps[name].shape[1:]) == shape, name
    assert tuple(taps[spec.guided_layer].shape[1:]) == spec.guided_shape
    # the guided layer sits in the middle: it has seen half of the conv layers (rounded up)
    seen = spec.convs_through(spec.guided_index)
    assert seen >= spec.depth / 2 > spec.convs_through(spec.guided_index - 1)


def test_bottleneck_is_low_rank_linear() -> None:
    model = build(RESIDUAL)
    assert isinstance(model.bottleneck, nn.Linear) and model.bottleneck.out_features == 8
    assert model.head.in_features == 8
    assert isinstance(build(PLAIN).bottleneck, nn.Identity)


def test_onnx_export_matches_pytorch(tmp_path) -> None:
    import numpy as np
    import onnxruntime as ort

    model = build(RESIDUAL).eval()
    x = torch.randn(1, *RESIDUAL.input)
    path = tmp_path / "student.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=["logits"],
                      dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(out, model(x).detach().numpy(), rtol=1e-4, atol=1e-4)


def test_enumeration_spans_depths_and_families_quickly() -> None:
    import time

    start = time.perf_counter()
    specs = enumerate_specs((1, 28, 28), 10)
    elapsed = time.perf_counter() - start
    assert len(specs) >= 2000 and elapsed < 5.0
    assert len({s.id for s in specs}) == len(specs)
    depths = {s.depth for s in specs}
    assert min(depths) == 3 and max(depths) >= 19
    assert {s.family for s in specs} == {"plain", "residual"}
    assert all(s.depth % 2 == 1 for s in specs if s.family == "residual")
    # downsampling positions vary: the same depth appears split into stages in several ways
    splits = {tuple(st.depth for st in s.stages) for s in specs if s.depth == 9 and s.family == "plain"}
    assert len(splits) > 5
    # every stage keeps a feature map of at least min_resolution pixels
    assert all(min(s.feature_shapes()[-1][1:]) >= SpaceConfig().min_resolution for s in specs)


def test_enumeration_respects_config() -> None:
    config = SpaceConfig(families=("residual",), min_depth=5, max_depth=9, base_widths=(8,),
                         growths=(2.0,), bottlenecks=(None, 4))
    specs = enumerate_specs((3, 32, 32), 10, config)
    assert specs and all(s.family == "residual" and 5 <= s.depth <= 9 for s in specs)
    assert {s.bottleneck for s in specs} == {None, 4}
    with pytest.raises(EdgekdError, match="unknown student family"):
        SpaceConfig(families=("dense",))
