"""A weight-sharing supernet over one family's students: every sub-network is a
:class:`~edgekd.search.space.StudentSpec` whose weights are slices of one shared set.

The space (:class:`ElasticSpace`) grows from an *anchor* student, the largest one: per stage
an elastic depth (the first ``d`` blocks of the stage are kept) and an elastic width (the
leading channels), and, for families whose spec has them, an elastic kernel (the centre of
the anchor's kernel) and expansion (the leading hidden channels). This is how Once-for-All
(Cai et al. 2020) and BigNAS (Yu et al. 2020) share weights between sub-networks.

A sub-network is built by the family's own builder (so it exports, costs and trains like any
other student) and run with :func:`torch.func.functional_call` on views of the shared tensors:
gradients of every sub-network flow into the same weights, and :meth:`Supernet.extract`
copies a sub-network's slices into a standalone module that the normal trainer can fine-tune.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from edgekd.core.errors import EdgekdError
from edgekd.search.space import Stage, StudentSpec, build

__all__ = ["ElasticSpace", "Supernet", "elastic_space"]

#: the width choices of a stage, as fractions of the anchor's width
WIDTH_FRACTIONS = (0.5, 0.75, 1.0)
#: how many blocks a stage may drop from the anchor's depth
DEPTH_DROP = 2
#: sub-networks looked at to find every tensor any of them has (the width combinations)
_UNION_SAMPLE = 256


@dataclass(frozen=True)
class ElasticSpace:
    """The sub-networks of one supernet: ``depths[s]`` and ``widths[s]`` are the choices of
    stage ``s``; ``kernels`` and ``expansions`` the spec-wide choices. The anchor is the
    largest choice of each."""

    anchor: StudentSpec
    depths: tuple[tuple[int, ...], ...]
    widths: tuple[tuple[int, ...], ...]
    kernels: tuple[int, ...]
    expansions: tuple[int, ...]

    def __post_init__(self) -> None:
        stages = len(self.anchor.stages)
        if len(self.depths) != stages or len(self.widths) != stages:
            raise EdgekdError("supernet space: one depth and one width choice list per stage")
        for s, stage in enumerate(self.anchor.stages):
            if max(self.depths[s]) != stage.depth or max(self.widths[s]) != stage.width:
                raise EdgekdError("supernet space: the anchor must be the largest sub-network")
        if max(self.kernels) != self.anchor.kernel or max(self.expansions) != self.anchor.expansion:
            raise EdgekdError("supernet space: the anchor must have the largest kernel and expansion")

    @property
    def size(self) -> int:
        """How many sub-networks the space holds."""
        per_stage = [len(d) * len(w) for d, w in zip(self.depths, self.widths)]
        return math.prod(per_stage) * len(self.kernels) * len(self.expansions)

    def spec(self, depths: tuple[int, ...], widths: tuple[int, ...], kernel: int,
             expansion: int) -> StudentSpec:
        """The sub-network with these choices (a normal student spec)."""
        stages = tuple(Stage(width=w, depth=d, stride=st.stride)
                       for st, d, w in zip(self.anchor.stages, depths, widths))
        return dataclasses.replace(self.anchor, stages=stages, kernel=kernel, expansion=expansion)

    def largest(self) -> StudentSpec:
        return self.anchor

    def smallest(self) -> StudentSpec:
        return self.spec(tuple(min(d) for d in self.depths), tuple(min(w) for w in self.widths),
                         min(self.kernels), min(self.expansions))

    def sample(self, rng: random.Random) -> StudentSpec:
        """A uniformly random sub-network."""
        return self.spec(tuple(rng.choice(d) for d in self.depths),
                         tuple(rng.choice(w) for w in self.widths),
                         rng.choice(self.kernels), rng.choice(self.expansions))

    def mutate(self, spec: StudentSpec, rng: random.Random, rate: float = 0.3) -> StudentSpec:
        """``spec`` with each choice redrawn with probability ``rate`` (the evolutionary step)."""
        depths = tuple(rng.choice(c) if rng.random() < rate else s.depth
                       for c, s in zip(self.depths, spec.stages))
        widths = tuple(rng.choice(c) if rng.random() < rate else s.width
                       for c, s in zip(self.widths, spec.stages))
        kernel = rng.choice(self.kernels) if rng.random() < rate else spec.kernel
        expansion = rng.choice(self.expansions) if rng.random() < rate else spec.expansion
        return self.spec(depths, widths, kernel, expansion)

    def all(self) -> Iterator[StudentSpec]:
        """Every sub-network (use only when :attr:`size` is small)."""
        for depths in itertools.product(*self.depths):
            for widths in itertools.product(*self.widths):
                for kernel in self.kernels:
                    for expansion in self.expansions:
                        yield self.spec(depths, widths, kernel, expansion)

    def to_dict(self) -> dict:
        return {"anchor": self.anchor.to_dict(), "depths": [list(d) for d in self.depths],
                "widths": [list(w) for w in self.widths], "kernels": list(self.kernels),
                "expansions": list(self.expansions)}

    @classmethod
    def from_dict(cls, data: dict) -> "ElasticSpace":
        return cls(StudentSpec.from_dict(data["anchor"]), tuple(tuple(d) for d in data["depths"]),
                   tuple(tuple(w) for w in data["widths"]), tuple(data["kernels"]),
                   tuple(data["expansions"]))


def _round_width(width: float, multiple: int) -> int:
    return max(multiple, int(round(width / multiple)) * multiple)


def elastic_space(anchor: StudentSpec, width_multiple: int = 2, elastic_kernel: bool = True,
                  elastic_expansion: bool = True) -> ElasticSpace:
    """The default space below ``anchor``: per stage, widths at :data:`WIDTH_FRACTIONS` of the
    anchor's (rounded to ``width_multiple``) and depths down to ``DEPTH_DROP`` blocks fewer;
    kernels 3 and the anchor's (when it is larger); expansions from 3 up to the anchor's."""
    depths = tuple(tuple(range(max(1, s.depth - DEPTH_DROP), s.depth + 1)) for s in anchor.stages)
    widths = tuple(tuple(sorted({_round_width(s.width * f, width_multiple) for f in WIDTH_FRACTIONS}
                                | {s.width}))
                   for s in anchor.stages)
    widths = tuple(tuple(w for w in ws if w <= s.width) for ws, s in zip(widths, anchor.stages))
    kernels = (3, anchor.kernel) if elastic_kernel and anchor.kernel > 3 else (anchor.kernel,)
    expansions = ((anchor.expansion,) if not elastic_expansion or anchor.expansion <= 3
                  else tuple(sorted({3, (anchor.expansion + 3) // 2, anchor.expansion})))
    return ElasticSpace(anchor, depths, widths, tuple(sorted(set(kernels))), expansions)


def _stem_blocks(spec: StudentSpec) -> int:
    """Blocks of ``features`` that come before the stages' blocks (the stem)."""
    return spec.blocks - sum(stage.depth for stage in spec.stages)


def _rename(spec: StudentSpec, name: str, anchor_stem: int, anchor_offsets: tuple[int, ...]) -> str:
    """The shared name of the sub-network tensor ``name``: its block index moved to the index
    the same block has in the anchor (block ``j`` of stage ``s`` keeps its place), so a
    shallower stage uses the anchor's first blocks of that stage."""
    parts = name.split(".")
    if parts[0] != "features":
        return name
    index, stem = int(parts[1]), _stem_blocks(spec)
    if index < stem:
        return name
    rest = index - stem
    for s, stage in enumerate(spec.stages):
        if rest < stage.depth:
            parts[1] = str(anchor_stem + anchor_offsets[s] + rest)
            return ".".join(parts)
        rest -= stage.depth
    raise ValueError(f"{name}: block index beyond the spec's stages")  # pragma: no cover


def _slice(shared: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The view of ``shared`` a sub-network of ``shape`` uses: the leading entries of every
    dimension, except a conv kernel's two spatial ones, where it takes the centre."""
    index = []
    for dim, (big, small) in enumerate(zip(shared.shape, shape)):
        if shared.dim() == 4 and dim >= 2:
            start = (big - small) // 2
            index.append(slice(start, start + small))
        else:
            index.append(slice(0, small))
    return shared[tuple(index)]


def _flat(name: str) -> str:
    return name.replace(".", "__")


class Supernet(nn.Module):
    """The shared weights of every sub-network of ``space`` and the way to run one.

    Each tensor any sub-network has (found on the anchor and on every width combination at
    the anchor's depth, which is where projection shortcuts appear or vanish) is stored once
    at the largest shape any sub-network gives it; a sub-network reads :func:`_slice` views.
    """

    def __init__(self, space: ElasticSpace) -> None:
        super().__init__()
        self.space = space
        anchor = space.anchor
        self._anchor_stem = _stem_blocks(anchor)
        offsets, total = [], 0
        for stage in anchor.stages:
            offsets.append(total)
            total += stage.depth
        self._anchor_offsets = tuple(offsets)
        self._modules_by_id: dict[str, nn.Module] = {}
        tensors: dict[str, torch.Tensor] = {}
        kinds: dict[str, str] = {}
        for spec in self._union_specs():
            module = build(spec)
            for kind, named in (("param", module.named_parameters()), ("buffer", module.named_buffers())):
                for name, value in named:
                    shared = self.shared_name(spec, name)
                    old = tensors.get(shared)
                    if old is not None and old.dim() != value.dim():
                        raise EdgekdError(f"supernet: {shared} changes rank between sub-networks; "
                                          "this family cannot share weights this way")
                    if old is None or any(n > o for n, o in zip(value.shape, old.shape)):
                        grown = tuple(max(n, o) for n, o in zip(value.shape, old.shape)) if old is not None \
                            else tuple(value.shape)
                        tensors[shared] = _grow(old, value, grown)
                    kinds[shared] = kind
        for name, value in tensors.items():
            if kinds[name] == "param":
                self.register_parameter(_flat(name), nn.Parameter(value.detach().clone()))
            else:
                self.register_buffer(_flat(name), value.detach().clone())

    def _union_specs(self) -> Iterator[StudentSpec]:
        space = self.space
        yield space.anchor
        depths = tuple(max(d) for d in space.depths)
        combos = list(itertools.product(*space.widths))
        if len(combos) > _UNION_SAMPLE:
            combos = random.Random(0).sample(combos, _UNION_SAMPLE)
        for widths in combos:
            yield space.spec(depths, widths, max(space.kernels), max(space.expansions))

    def shared_name(self, spec: StudentSpec, name: str) -> str:
        """The name under which the tensor ``name`` of sub-network ``spec`` is shared."""
        return _rename(spec, name, self._anchor_stem, self._anchor_offsets)

    def module_for(self, spec: StudentSpec) -> nn.Module:
        """The (cached) module structure of ``spec``; its own weights are never used."""
        module = self._modules_by_id.get(spec.id)
        if module is None:
            module = build(spec).to(next(self.parameters()).device)
            self._modules_by_id[spec.id] = module
        return module

    def views(self, spec: StudentSpec) -> dict[str, torch.Tensor]:
        """Every tensor of sub-network ``spec`` as a view of the shared ones."""
        module = self.module_for(spec)
        own = dict(self.named_parameters()) | dict(self.named_buffers())
        found = {}
        for name, value in itertools.chain(module.named_parameters(), module.named_buffers()):
            shared = own.get(_flat(self.shared_name(spec, name)))
            if shared is None or shared.dim() != value.dim() or \
                    any(n > o for n, o in zip(value.shape, shared.shape)):
                raise EdgekdError(f"supernet: sub-network {spec.describe()} has a tensor {name} "
                                  "that the supernet does not hold: it is outside the space")
            found[name] = _slice(shared, value.shape)
        return found

    def forward(self, x: torch.Tensor, spec: StudentSpec) -> torch.Tensor:  # type: ignore[override]
        """The logits of sub-network ``spec`` on ``x`` (train or eval mode follows ``self``)."""
        module = self.module_for(spec)
        module.train(self.training)
        return torch.func.functional_call(module, self.views(spec), (x,))

    def extract(self, spec: StudentSpec) -> nn.Module:
        """A standalone copy of sub-network ``spec`` with its inherited weights."""
        module = build(spec).to(next(self.parameters()).device)
        with torch.no_grad():
            for name, view in self.views(spec).items():
                target = module.get_parameter(name) if name in dict(module.named_parameters()) \
                    else module.get_buffer(name)
                target.copy_(view)
        return module


def _grow(old: torch.Tensor | None, new: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A tensor of ``shape`` holding ``new`` (the fresh initialisation of the larger one),
    with ``old`` kept where it already was (the anchor's initialisation wins)."""
    if old is None and tuple(new.shape) == shape:
        return new.detach().clone()
    grown = torch.zeros(shape, dtype=new.dtype)
    _slice(grown, new.shape).copy_(new.detach())
    if old is not None:
        _slice(grown, old.shape).copy_(old)
    return grown
