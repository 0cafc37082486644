"""The student search space: :class:`StudentSpec` (a JSON-round-tripping dataclass),
:class:`SpaceConfig` (the grid) and :func:`build` (spec -> ``nn.Module``); walking the grid is
:func:`edgekd.search.grid.enumerate_specs`.

Students are thin and deep (FitNets, Romero et al. 2015: at a fixed multiply budget,
deeper and thinner students win once hint training makes them trainable, so depth is the
main axis of the space). What a family's blocks are, how many conv layers they hold and how a
family is enumerated is defined in the family registry, :mod:`edgekd.search.families` (``plain``
conv-BN-ReLU students, ``residual`` basic-block students, and any family registered there);
this module is generic over families. ``Stage.depth`` is the number of blocks of the stage.

The stride of a stage is applied by its first block (this is where the network downsamples).
After the features come global average pooling, an optional linear low-rank bottleneck
(Ba & Caruana 2014: ``W ~ U V`` with ``U`` of rank ``r`` speeds up training of a mimic net)
and the linear ``head``.

:attr:`StudentSpec.depth` always counts conv layers on the main path (the 1x1 projection
shortcuts of residual blocks are not counted, as in the ResNet convention), as each family's
blocks declare them: ``plain: sum(stage.depth)``, ``residual: 1 + 2 * sum(stage.depth)``.

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
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import loads_json
from edgekd.search.families import Block, families_reading, family_names, get_family

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

SPEC_KEYS = frozenset({"family", "input", "classes", "stages", "kernel", "bottleneck",
                       "stem_stride", "stem", "expansion", "se", "act", "model"})
#: Spec fields written to JSON only when they differ from these defaults, so the ids of specs
#: that do not use them (every plain and residual student before they existed) stay the same.
OPTIONAL_DEFAULTS: dict[str, Any] = {"stem_stride": 1, "stem": "conv", "expansion": 1, "se": False,
                                     "act": "relu", "model": None}
ACTIVATIONS: tuple[str, ...] = ("relu", "relu6", "hswish")
#: ``conv``: one conv-BN-act of stride ``stem_stride``; ``pool``: that conv, then a 3x3 stride-2 max-pool
STEMS: tuple[str, ...] = ("conv", "pool")
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
    before the head (None: no bottleneck). ``stem_stride`` is the stride of the stem (2
    halves a 32x32 input before the first stage) and ``stem`` (``conv``, or ``pool``: ResNet's
    max-pool after the stem conv, another halving); ``expansion`` (1..6, mbconv), ``se``
    (squeeze-excitation, mbconv) and ``act`` (relu | relu6 | hswish, dwsep and mbconv) are
    options of the families that use them; the family's ``check`` refuses the others.
    """

    family: str
    input: tuple[int, int, int]
    classes: int
    stages: tuple[Stage, ...]
    kernel: int = 3
    bottleneck: int | None = None
    stem_stride: int = 1
    stem: str = "conv"
    expansion: int = 1
    se: bool = False
    act: str = "relu"
    model: str | None = None  # the torchvision model of a reference student (edgekd.search.reference)
    _id: str = field(default="", init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.family not in family_names():
            raise EdgekdError(f"student spec: unknown family {self.family!r}: "
                              f"use one of {', '.join(family_names())}")
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
        self._check_options()
        object.__setattr__(self, "_id", hashlib.sha256(self.to_json().encode()).hexdigest()[:ID_LENGTH])

    def _check_options(self) -> None:
        if self.stem_stride not in (1, 2):
            raise EdgekdError(f"student spec: stem_stride must be 1 or 2, got {self.stem_stride!r}: "
                              "fix the spec")
        if self.stem not in STEMS:
            raise EdgekdError(f"student spec: stem must be one of {', '.join(STEMS)}, got "
                              f"{self.stem!r}: fix the spec")
        if isinstance(self.expansion, bool) or self.expansion not in range(1, 7):
            raise EdgekdError(f"student spec: expansion must be an integer 1..6, got "
                              f"{self.expansion!r}: fix the spec")
        if not isinstance(self.se, bool):
            raise EdgekdError(f"student spec: se must be true or false, got {self.se!r}: fix the spec")
        if self.act not in ACTIVATIONS:
            raise EdgekdError(f"student spec: act must be one of {', '.join(ACTIVATIONS)}, got "
                              f"{self.act!r}: fix the spec")
        if self.model is not None and "model" not in get_family(self.family).spec_keys:
            takers = " or ".join(f"'{name}'" for name in families_reading("model"))
            raise EdgekdError(f"student spec: model {self.model!r} is for family {takers} only: "
                              f"drop it or use family {takers}")
        problem = get_family(self.family).check(self)
        if problem:
            raise EdgekdError(f"student spec: {problem}: fix the spec")

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "family": self.family,
            "input": list(self.input),
            "classes": self.classes,
            "stages": [s.to_dict() for s in self.stages],
            "kernel": self.kernel,
            "bottleneck": self.bottleneck,
        }
        for key, default in OPTIONAL_DEFAULTS.items():
            if getattr(self, key) != default:
                d[key] = getattr(self, key)
        return d

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces (the id hashes exactly this text)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StudentSpec":
        if not isinstance(d, dict):
            raise EdgekdError(f"student spec: expected a JSON object, got {type(d).__name__}: "
                              "fix the spec")
        data = dict(d)
        # a true/false key named after a family ("residual": true, in the spec format's documented
        # example) is redundant: accepted when it agrees with "family"
        for name in sorted(set(data) & set(family_names())):
            flag = data.pop(name)
            if bool(flag) != (data.get("family") == name):
                raise EdgekdError(f"student spec: '{name}': {flag} contradicts family "
                                  f"{data.get('family')!r}: drop the '{name}' key")
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
        options = {key: data[key] for key in OPTIONAL_DEFAULTS if key in data}
        return cls(family=data["family"], input=tuple(inp), classes=data["classes"],
                   stages=tuple(parsed), kernel=data.get("kernel", 3),
                   bottleneck=data.get("bottleneck"), **options)

    @classmethod
    def from_json(cls, s: str) -> "StudentSpec":
        try:
            d = loads_json(s)
        except ValueError as error:
            detail = str(error).removeprefix("invalid JSON: ")
            raise EdgekdError(f"student spec: not valid JSON ({detail}): fix the spec file") from None
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
        return len(self.block_plan())

    @property
    def depth(self) -> int:
        """Conv layers on the main path (projection shortcuts are not counted)."""
        return sum(block.convs for block in self.block_plan())

    def convs_through(self, index: int) -> int:
        """Main-path conv layers from the input up to and including block ``features.{index}``."""
        return sum(block.convs for block in self.block_plan()[:index + 1])

    @property
    def guided_index(self) -> int:
        """Index of the first block whose output has seen at least half of the conv layers."""
        return next((i for i in range(self.blocks) if self.convs_through(i) >= self.depth / 2),
                    self.blocks - 1)  # the last block has seen every conv

    @property
    def guided_layer(self) -> str:
        """FitNets' guided layer: the block in the middle of the network, e.g. ``features.3``."""
        return f"features.{self.guided_index}"

    def block_plan(self) -> list[Block]:
        """The blocks of ``features``, stem first (the family's plan, cached per spec)."""
        plan = self.__dict__.get("_plan")
        if plan is None:
            plan = get_family(self.family).plan(self)
            object.__setattr__(self, "_plan", plan)
        return list(plan)

    def feature_shapes(self) -> list[tuple[int, int, int]]:
        """Output shape (C, H, W) of each block ``features.{i}`` (batch excluded): every conv and
        pool pads "same", so a block of stride s maps a side n to ceil(n / s)."""
        _, h, w = self.input
        shapes = []
        for block in self.block_plan():
            h, w = -(-h // block.stride), -(-w // block.stride)
            shapes.append((block.cout, h, w))
        return shapes

    @property
    def guided_shape(self) -> tuple[int, int, int]:
        """Output shape (C, H, W) of the guided layer."""
        return self.feature_shapes()[self.guided_index]

    def describe(self) -> str:
        """Short human text, e.g. ``plain d6 16x3/s1-32x3/s2``."""
        stages = "-".join(f"{s.width}x{s.depth}/s{s.stride}" for s in self.stages)
        extra = " s2stem" if self.stem_stride == 2 else ""
        extra += " poolstem" if self.stem == "pool" else ""
        extra += f" e{self.expansion}" if self.expansion != 1 else ""
        extra += " se" if self.se else ""
        extra += f" {self.act}" if self.act != "relu" else ""
        extra += f" k{self.kernel}" if self.kernel != 3 else ""
        extra += f" r{self.bottleneck}" if self.bottleneck else ""
        if self.model is not None:
            return f"{self.model} d{self.depth} {stages}"
        return f"{self.family} d{self.depth} {stages}{extra}"


# ---------------------------------------------------------------------------- build
def build_head(spec: StudentSpec) -> "nn.Sequential":
    """Everything after ``features`` as one module with the same names (``pool``,
    ``bottleneck``, ``head``) as in :func:`build`; :mod:`edgekd.search.cost` costs it on its own."""
    from collections import OrderedDict

    from torch import nn

    from edgekd.search.blocks import head_modules

    pool, bottleneck, head = head_modules(spec.stages[-1].width, spec.bottleneck, spec.classes)
    own = get_family(spec.family).head
    return nn.Sequential(OrderedDict(pool=pool, flatten=nn.Flatten(), bottleneck=bottleneck,
                                     head=own(spec) if own is not None else head))


def build_block(family: str, block: Block) -> "nn.Module":
    """One block of ``features`` (a :class:`~edgekd.search.families.Block` of ``family``'s plan)."""
    return get_family(family).make(block)


def build(spec: StudentSpec) -> "nn.Module":
    """Build the student as an ``nn.Module`` (train mode, fresh weights, current device)."""
    from edgekd.search.blocks import StudentNet

    family = get_family(spec.family)
    return StudentNet([family.make(block) for block in spec.block_plan()],
                      spec.stages[-1].width, spec.bottleneck, spec.classes,
                      family.head(spec) if family.head is not None else None)


# ---------------------------------------------------------------------------- enumeration
@dataclass(frozen=True)
class SpaceConfig:
    """The grid :func:`edgekd.search.grid.enumerate_specs` walks.

    Depth runs over ``min_depth..max_depth`` conv layers (None: ``depth_limits``, the first
    below ``scaled_from`` px, the second from it on). ``families`` empty: the default ones
    (:func:`~edgekd.search.families.default_families`; a search picks them for its device).

    **Small inputs** (the shorter side below ``scaled_from``): a depth is split into
    1..``max_stages`` stages in every possible way (these splits are the downsampling
    positions: each stage after the first starts with a stride-2 block); stage widths follow
    ``base * growth**i`` rounded to a multiple of ``width_multiple`` (2 by default; 8 suits
    tensor cores, see the profile's ``search.channel_multiple``) for each of ``base_widths``
    and ``growths``. A stage is only added while the feature map stays at least
    ``min_resolution`` pixels. Splits where one stage is more than ``max_stage_ratio`` times
    deeper than another are skipped (they add thousands of near-duplicates of lopsided
    students). ``stem_strides`` (1 and/or 2) apply here.

    **Scaled inputs** (``scaled_from`` px and more) are laid out as ResNet and MobileNet are:
    a stride-2 stem (``stems``: ``conv``, or ``pool``, ResNet's conv + max-pool), then as many
    stride-2 stages as it takes to bring the map reaching the head to ``final_map`` pixels or
    fewer (5 halvings at 224 px, 4 at 96), depth mostly at low resolution (a few stage-depth
    profiles, :data:`edgekd.search.grid.DEPTH_PROFILES`, instead of every split), widths from
    ``scaled_base_widths`` and ``scaled_growths`` up to ``max_width``: a few thousand students
    per family at any resolution.

    ``kernels`` and ``bottlenecks`` apply to every family; ``expansions``, ``se`` and ``acts``
    to the families that take them (mbconv, dwsep), through each family's ``variants``.
    """

    families: tuple[str, ...] = ()
    min_depth: int = 3
    max_depth: int | None = None
    depth_limits: tuple[int, int] = (19, 40)
    max_stages: int = 3
    base_widths: tuple[int, ...] = (4, 6, 8, 12, 16, 24, 32, 48)
    growths: tuple[float, ...] = (1.0, 1.5, 2.0)
    kernels: tuple[int, ...] = (3,)
    bottlenecks: tuple[int | None, ...] = (None,)
    min_resolution: int = 3
    max_stage_ratio: float = 3.0
    stem_strides: tuple[int, ...] = (1,)
    width_multiple: int | None = None  # None: 2 here, the profile's channel_multiple in search
    expansions: tuple[int, ...] = (2, 4, 6)
    se: tuple[bool, ...] = (False,)
    acts: tuple[str, ...] = ("relu6",)
    scaled_from: int = 64
    final_map: int = 7
    stems: tuple[str, ...] = STEMS
    scaled_base_widths: tuple[int, ...] = (8, 16, 24, 32, 48, 64)
    scaled_growths: tuple[float, ...] = (1.5, 2.0)
    max_width: int = 1280

    def __post_init__(self) -> None:
        bad = [f for f in self.families if f not in family_names()]
        if bad:
            raise EdgekdError(f"unknown student family {', '.join(bad)}: "
                              f"use one or more of {', '.join(family_names())}")
        deepest = self.max_depth if self.max_depth is not None else min(self.depth_limits)
        if not 1 <= self.min_depth <= deepest:
            raise EdgekdError(f"depth range {self.min_depth}..{deepest} is empty: "
                              "give 1 <= min_depth <= max_depth")
        if not self.stem_strides or not set(self.stem_strides) <= {1, 2}:
            raise EdgekdError(f"stem strides {self.stem_strides} must be 1 and/or 2: fix --stem-stride")
        if not self.stems or not set(self.stems) <= set(STEMS):
            raise EdgekdError(f"stems {self.stems} must be among {', '.join(STEMS)}")
        if any(k < 1 or k % 2 == 0 for k in self.kernels) or not self.kernels:
            raise EdgekdError(f"kernels {self.kernels} must be odd positive sizes: use e.g. 3,5")
        if self.width_multiple is not None and self.width_multiple < 1:
            raise EdgekdError(f"width multiple {self.width_multiple} must be >= 1")

    def scaled(self, input_shape: Iterable[int]) -> bool:
        """Whether an input of shape (C, H, W) gets the scaled layout (see the class docstring)."""
        return min(tuple(input_shape)[1:]) >= self.scaled_from

    def depth_limit(self, side: int) -> int:
        """The deepest student enumerated for inputs whose shorter side is ``side`` pixels."""
        if self.max_depth is not None:
            return self.max_depth
        return self.depth_limits[0] if side < self.scaled_from else self.depth_limits[1]


def round_width(width: float, multiple: int) -> int:
    """``width`` rounded to the nearest multiple of ``multiple`` (at least ``multiple``)."""
    return max(multiple, multiple * round(width / multiple))


