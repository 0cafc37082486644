"""Resolution-aware pairing of teacher hint layers with student guided layers.

FitNets (Romero et al. 2015) regress the student's guided layer onto the teacher's hint
layer. Choosing the two independently (the middle of each network) can pair a 28x28 teacher
map with a 14x14 student map, and a regressor that upsamples the student map asks it for
detail it cannot represent. The rule here:

1. **Teacher stage ends**: the teacher's activation nodes with a feature-map output, in
   execution order; a *stage end* is the last of them before the spatial size changes (and
   the last one overall). Each has a relative depth ``(i + 1) / n`` among those nodes.
2. **Student candidates**: the student's activation nodes with a feature-map output, with
   relative depths computed the same way.
3. A (teacher stage end, student node) pair is ranked by
   (a) resolution: equal spatial size first; then a student map *smaller* than the hint
   (the hint is average-pooled down to the student's size, :class:`HintRegressor`); a
   student map larger than the hint last (the paper's convolutional regressor shrinks it);
   never is the student map upsampled;
   (b) for the single automatic pair, the teacher stage end nearest the middle of the teacher
   (relative depth 1/2: FitNets put the hint in the middle, deeper hints over-regularise);
   (c) the student node nearest the teacher stage end's relative depth.
4. **Multi-stage** (``--hint-stages all``): one pair per teacher stage end that has a student
   node of the same spatial size, each with the student node of nearest relative depth,
   kept in execution order on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekd.distill.hints import LayerInfo

__all__ = ["Candidate", "feature_nodes", "stage_ends", "best_pair", "stage_pairs"]


@dataclass(frozen=True)
class Candidate:
    """A tappable feature-map node with its spatial size and relative depth in (0, 1]."""

    layer: LayerInfo
    size: tuple[int, int]
    depth: float


def feature_nodes(layers: list[LayerInfo]) -> list[Candidate]:
    """Activation nodes with a (C, H, W) output (all (C, H, W) nodes if none is an
    activation), with relative depth ``(i + 1) / n``."""
    maps = [l for l in layers if l.shape is not None and len(l.shape) == 3]
    acts = [l for l in maps if l.activation] or maps
    n = len(acts)
    return [Candidate(l, (int(l.shape[1]), int(l.shape[2])), (i + 1) / n) for i, l in enumerate(acts)]


def stage_ends(layers: list[LayerInfo]) -> list[Candidate]:
    """The last feature node before each change of spatial size, and the last one."""
    nodes = feature_nodes(layers)
    return [c for i, c in enumerate(nodes) if i + 1 == len(nodes) or nodes[i + 1].size != c.size]


def _resolution_rank(teacher: Candidate, student: Candidate) -> int:
    (th, tw), (sh, sw) = teacher.size, student.size
    if (th, tw) == (sh, sw):
        return 0
    if sh <= th and sw <= tw:
        return 1  # pool the teacher's hint down to the student's size
    if sh >= th and sw >= tw:
        return 2  # the paper's conv regressor (kernel N_g - N_h + 1) shrinks the student map
    return 3  # mixed: never chosen automatically


def best_pair(teacher_layers: list[LayerInfo], student_layers: list[LayerInfo]
              ) -> tuple[LayerInfo, LayerInfo] | None:
    """The single automatic (hint, guided) pair by the module docstring's rule, or None."""
    ends, nodes = stage_ends(teacher_layers), feature_nodes(student_layers)
    scored = [((_resolution_rank(t, s), abs(t.depth - 0.5), abs(s.depth - t.depth), -s.depth), t, s)
              for t in ends for s in nodes]
    scored = [item for item in scored if item[0][0] < 3]
    if not scored:
        return None
    _, t, s = min(scored, key=lambda item: item[0])
    return t.layer, s.layer


def stage_pairs(teacher_layers: list[LayerInfo], student_layers: list[LayerInfo]
                ) -> list[tuple[LayerInfo, LayerInfo]]:
    """One (hint, guided) pair per teacher stage end with an equal-size student node."""
    nodes = feature_nodes(student_layers)
    pairs: list[tuple[LayerInfo, LayerInfo]] = []
    last_index = -1
    for t in stage_ends(teacher_layers):
        same = [(abs(s.depth - t.depth), i) for i, s in enumerate(nodes) if s.size == t.size and i > last_index]
        if not same:
            continue
        _, index = min(same)
        last_index = index
        pairs.append((t.layer, nodes[index].layer))
    return pairs
