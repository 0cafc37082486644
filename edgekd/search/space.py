"""The student search space: :class:`StudentSpec` (a JSON-round-tripping dataclass),
:func:`build` (spec -> ``nn.Module``) and :func:`enumerate_specs`.

Two families of thin, deep students (FitNets, Romero et al. 2015: at a fixed multiply budget,
deeper and thinner students win once hint training makes them trainable, so depth is the
main axis of the space):

* ``plain``: stages of conv-BN-ReLU blocks, like FitNets' students. ``Stage.depth`` is the
  number of conv-BN-ReLU blocks of the stage; the first block of the first stage is the stem.
* ``residual``: a conv-BN-ReLU stem, then stages of basic blocks (two 3x3 convs and an
  identity or 1x1-projection shortcut, He et al. 2016). ``Stage.depth`` is the number of basic
  blocks of the stage.

The stride of a stage is applied by its first block (this is where the network downsamples).
After the features come global average pooling, an optional linear low-rank bottleneck
(Ba & Caruana 2014: ``W ~ U V`` with ``U`` of rank ``r`` speeds up training of a mimic net)
and the linear ``head``.

:attr:`StudentSpec.depth` always counts conv layers on the main path (the 1x1 projection
shortcuts of residual blocks are not counted, as in the ResNet convention):
``plain: sum(stage.depth)``, ``residual: 1 + 2 * sum(stage.depth)``.

Module names inside ``build(spec)``: ``features.{i}`` is the ``i``-th block (the stem is
``features.0``), then ``pool``, ``bottleneck`` (``nn.Identity`` when absent) and ``head``.
:attr:`StudentSpec.guided_layer` names the block at the middle of the network (FitNets puts
the guided layer in the middle: deeper hints over-regularize the student), so
``torchvision.models.feature_extraction.create_feature_extractor(model, [spec.guided_layer])``
taps it. The network is traceable by ``torch.fx`` and exportable to ONNX.

This module imports torch lazily (only :func:`build` needs it), so specs can be read, written
and enumerated without torch.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from edgekd.core.errors import EdgekdError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

FAMILIES: tuple[str, ...] = ("plain", "residual")
SPEC_KEYS = frozenset({"family", "input", "classes", "stages", "kernel", "bottleneck"})
STAGE_KEYS = frozenset({"width", "depth", "stride"})
ID_LENGTH = 12


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise EdgekdError(f"student spec: {what} must be a positive integer, got {value!r}: "
                          "fix the spec")
    return value


@dataclass(frozen=True)
class Stage:
    """One stage: ``depth`` blocks of ``width`` channels; the first block has ``stride``."""

    width: int
    depth: int
    stride: int = 1

    def __post_init__(self) -> None:
        _positive_int(self.width, "stage width")
        _positive_int(self.depth, "stage depth")
        if self.stride not in (1, 2):
            raise EdgekdError(f"student spec: stage stride must be 1 or 2, got {self.stride!r}: "
                              "fix the spec")

    def to_dict(self) -> dict[str, int]:
        return {"width": self.width, "depth": self.depth, "stride": self.stride}


@dataclass(frozen=True)
class StudentSpec:
    """A student architecture, small enough to write as JSON.

    ``input`` is (C, H, W); ``stages`` run from the input to the head; ``kernel`` is the conv
    kernel size (odd); ``bottleneck`` is the rank of the optional linear low-rank layer
    before the head (None: no bottleneck).
    """

    family: str
    input: tuple[int, int, int]
    classes: int
    stages: tuple[Stage, ...]
    kernel: int = 3
    bottleneck: int | None = None
    _id: str = field(default="", init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise EdgekdError(f"student spec: unknown family {self.family!r}: "
                              f"use one of {', '.join(FAMILIES)}")
        shape = tuple(self.input)
        if len(shape) != 3:
            raise EdgekdError(f"student spec: input must be (C, H, W), got {self.input!r}: "
                              "give three positive integers, e.g. [1, 28, 28]")
        for value in shape:
            _positive_int(value, "input size")
        object.__setattr__(self, "input", shape)
        _positive_int(self.classes, "classes")
        stages = tuple(s if isinstance(s, Stage) else Stage(**s) for s in self.stages)
        if not stages:
            raise EdgekdError("student spec: stages is empty: give at least one stage")
        object.__setattr__(self, "stages", stages)
        _positive_int(self.kernel, "kernel")
        if self.kernel % 2 == 0:
            raise EdgekdError(f"student spec: kernel must be odd, got {self.kernel}: "
                              "use 1, 3, 5 or 7")
        if self.bottleneck is not None:
            _positive_int(self.bottleneck, "bottleneck")
        object.__setattr__(self, "_id", hashlib.sha256(self.to_json().encode()).hexdigest()[:ID_LENGTH])

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "input": list(self.input),
            "classes": self.classes,
            "stages": [s.to_dict() for s in self.stages],
            "kernel": self.kernel,
            "bottleneck": self.bottleneck,
        }

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces (the id hashes exactly this text)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StudentSpec":
        if not isinstance(d, dict):
            raise EdgekdError(f"student spec: expected a JSON object, got {type(d).__name__}: "
                              "fix the spec")
        data = dict(d)
        # DESIGN.md's example carries a redundant "residual" flag; accept it when consistent.
        if "residual" in data:
            flag = data.pop("residual")
            if bool(flag) != (data.get("family") == "residual"):
                raise EdgekdError(f"student spec: 'residual': {flag} contradicts family "
                                  f"{data.get('family')!r}: drop the 'residual' key")
        unknown = sorted(set(data) - SPEC_KEYS)
        if unknown:
            raise EdgekdError(f"student spec: unknown key(s) {', '.join(unknown)}: "
                              f"use only {', '.join(sorted(SPEC_KEYS))}")
        missing = sorted({"family", "input", "classes", "stages"} - set(data))
        if missing:
            raise EdgekdError(f"student spec: missing key(s) {', '.join(missing)}: add them")
        stages = data["stages"]
        if not isinstance(stages, (list, tuple)):
            raise EdgekdError("student spec: stages must be a list of {width, depth, stride}: "
                              "fix the spec")
        parsed = []
        for stage in stages:
            if not isinstance(stage, dict) or set(stage) - STAGE_KEYS or not {"width", "depth"} <= set(stage):
                raise EdgekdError(f"student spec: bad stage {stage!r}: each stage is "
                                  "{\"width\": W, \"depth\": D, \"stride\": 1 or 2}")
            parsed.append(Stage(**stage))
        inp = data["input"]
        if not isinstance(inp, (list, tuple)):
            raise EdgekdError(f"student spec: input must be [C, H, W], got {inp!r}: fix the spec")
        return cls(family=data["family"], input=tuple(inp), classes=data["classes"],
                   stages=tuple(parsed), kernel=data.get("kernel", 3),
                   bottleneck=data.get("bottleneck"))

    @classmethod
    def from_json(cls, s: str) -> "StudentSpec":
        try:
            d = json.loads(s)
        except json.JSONDecodeError as error:
            raise EdgekdError(f"student spec: not valid JSON ({error.msg} at char {error.pos}): "
                              "fix the spec file") from None
        return cls.from_dict(d)

    # ------------------------------------------------------------------ derived
    @property
    def id(self) -> str:
        """Short stable id: the first 12 hex digits of sha256(canonical JSON)."""
        return self._id

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(s.width for s in self.stages)

    @property
    def blocks(self) -> int:
        """Number of blocks in ``features`` (stem included)."""
        n = sum(s.depth for s in self.stages)
        return n + 1 if self.family == "residual" else n

    @property
    def depth(self) -> int:
        """Conv layers on the main path (projection shortcuts are not counted)."""
        n = sum(s.depth for s in self.stages)
        return 1 + 2 * n if self.family == "residual" else n

    def convs_through(self, index: int) -> int:
        """Main-path conv layers from the input up to and including block ``features.{index}``."""
        return 1 + 2 * index if self.family == "residual" else index + 1

    @property
    def guided_index(self) -> int:
        """Index of the first block whose output has seen at least half of the conv layers."""
        half = self.depth / 2
        return next(i for i in range(self.blocks) if self.convs_through(i) >= half)

    @property
    def guided_layer(self) -> str:
        """FitNets' guided layer: the block in the middle of the network, e.g. ``features.3``."""
        return f"features.{self.guided_index}"

    def block_plan(self) -> list[tuple[str, int, int, int]]:
        """Blocks of ``features`` as ``(kind, in_channels, out_channels, stride)``,
        kind in {"conv", "basic"}; the stem is a "conv" block."""
        plan: list[tuple[str, int, int, int]] = []
        channels = self.input[0]
        if self.family == "residual":
            plan.append(("conv", channels, self.stages[0].width, 1))
            channels = self.stages[0].width
        kind = "basic" if self.family == "residual" else "conv"
        for stage in self.stages:
            for j in range(stage.depth):
                plan.append((kind, channels, stage.width, stage.stride if j == 0 else 1))
                channels = stage.width
        return plan

    def feature_shapes(self) -> list[tuple[int, int, int]]:
        """Output shape (C, H, W) of each block ``features.{i}`` (batch excluded)."""
        _, h, w = self.input
        pad = self.kernel // 2
        shapes = []
        for _kind, _cin, cout, stride in self.block_plan():
            h = (h + 2 * pad - self.kernel) // stride + 1
            w = (w + 2 * pad - self.kernel) // stride + 1
            shapes.append((cout, h, w))
        return shapes

    @property
    def guided_shape(self) -> tuple[int, int, int]:
        """Output shape (C, H, W) of the guided layer."""
        return self.feature_shapes()[self.guided_index]

    def describe(self) -> str:
        """Short human text, e.g. ``plain d6 16x3/s1-32x3/s2``."""
        stages = "-".join(f"{s.width}x{s.depth}/s{s.stride}" for s in self.stages)
        extra = f" k{self.kernel}" if self.kernel != 3 else ""
        extra += f" r{self.bottleneck}" if self.bottleneck else ""
        return f"{self.family} d{self.depth} {stages}{extra}"


# ---------------------------------------------------------------------------- build
def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int) -> "nn.Sequential":
    from collections import OrderedDict

    from torch import nn

    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        bn=nn.BatchNorm2d(cout),
        relu=nn.ReLU(),
    ))


def _module_classes() -> tuple[type, type]:
    """Define the torch module classes on first use (keeps ``import edgekd.search.space`` light)."""
    global _BASIC_BLOCK, _STUDENT_NET
    if _BASIC_BLOCK is not None:
        return _BASIC_BLOCK, _STUDENT_NET
    import torch
    from torch import nn

    class Add(nn.Module):
        """``a + b`` as a module, so the residual sum shows up as a layer in cost tables."""

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a + b

    class BasicBlock(nn.Module):
        """He et al. 2016 basic block: conv-BN-ReLU-conv-BN + shortcut, then ReLU."""

        def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
            super().__init__()
            pad = kernel // 2
            self.conv1 = nn.Conv2d(cin, cout, kernel, stride=stride, padding=pad, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu1 = nn.ReLU()
            self.conv2 = nn.Conv2d(cout, cout, kernel, stride=1, padding=pad, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            if stride != 1 or cin != cout:
                self.shortcut: nn.Module = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
            else:
                self.shortcut = nn.Identity()
            self.add = Add()
            self.relu = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
            return self.relu(self.add(out, self.shortcut(x)))

    class StudentNet(nn.Module):
        """``features`` (blocks) -> global average ``pool`` -> ``bottleneck`` -> ``head``."""

        def __init__(self, spec: StudentSpec) -> None:
            super().__init__()
            blocks: list[nn.Module] = []
            for kind, cin, cout, stride in spec.block_plan():
                if kind == "basic":
                    blocks.append(BasicBlock(cin, cout, spec.kernel, stride))
                else:
                    blocks.append(_conv_bn_relu(cin, cout, spec.kernel, stride))
            self.features = nn.Sequential(*blocks)
            self.pool, self.bottleneck, self.head = _head_modules(spec)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.pool(self.features(x))
            return self.head(self.bottleneck(torch.flatten(x, 1)))

    _BASIC_BLOCK, _STUDENT_NET = BasicBlock, StudentNet
    return BasicBlock, StudentNet


def _head_modules(spec: StudentSpec) -> tuple["nn.Module", "nn.Module", "nn.Module"]:
    """Global average pool, the low-rank bottleneck (or Identity) and the linear head."""
    from torch import nn

    width = spec.stages[-1].width
    bottleneck: nn.Module = nn.Identity()
    if spec.bottleneck:
        bottleneck = nn.Linear(width, spec.bottleneck, bias=False)
        width = spec.bottleneck
    return nn.AdaptiveAvgPool2d(1), bottleneck, nn.Linear(width, spec.classes)


def build_head(spec: StudentSpec) -> "nn.Sequential":
    """Everything after ``features`` as one module with the same names (``pool``,
    ``bottleneck``, ``head``) as in :func:`build`; :mod:`edgekd.search.cost` costs it on its own."""
    from collections import OrderedDict

    from torch import nn

    pool, bottleneck, head = _head_modules(spec)
    return nn.Sequential(OrderedDict(pool=pool, flatten=nn.Flatten(), bottleneck=bottleneck,
                                     head=head))


_BASIC_BLOCK: Any = None
_STUDENT_NET: Any = None


def build_block(kind: str, cin: int, cout: int, kernel: int, stride: int) -> "nn.Module":
    """One block of ``features``: kind "conv" (conv-BN-ReLU) or "basic" (a basic block)."""
    if kind == "basic":
        return _module_classes()[0](cin, cout, kernel, stride)
    if kind == "conv":
        return _conv_bn_relu(cin, cout, kernel, stride)
    raise ValueError(f"unknown block kind {kind!r}")


def build(spec: StudentSpec) -> "nn.Module":
    """Build the student as an ``nn.Module`` (train mode, fresh weights, current device)."""
    return _module_classes()[1](spec)


# ---------------------------------------------------------------------------- enumeration
@dataclass(frozen=True)
class SpaceConfig:
    """The grid :func:`enumerate_specs` walks.

    Depth runs over ``min_depth..max_depth`` conv layers; a depth is split into
    1..``max_stages`` stages in every possible way (these splits are the downsampling
    positions: each stage after the first starts with a stride-2 block); stage widths follow
    ``base * growth**i`` (rounded to an even number) for each base width and growth factor.
    A stage is only added while the feature map stays at least ``min_resolution`` pixels.
    Splits where one stage is more than ``max_stage_ratio`` times deeper than another are
    skipped (they add thousands of near-duplicates of lopsided students).
    """

    families: tuple[str, ...] = FAMILIES
    min_depth: int = 3
    max_depth: int = 19
    max_stages: int = 3
    base_widths: tuple[int, ...] = (4, 6, 8, 12, 16, 24, 32, 48)
    growths: tuple[float, ...] = (1.0, 1.5, 2.0)
    kernels: tuple[int, ...] = (3,)
    bottlenecks: tuple[int | None, ...] = (None,)
    min_resolution: int = 3
    max_stage_ratio: float = 3.0

    def __post_init__(self) -> None:
        bad = [f for f in self.families if f not in FAMILIES]
        if bad or not self.families:
            raise EdgekdError(f"unknown student family {', '.join(bad) or '(none)'}: "
                              f"use one or more of {', '.join(FAMILIES)}")
        if not 1 <= self.min_depth <= self.max_depth:
            raise EdgekdError(f"depth range {self.min_depth}..{self.max_depth} is empty: "
                              "give 1 <= min_depth <= max_depth")


def _compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    """All ways to write ``total`` as an ordered sum of ``parts`` positive integers."""
    for cuts in itertools.combinations(range(1, total), parts - 1):
        bounds = (0, *cuts, total)
        yield tuple(bounds[i + 1] - bounds[i] for i in range(parts))


def _width_schedules(stages: int, config: SpaceConfig) -> list[tuple[int, ...]]:
    schedules = {
        tuple(max(2, 2 * round(base * growth**i / 2)) for i in range(stages))
        for base in config.base_widths
        for growth in config.growths
    }
    return sorted(schedules)


def _max_stages(input_shape: tuple[int, int, int], config: SpaceConfig) -> int:
    size = min(input_shape[1:])
    stages = 1
    while stages < config.max_stages and math.ceil(size / 2) >= config.min_resolution:
        size = math.ceil(size / 2)
        stages += 1
    return stages


def enumerate_specs(input_shape: Iterable[int], classes: int,
                    config: SpaceConfig | None = None) -> list[StudentSpec]:
    """Every student of the grid described by ``config``, in a deterministic order.

    With the defaults and a 28x28 or 32x32 input this yields about ten thousand specs
    (depth 3..19) in well under a second; :mod:`edgekd.search.search` filters them by budget.
    """
    config = config or SpaceConfig()
    shape = tuple(int(v) for v in input_shape)
    max_stages = _max_stages(shape, config)  # type: ignore[arg-type]
    specs: dict[str, StudentSpec] = {}
    for family in config.families:
        for depth in range(config.min_depth, config.max_depth + 1):
            if family == "residual":
                if depth % 2 == 0:
                    continue  # residual depth is 1 + 2 * blocks: always odd
                blocks = (depth - 1) // 2
            else:
                blocks = depth
            for n_stages in range(1, min(max_stages, blocks) + 1):
                strides = (1,) + (2,) * (n_stages - 1)
                for split in _compositions(blocks, n_stages):
                    if max(split) > config.max_stage_ratio * min(split):
                        continue
                    for widths in _width_schedules(n_stages, config):
                        stages = tuple(Stage(w, d, s) for w, d, s in zip(widths, split, strides))
                        for kernel in config.kernels:
                            for bottleneck in config.bottlenecks:
                                spec = StudentSpec(family, shape, classes, stages, kernel,  # type: ignore[arg-type]
                                                   bottleneck)
                                specs.setdefault(spec.id, spec)
    return list(specs.values())
