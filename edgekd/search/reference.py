"""Reference students: the torchvision small models a user would take off the shelf and distil
into instead of a searched student, as the ``reference`` family of the family registry.

A reference student is a :class:`~edgekd.search.space.StudentSpec` with ``family="reference"``
and ``model`` one of :data:`REFERENCE_MODELS` (torchvision's mobilenet_v3_small/large at their
width multipliers, shufflenet_v2 x0.5/x1.0, mnasnet0_5, regnet_x_400mf, resnet18), built with
``weights=None`` for the data's classes. Its ``features`` are the torchvision model's own
modules cut at block boundaries (the stem, then each residual/inverted-residual block, then the
last 1x1 conv where the model has one), so hint taps, per-block costing and the latency model
work as for any family; its ``head`` is the model's own classifier (mobilenet_v3's hidden
Linear + Hardswish included); for data with other than 3 channels the first conv takes the
data's channels. For inputs under :data:`SMALL_INPUT` pixels the usual small-image
adaptation applies (as for CIFAR ResNets): the stem's first stride-2 conv gets stride 1 and
its max-pool is removed, so a 32x32 image is not reduced to 1x1 before the last stage.

The spec's ``stages`` summarise the model per resolution (width = channels at the end of the
stage, depth = blocks at that resolution) and are checked against the model: a spec cannot
claim another shape than the one it builds. ``blocks_for_depth`` is None for every depth, so
the search's enumeration never lists reference students; :func:`reference_specs` does.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from edgekd.core.errors import EdgekdError
from edgekd.search.families import Block, Family, register_family
from edgekd.search.space import StudentSpec

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

#: name -> (torchvision builder, keyword arguments): the models a user would reach for
REFERENCE_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "mobilenet_v3_small_x0_5": ("mobilenet_v3_small", {"width_mult": 0.5}),
    "mobilenet_v3_small_x0_75": ("mobilenet_v3_small", {"width_mult": 0.75}),
    "mobilenet_v3_small": ("mobilenet_v3_small", {}),
    "mobilenet_v3_large_x0_75": ("mobilenet_v3_large", {"width_mult": 0.75}),
    "mobilenet_v3_large": ("mobilenet_v3_large", {}),
    "shufflenet_v2_x0_5": ("shufflenet_v2_x0_5", {}),
    "shufflenet_v2_x1_0": ("shufflenet_v2_x1_0", {}),
    "mnasnet0_5": ("mnasnet0_5", {}),
    "regnet_x_400mf": ("regnet_x_400mf", {}),
    "resnet18": ("resnet18", {}),
}
#: inputs smaller than this (pixels, the shorter side) get the small-image adaptation
SMALL_INPUT = 64
#: BatchNorm momentum of every reference model: PyTorch's default, the one edgekd's own students
#: train with. torchvision builds mobilenet_v3 with 0.01 and mnasnet with 3e-4, values meant for
#: ImageNet's hundreds of thousands of steps; over a distillation schedule of a few thousand steps
#: their running statistics still describe the early weights, and in eval mode such a model can
#: predict a single class while its training accuracy rises.
BN_MOMENTUM = 0.1
_PROBE_CLASSES = 2  # the features do not depend on the class count


def _check_name(name: str | None) -> str:
    if name not in REFERENCE_MODELS:
        raise EdgekdError(f"unknown reference model {name!r}: use one of {', '.join(REFERENCE_MODELS)}")
    return name


def is_small(input_shape: tuple[int, ...]) -> bool:
    return min(input_shape[1:]) < SMALL_INPUT


def torchvision_model(name: str, classes: int, small: bool, channels: int = 3) -> "nn.Module":
    """The torchvision model ``name`` (weights=None) for ``classes`` and ``channels`` input
    channels (its first conv rebuilt when not 3), adapted to small inputs, its BatchNorm layers
    at :data:`BN_MOMENTUM`."""
    import torchvision
    from torch import nn

    builder, kwargs = REFERENCE_MODELS[_check_name(name)]
    model = torchvision.models.get_model(builder, weights=None, num_classes=classes, **kwargs)
    for norm in model.modules():
        if isinstance(norm, nn.modules.batchnorm._BatchNorm):
            norm.momentum = BN_MOMENTUM
    if channels != 3:  # the first conv registered is the stem's in every model of the table
        parent, attr, conv = next((p, n, c) for p in model.modules() for n, c in p.named_children()
                                  if isinstance(c, nn.Conv2d))
        setattr(parent, attr, nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride,
                                        conv.padding, bias=conv.bias is not None))
    if small:
        stem = _parts(model)[0][0]
        first = next(m for m in stem.modules() if isinstance(m, nn.Conv2d) and m.stride != (1, 1))
        first.stride = (1, 1)
        for parent in [stem, *stem.modules()]:
            for child_name, child in list(parent.named_children()):
                if isinstance(child, nn.MaxPool2d):
                    setattr(parent, child_name, nn.Identity())
        if hasattr(model, "maxpool"):  # resnet: the max-pool sits outside conv1's module
            model.maxpool = nn.Identity()
    return model


def _parts(model: "nn.Module") -> tuple[list["nn.Module"], "nn.Module"]:
    """(the blocks before the global pool, the classifier) of a torchvision classifier."""
    import torchvision.models as tvm
    from torch import nn

    if isinstance(model, tvm.ResNet):
        stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        return [stem, *model.layer1, *model.layer2, *model.layer3, *model.layer4], model.fc
    if isinstance(model, (tvm.MobileNetV3, tvm.MobileNetV2)):
        return list(model.features), model.classifier
    if isinstance(model, tvm.ShuffleNetV2):
        stem = nn.Sequential(model.conv1, model.maxpool)
        return [stem, *model.stage2, *model.stage3, *model.stage4, model.conv5], model.fc
    if isinstance(model, tvm.MNASNet):
        layers = list(model.layers)
        stacks = [block for stack in layers[8:14] for block in stack]
        return [nn.Sequential(*layers[:8]), *stacks, nn.Sequential(*layers[14:])], model.classifier
    if isinstance(model, tvm.RegNet):
        blocks = [block for stage in model.trunk_output for block in stage]
        return [model.stem, *blocks], model.fc
    raise EdgekdError(f"no reference decomposition for {type(model).__name__}")  # pragma: no cover


_TEMPLATES: dict[tuple[str, bool, int], "nn.Module"] = {}


def _template(name: str, small: bool, channels: int) -> "nn.Module":
    """One CPU instance per model, copied to the meta device for shapes and costs (some
    torchvision builders, e.g. RegNet's, compute their widths with tensors and cannot be built
    on the meta device)."""
    import torch

    key = (name, small, channels)
    if key not in _TEMPLATES:
        with torch.device("cpu"):
            _TEMPLATES[key] = torchvision_model(name, _PROBE_CLASSES, small, channels)
    return _TEMPLATES[key]


def _layout(name: str, input_shape: tuple[int, int, int]) -> list[tuple[int, int, int, int]]:
    """Per block: (input channels, output channels, stride, main-path convs), from a forward
    pass on the meta device (free)."""
    import copy

    import torch
    from torch import nn

    pieces, _ = _parts(copy.deepcopy(_template(name, is_small(input_shape), input_shape[0])).to("meta"))
    with torch.no_grad():
        x = torch.zeros(1, *input_shape, device="meta")
        layout = []
        for piece in pieces:
            y = piece(x)
            stride = math.ceil(x.shape[2] / y.shape[2])
            convs = sum(1 for m in piece.modules() if isinstance(m, nn.Conv2d))
            layout.append((int(x.shape[1]), int(y.shape[1]), stride, convs))
            x = y
    return layout


_LAYOUTS: dict[tuple[str, tuple[int, int, int]], list[tuple[int, int, int, int]]] = {}


def layout(name: str, input_shape: tuple[int, int, int]) -> list[tuple[int, int, int, int]]:
    key = (name, tuple(input_shape))
    if key not in _LAYOUTS:
        _LAYOUTS[key] = _layout(name, key[1])
    return _LAYOUTS[key]


def reference_stages(name: str, input_shape: tuple[int, int, int]) -> list[dict[str, int]]:
    """The spec's ``stages``: one per resolution (the blocks up to the first downsampling after
    the stem form the first stage), width = channels at its end, depth = its blocks."""
    stages: list[dict[str, int]] = []
    for i, (_cin, cout, stride, _convs) in enumerate(layout(name, input_shape)):
        if i == 0 or stride == 1 or not stages:
            if not stages:
                stages.append({"width": cout, "depth": 1, "stride": 1})
            else:
                stages[-1].update(width=cout, depth=stages[-1]["depth"] + 1)
        else:
            stages.append({"width": cout, "depth": 1, "stride": 2})
    return stages


def reference_spec(name: str, input_shape: tuple[int, int, int], classes: int) -> StudentSpec:
    return StudentSpec.from_dict({"family": "reference", "model": _check_name(name),
                                  "input": list(input_shape), "classes": classes,
                                  "stages": reference_stages(name, tuple(input_shape))})


def reference_specs(input_shape: tuple[int, int, int], classes: int,
                    names: tuple[str, ...] | None = None) -> list["StudentSpec"]:
    """Every reference student (or those ``names``) for this input and class count."""
    return [reference_spec(n, input_shape, classes) for n in (names or tuple(REFERENCE_MODELS))]


# ---------------------------------------------------------------------------- the family
def _plan(spec: "StudentSpec") -> list[Block]:
    small = is_small(spec.input)
    return [Block("tv", cin, cout, 3, stride, convs,
                  (("model", spec.model), ("index", i), ("small", small), ("channels", spec.input[0])))
            for i, (cin, cout, stride, convs) in enumerate(layout(spec.model, spec.input))]


def _make(block: Block) -> "nn.Module":
    """The block's module: freshly initialised (a whole model is built and cut), or, under the
    cost model's meta device, a meta copy of the template's."""
    import copy

    import torch

    name, small, index = block.option("model"), bool(block.option("small")), int(block.option("index"))
    channels = int(block.option("channels", 3))
    if torch.get_default_device().type == "meta":
        return copy.deepcopy(_parts(_template(name, small, channels))[0][index]).to("meta")
    return _parts(torchvision_model(name, _PROBE_CLASSES, small, channels))[0][index]


def reference_head(spec: "StudentSpec") -> "nn.Module":
    """The torchvision model's own classifier for ``spec.classes``."""
    import torch

    if torch.get_default_device().type == "meta":
        with torch.device("cpu"):
            return _parts(torchvision_model(spec.model, spec.classes, is_small(spec.input)))[1].to("meta")
    return _parts(torchvision_model(spec.model, spec.classes, is_small(spec.input)))[1]


def _check(spec: "StudentSpec") -> str | None:
    if spec.model not in REFERENCE_MODELS:
        return f"family 'reference' needs model, one of {', '.join(REFERENCE_MODELS)} (got {spec.model!r})"
    expected = reference_stages(spec.model, spec.input)
    if [s.to_dict() for s in spec.stages] != expected:
        return f"the stages of reference {spec.model} at {'x'.join(map(str, spec.input))} are {expected}"
    if spec.bottleneck or spec.expansion != 1 or spec.se or spec.act != "relu" or spec.stem_stride != 1:
        return "family 'reference' takes no bottleneck/expansion/se/act/stem_stride options"
    return None


register_family(Family(
    name="reference", plan=_plan, make=_make, blocks_for_depth=lambda _depth, _variant: None,
    check=_check, head=reference_head, spec_keys=("model",),
    help="torchvision's small models as students (never enumerated; compress --reference)"))
