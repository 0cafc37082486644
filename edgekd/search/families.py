"""The student-family registry (in the spirit of timm's ``register_model``).

A family is one :class:`Family` entry: its name, how a :class:`~edgekd.search.space.StudentSpec`
becomes a list of :class:`Block` (``plan``), how one block becomes an ``nn.Module``
(``make``), its enumeration grid (``blocks_for_depth`` and ``variants``) and the checks its
spec options must pass. Everything else is generic and works for any registered family:

* **hint taps**: each :class:`Block` says how many main-path conv layers it holds (``convs``);
  the spec's depth and FitNets' guided layer (the block in the middle of the network) follow;
* **cost hooks**: a block's ``key`` is the signature :mod:`edgekd.search.cost` caches its MACs and
  layer table under; a module that costs time but is not a conv, linear or pool declares a
  ``cost_kind`` attribute (see :mod:`edgekd.search.blocks`);
* **enumeration**: :func:`edgekd.search.grid.enumerate_specs` walks depths, stage splits, widths,
  kernels, stem strides and bottlenecks, and asks the family how many blocks a depth has and
  which option variants (expansion, squeeze-excitation, activation) to try.

Adding a family = one :func:`register_family` call (plus its modules and one test); see
``tests/test_families.py`` for a toy family registered at test time and searched by the CLI.

The built-in families (module docstrings of :mod:`edgekd.search.blocks` cite the papers):

========  =====================================================  ==========================
family    ``features``                                           depth (main-path convs)
========  =====================================================  ==========================
plain     conv-BN-ReLU blocks; the first is the stem             sum(stage depths)
residual  stem, then basic blocks                                1 + 2 * blocks
dwsep     stem, then depthwise-separable blocks                  1 + 2 * blocks
mbconv    stem, then inverted-residual blocks (expansion e)      1 + 3 * blocks (2 if e=1)
repvgg    stem, then RepVGG blocks (one fused kxk conv deployed)  1 + blocks
========  =====================================================  ==========================

The stem is one conv-BN-act of stride ``spec.stem_stride`` (``stem = "conv"``, MobileNet's), or
that conv followed by a 3x3 stride-2 max-pool (``stem = "pool"``, ResNet's; its :class:`Block`
has the stride of both). In ``plain`` students the stem is the first conv of the first stage.

Which families a search takes when none is named: below 64 px the ``default`` ones (plain,
residual); from 64 px on, those whose ``devices`` name the profile's device class
(:func:`default_families`): dense 3x3 families (plain, residual, repvgg) on GPUs and TensorRT,
where a 3x3 conv runs on tensor cores near peak and a depthwise conv does not; the depthwise
families (dwsep, mbconv) on CPUs, where their few MACs are what costs time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

from edgekd.core.errors import EdgekdError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from edgekd.search.space import SpaceConfig, StudentSpec


@dataclass(frozen=True)
class Block:
    """One block of ``features``: a family-specific ``kind`` with its channels, kernel, stride,
    the number of main-path conv layers it holds (``convs``) and extra ``options``."""

    kind: str
    cin: int
    cout: int
    kernel: int
    stride: int
    convs: int = 1
    options: tuple[tuple[str, Any], ...] = ()

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)

    def key(self, h: int, w: int) -> str:
        """The cost-cache signature of this block on an ``h`` x ``w`` input."""
        extra = "".join(f":{k}={v}" for k, v in self.options)
        return f"{self.kind}:{self.cin}:{self.cout}:{self.kernel}:{self.stride}:{h}:{w}{extra}"


def _no_variants(_config: "SpaceConfig") -> Iterable[dict[str, Any]]:
    return ({},)


def _no_check(_spec: "StudentSpec") -> str | None:
    return None


@dataclass(frozen=True)
class Family:
    """A registered student family (see the module docstring).

    ``plan(spec)``: the blocks of ``features``; ``make(block)``: one block as an ``nn.Module``;
    ``blocks_for_depth(depth, variant)``: how many blocks (stem excluded) a student of
    ``depth`` main-path conv layers has, or None when no such student exists;
    ``variants(config)``: the extra spec fields to enumerate (dicts of StudentSpec keyword
    arguments); ``check(spec)``: a message when the spec's options do not fit the family;
    ``head(spec)``: the classifier after the global pool, for families that bring their own.
    ``onnx_ops(variant)``: the ONNX operators a student of that variant exports as (edgekd's
    export: BatchNorm folded, opset 17), so the search can skip a family the profile's TensorRT
    cannot parse (None: not declared; such a family is searched everywhere and only the
    bundle's parser check sees its operators). ``calibrated``: ``edgekd calibrate``'s student
    set spans it (a family whose deployed blocks are another's kernels, RepVGG's fused convs,
    needs no students of its own). ``spec_keys``: the StudentSpec keys only this family reads
    (the reference family's ``model``); a spec of another family that sets one is refused.
    """

    name: str
    plan: Callable[["StudentSpec"], list[Block]]
    make: Callable[[Block], "nn.Module"]
    blocks_for_depth: Callable[[int, dict[str, Any]], int | None]
    variants: Callable[["SpaceConfig"], Iterable[dict[str, Any]]] = _no_variants
    check: Callable[["StudentSpec"], str | None] = _no_check
    default: bool = False
    help: str = ""
    #: device classes ("gpu", "cpu") whose searches take this family by default from 64 px on
    devices: tuple[str, ...] = ()
    #: the module after the global pool (None: the linear head, with the optional bottleneck)
    head: Callable[["StudentSpec"], "nn.Module"] | None = None
    onnx_ops: Callable[[dict[str, Any]], frozenset[str]] | None = None
    calibrated: bool = False
    spec_keys: tuple[str, ...] = ()


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family, *, replace: bool = False) -> Family:
    """Add ``family`` to the registry (``replace=True`` to overwrite a name already taken)."""
    if family.name in _FAMILIES and not replace:
        raise ValueError(f"student family {family.name!r} is already registered")
    if not family.name or "," in family.name:
        raise ValueError(f"bad family name {family.name!r}")
    _FAMILIES[family.name] = family
    return family


def unregister_family(name: str) -> None:
    """Remove a family (tests register toy families and clean up after themselves)."""
    _FAMILIES.pop(name, None)


def family_names() -> tuple[str, ...]:
    """Every registered family, in registration order."""
    return tuple(_FAMILIES)


def default_families(device: str | None = None) -> tuple[str, ...]:
    """The families searched when none is named: the ``default`` ones, or with ``device``
    ("gpu" or "cpu", for inputs of 64 px and more) those that name it in ``devices``."""
    if device is None:
        return tuple(name for name, f in _FAMILIES.items() if f.default)
    return tuple(name for name, f in _FAMILIES.items() if device in f.devices)


def calibrated_families() -> tuple[str, ...]:
    """The families ``edgekd calibrate`` measures students of (:attr:`Family.calibrated`)."""
    return tuple(name for name, f in _FAMILIES.items() if f.calibrated)


def families_reading(key: str) -> tuple[str, ...]:
    """The families that read the StudentSpec key ``key`` (:attr:`Family.spec_keys`)."""
    return tuple(name for name, f in _FAMILIES.items() if key in f.spec_keys)


def get_family(name: str) -> Family:
    family = _FAMILIES.get(name)
    if family is None:
        raise EdgekdError(f"unknown student family {name!r}: use one or more of "
                          f"{', '.join(_FAMILIES)}")
    return family


def stem_block(spec: "StudentSpec", cout: int, stride: int, act: str = "relu") -> Block:
    """The stem: conv-BN-act of ``stride`` (kind ``conv``), or with ``spec.stem == "pool"``
    followed by a 3x3 stride-2 max-pool (kind ``convpool``, stride ``2 * stride``)."""
    options = (("act", act),) if act != "relu" else ()
    if spec.stem == "pool":
        return Block("convpool", spec.input[0], cout, spec.kernel, 2 * stride, 1, options)
    return Block("conv", spec.input[0], cout, spec.kernel, stride, 1, options)


def stem_and_stages(spec: "StudentSpec", kind: str, convs: int,
                    options: tuple[tuple[str, Any], ...] = ()) -> list[Block]:
    """A stem (:func:`stem_block`, stride ``spec.stem_stride``, to the first stage's width),
    then ``stage.depth`` blocks of ``kind`` per stage, the first of each with the stage's stride."""
    plan = [stem_block(spec, spec.stages[0].width, spec.stem_stride, dict(options).get("act", "relu"))]
    channels = spec.stages[0].width
    for stage in spec.stages:
        for j in range(stage.depth):
            plan.append(Block(kind, channels, stage.width, spec.kernel,
                              stage.stride if j == 0 else 1, convs, options))
            channels = stage.width
    return plan


#: what every student's head exports as: global average pool, flatten (Reshape or Flatten),
#: the optional bias-free bottleneck (MatMul) and the classifier (Gemm)
HEAD_OPS = frozenset({"GlobalAveragePool", "Reshape", "Flatten", "MatMul", "Gemm"})
#: an activation's ONNX operators: ReLU6 exports as Clip(0, 6), hard-swish as x * clip(x + 3) * 1/6
ACT_OPS = {"relu": ("Relu",), "relu6": ("Clip",), "hswish": ("Add", "Clip", "Mul")}


def _ops(*ops: str) -> Callable[[dict[str, Any]], frozenset[str]]:
    """``onnx_ops`` of a family: ``ops``, the head's, and the variant's activation (the stem's
    ReLU included)."""
    return lambda variant: HEAD_OPS | {"Relu", *ACT_OPS[variant.get("act", "relu")], *ops}


def _mbconv_ops(variant: dict[str, Any]) -> frozenset[str]:
    """Squeeze-excitation adds a pool, a gate (Sigmoid, its inner ReLU) and the scaling Mul."""
    se = {"GlobalAveragePool", "Relu", "Sigmoid", "Mul"} if variant.get("se") else set()
    return _ops("Conv", "Add", *se)(variant)


def _make_builtin(block: Block) -> "nn.Module":
    from edgekd.search import blocks

    act = block.option("act", "relu")
    if block.kind == "conv":
        return blocks.conv_bn_act(block.cin, block.cout, block.kernel, block.stride, act)
    if block.kind == "convpool":
        return blocks.conv_pool_stem(block.cin, block.cout, block.kernel, block.stride // 2, act)
    if block.kind == "basic":
        return blocks.BasicBlock(block.cin, block.cout, block.kernel, block.stride)
    raise ValueError(f"unknown block kind {block.kind!r}")


# ---------------------------------------------------------------------------- plain, residual
def _plain_plan(spec: "StudentSpec") -> list[Block]:
    plan, channels = [], spec.input[0]
    for i, stage in enumerate(spec.stages):
        for j in range(stage.depth):
            stride = 1 if j else max(stage.stride, spec.stem_stride if i == 0 else 1)
            plan.append(stem_block(spec, stage.width, stride) if i == j == 0 else
                        Block("conv", channels, stage.width, spec.kernel, stride))
            channels = stage.width
    return plan


def _relu_only(spec: "StudentSpec") -> str | None:
    if spec.act != "relu" or spec.expansion != 1 or spec.se:
        return (f"family {spec.family!r} takes no act/expansion/se options "
                "(those are for dwsep and mbconv)")
    if spec.family == "plain" and spec.stem_stride == 2 and spec.stages[0].stride == 2:
        return "a plain student's stem is its first conv: give stem_stride 2 or a first-stage stride 2, not both"
    return None


register_family(Family(
    name="plain", plan=_plain_plan, make=_make_builtin,
    blocks_for_depth=lambda depth, _variant: depth, check=_relu_only, default=True,
    devices=("gpu",), help="conv-BN-ReLU blocks (FitNets' students)", onnx_ops=_ops("Conv"),
    calibrated=True))
register_family(Family(
    name="residual", plan=lambda spec: stem_and_stages(spec, "basic", 2), make=_make_builtin,
    blocks_for_depth=lambda depth, _variant: (depth - 1) // 2 if depth % 2 else None,
    check=_relu_only, default=True, devices=("gpu",),
    help="stem + basic blocks (two convs and a shortcut, He et al. 2016)",
    onnx_ops=_ops("Conv", "Add"), calibrated=True))


# ---------------------------------------------------------------------------- dwsep, mbconv
def _make_mobile(block: Block) -> "nn.Module":
    from edgekd.search import blocks

    act = block.option("act", "relu")
    if block.kind == "dwsep":
        return blocks.DepthwiseSeparable(block.cin, block.cout, block.kernel, block.stride, act)
    if block.kind == "mbconv":
        return blocks.MBConv(block.cin, block.cout, block.kernel, block.stride,
                             block.option("expansion", 1), act, bool(block.option("se", False)))
    return _make_builtin(block)


def _dwsep_plan(spec: "StudentSpec") -> list[Block]:
    return stem_and_stages(spec, "dwsep", 2, (("act", spec.act),))


def _mbconv_plan(spec: "StudentSpec") -> list[Block]:
    options = (("act", spec.act), ("expansion", spec.expansion), ("se", spec.se))
    return stem_and_stages(spec, "mbconv", 3 if spec.expansion > 1 else 2, options)


def _dwsep_check(spec: "StudentSpec") -> str | None:
    if spec.expansion != 1 or spec.se:
        return "family 'dwsep' takes no expansion or se (those are mbconv options)"
    return None


register_family(Family(
    name="dwsep", plan=_dwsep_plan, make=_make_mobile,
    blocks_for_depth=lambda depth, _variant: (depth - 1) // 2 if depth % 2 else None,
    variants=lambda config: ({"act": act} for act in config.acts), check=_dwsep_check,
    devices=("cpu",), help="stem + depthwise-separable blocks (depthwise kxk + pointwise 1x1, MobileNet)",
    onnx_ops=_ops("Conv"), calibrated=True))
register_family(Family(
    name="mbconv", plan=_mbconv_plan, make=_make_mobile,
    blocks_for_depth=lambda depth, variant: (
        (depth - 1) // 3 if (depth - 1) % 3 == 0 else None) if variant.get("expansion", 1) > 1
    else ((depth - 1) // 2 if depth % 2 else None),
    variants=lambda config: ({"expansion": e, "se": se, "act": act} for e in config.expansions
                             for se in config.se for act in config.acts),
    devices=("cpu",), help="stem + inverted residual blocks (expand 1x1, depthwise kxk, optional SE, project "
         "1x1; MobileNetV2)", onnx_ops=_mbconv_ops, calibrated=True))


# ---------------------------------------------------------------------------- repvgg
def _make_repvgg(block: Block) -> "nn.Module":
    from edgekd.search import blocks

    if block.kind == "repvgg":
        return blocks.RepVGGBlock(block.cin, block.cout, block.kernel, block.stride)
    return _make_builtin(block)


register_family(Family(
    name="repvgg", plan=lambda spec: stem_and_stages(spec, "repvgg", 1), make=_make_repvgg,
    blocks_for_depth=lambda depth, _variant: depth - 1 if depth > 1 else None,
    check=_relu_only, devices=("gpu",),
    help="stem + RepVGG blocks (kxk, 1x1 and identity branches in training, one fused kxk conv "
         "deployed; Ding et al. 2021)",
    onnx_ops=_ops("Conv")))  # exported fused: one kxk conv (with bias) and a ReLU per block
