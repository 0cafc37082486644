"""Walking the search space: :func:`enumerate_specs` (through :func:`enumerate_grid`) lists the
students of a :class:`~edgekd.search.space.SpaceConfig` for one input shape, in a deterministic
order.

Two layouts (the class docstring of SpaceConfig gives the fields):

* **small inputs** (below ``scaled_from`` px, e.g. 28x28 digits and 32x32 CIFAR): every split
  of a depth into 1..``max_stages`` stages with every width schedule, as FitNets' students;
* **scaled inputs** (64 px and more): the layout of real edge networks. ResNet (He et al.
  2016) and MobileNet (Howard et al. 2017, Sandler et al. 2018) halve a 224-px input five
  times, to a 7x7 map at the head: a stride-2 stem (MobileNet's conv, or ResNet's conv +
  max-pool), then one stride-1 stage and as many stride-2 stages as the rest of the halvings
  need. Depth goes mostly where the map is small: a depth is split by a few stage-depth
  profiles (:data:`DEPTH_PROFILES`) instead of every composition, which keeps the grid at a
  few thousand students per family at any resolution (every composition of 40 layers into 5
  stages would be 10^5 per width schedule).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable, Iterable, Iterator

from edgekd.search.families import default_families, get_family
from edgekd.search.space import SpaceConfig, Stage, StudentSpec, round_width

__all__ = ["DEPTH_PROFILES", "enumerate_grid", "enumerate_specs", "halvings_needed", "split_depth"]

#: Relative stage depths from the highest resolution to the lowest, for ``n`` stages.
DEPTH_PROFILES: dict[str, Callable[[int], list[float]]] = {
    "even": lambda n: [1.0] * n,                                        # ResNet-18/34
    "ramp": lambda n: [float(i + 1) for i in range(n)],                  # more depth as the map shrinks
    "peak": lambda n: [float(i + 1) for i in range(n - 1)] + [n / 2],   # MobileNetV2, EfficientNet
    "late": lambda n: [2.0 ** i for i in range(n - 1)] + [1.0],        # RepVGG: the 1/16 stage dominates
}
#: (stem, stem stride, halvings it makes) of the scaled layout
SCALED_STEMS: dict[str, tuple[int, int]] = {"conv": (2, 1), "pool": (2, 2)}


def halvings_needed(side: int, final_map: int) -> int:
    """The fewest stride-2 steps that bring a side of ``side`` pixels to ``final_map`` or less."""
    steps = 0
    while math.ceil(side / 2 ** steps) > final_map:
        steps += 1
    return steps


def split_depth(blocks: int, weights: list[float]) -> tuple[int, ...] | None:
    """``blocks`` split over ``len(weights)`` stages in proportion to ``weights``, at least one
    block each (largest remainder); None when there are fewer blocks than stages."""
    n = len(weights)
    if blocks < n:
        return None
    spare = blocks - n
    shares = [spare * w / sum(weights) for w in weights]
    split = [1 + int(s) for s in shares]
    order = sorted(range(n), key=lambda i: (-(shares[i] - int(shares[i])), -i))
    for i in order[:blocks - sum(split)]:
        split[i] += 1
    return tuple(split)


def _compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    """All ways to write ``total`` as an ordered sum of ``parts`` positive integers."""
    for cuts in itertools.combinations(range(1, total), parts - 1):
        bounds = (0, *cuts, total)
        yield tuple(bounds[i + 1] - bounds[i] for i in range(parts))


def _width_schedules(stages: int, bases: tuple[int, ...], growths: tuple[float, ...],
                     multiple: int, cap: int | None = None) -> list[tuple[int, ...]]:
    cap = cap or 1 << 30
    return sorted({tuple(round_width(min(base * growth**i, cap), multiple) for i in range(stages))
                   for base in bases for growth in growths})


def _max_stages(input_shape: tuple[int, int, int], config: SpaceConfig, stem_stride: int = 1) -> int:
    size = math.ceil(min(input_shape[1:]) / stem_stride)
    stages = 1
    while stages < config.max_stages and math.ceil(size / 2) >= config.min_resolution:
        size = math.ceil(size / 2)
        stages += 1
    return stages


def _small_layouts(blocks: int, shape: tuple[int, int, int], config: SpaceConfig
                   ) -> Iterator[tuple[dict, tuple[Stage, ...]]]:
    """Every split of ``blocks`` into stages, with every width schedule, per stem stride."""
    multiple = config.width_multiple or 2
    for stem_stride in config.stem_strides:
        max_stages = _max_stages(shape, config, stem_stride)
        for n_stages in range(1, min(max_stages, blocks) + 1):
            strides = (1,) + (2,) * (n_stages - 1)
            for split in _compositions(blocks, n_stages):
                if max(split) > config.max_stage_ratio * min(split):
                    continue
                for widths in _width_schedules(n_stages, config.base_widths, config.growths, multiple):
                    yield ({"stem_stride": stem_stride},
                           tuple(Stage(w, d, s) for w, d, s in zip(widths, split, strides)))


def _scaled_layouts(blocks: int, shape: tuple[int, int, int], config: SpaceConfig
                    ) -> Iterator[tuple[dict, tuple[Stage, ...]]]:
    """The scaled layout (module docstring): per stem, the stages its remaining halvings need,
    the depth split by each profile, every width schedule up to ``max_width``."""
    halvings = halvings_needed(min(shape[1:]), config.final_map)
    multiple = config.width_multiple or 2
    for stem in config.stems:
        stem_stride, stem_halvings = SCALED_STEMS[stem]
        n_stages = max(1, halvings - stem_halvings + 1)
        strides = (1,) + (2,) * (n_stages - 1)
        splits = {split_depth(blocks, profile(n_stages)) for profile in DEPTH_PROFILES.values()}
        for split in sorted(s for s in splits if s is not None):
            for widths in _width_schedules(n_stages, config.scaled_base_widths, config.scaled_growths,
                                           multiple, config.max_width):
                yield ({"stem_stride": stem_stride, "stem": stem},
                       tuple(Stage(w, d, s) for w, d, s in zip(widths, split, strides)))


def enumerate_grid(shape: tuple[int, int, int], classes: int, config: SpaceConfig, *,
                   keep: Callable[[str, dict], bool] | None = None) -> list[StudentSpec]:
    """Every student of ``config``'s grid for inputs of ``shape`` (see the module docstring);
    ``config.families`` empty: the registry's default families; ``keep(family, variant)``
    False drops that family variant."""
    scaled = config.scaled(shape)
    layouts = _scaled_layouts if scaled else _small_layouts
    specs: dict[str, StudentSpec] = {}
    for name in config.families or default_families():
        family = get_family(name)
        variants = [dict(v) for v in family.variants(config) if keep is None or keep(name, dict(v))]
        for depth in range(config.min_depth, config.depth_limit(min(shape[1:])) + 1):
            for variant in variants:
                blocks = family.blocks_for_depth(depth, variant)
                if not blocks or blocks < 1:
                    continue
                for stem, stages in layouts(blocks, shape, config):
                    for kernel, bottleneck in itertools.product(config.kernels, config.bottlenecks):
                        spec = StudentSpec(name, shape, classes, stages, kernel, bottleneck,
                                           **stem, **variant)
                        specs.setdefault(spec.id, spec)
    return list(specs.values())


def enumerate_specs(input_shape: Iterable[int], classes: int,
                    config: SpaceConfig | None = None, *,
                    keep: Callable[[str, dict[str, Any]], bool] | None = None) -> list[StudentSpec]:
    """Every student of the grid described by ``config``, in a deterministic order
    (:func:`enumerate_grid`). ``keep(family, variant)``, when given, drops
    the family variants it returns False for (the search passes the profile's TensorRT parser
    filter).

    With the defaults and a 28x28 or 32x32 input this yields about ten thousand specs
    (depth 3..19) in well under a second, and a few thousand per family at 224 px;
    :mod:`edgekd.search.search` filters them by budget.
    """
    return enumerate_grid(tuple(int(v) for v in input_shape), classes, config or SpaceConfig(),
                          keep=keep)
