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

:func:`hint_pairs` applies the rule to two models (their nodes listed by
:func:`edgekd.distill.hints.list_layers`); ``--hint-layer`` and ``--guided-layer`` override either
side, and :func:`auto_layer` (the middle activation) is the fallback when one side has no feature
maps. ``edgekd layers`` marks the pairs :func:`hint_pairs` makes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgekd.core.errors import EdgekdError
from edgekd.distill.hints import HintPair, LayerInfo, list_layers

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Candidate", "feature_nodes", "stage_ends", "best_pair", "stage_pairs", "auto_layer",
           "pair_layers", "hint_pairs"]


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


def auto_layer(layers: list[LayerInfo]) -> str:
    """The middle activation node (index ``(n-1)//2``), else the middle 4-D node."""
    candidates = [l for l in layers if l.activation and l.shape is not None and len(l.shape) == 3]
    if not candidates:
        candidates = [l for l in layers if l.shape is not None and len(l.shape) == 3]
    if not candidates:
        candidates = [l for l in layers if l.shape is not None]
    if not candidates:
        raise EdgekdError("cannot choose a hint layer automatically: the model has no tensor "
                          "outputs to tap; pass --hint-layer/--guided-layer (see 'edgekd layers')")
    return candidates[(len(candidates) - 1) // 2].name


def _resolve(model: nn.Module, layers: list[LayerInfo], name: str, role: str) -> LayerInfo:
    """The node called ``name``; a block name (e.g. ``features.3``) resolves to the last
    node inside that block, as torchvision's feature extraction does."""
    for layer in layers:
        if layer.name == name:
            return layer
    inside = [l for l in layers if l.name.startswith(name + ".")]
    if inside:
        return LayerInfo(name, type(model.get_submodule(name)).__name__, inside[-1].shape,
                         inside[-1].activation)
    close = [l.name for l in layers if name in l.name][:5]
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise EdgekdError(f"{role} layer '{name}' is not a node of the model{hint}: "
                      "list the valid names with 'edgekd layers'")


def pair_layers(teacher: nn.Module, student: nn.Module, input_shape: tuple[int, ...], *,
                hint_layer: str | None = None, guided_layer: str | None = None) -> HintPair:
    """The single (hint, guided) pair: explicit names win, else the resolution-aware rule above
    (a spec's middle block is not the automatic choice: it may sit
    at another resolution than the teacher's hint)."""
    return hint_pairs(teacher, student, input_shape, hint_layer=hint_layer,
                      guided_layer=guided_layer)[0]


def hint_pairs(teacher: nn.Module, student: nn.Module, input_shape: tuple[int, ...], *,
               hint_layer: str | None = None, guided_layer: str | None = None,
               stages: str = "one") -> list[HintPair]:
    """(hint, guided) pairs: one (``stages="one"``) or one per teacher stage (``"all"``).

    An explicit ``hint_layer`` and/or ``guided_layer`` gives exactly one pair; a missing side
    is chosen by the same rule among the nodes compatible with the given one.
    """
    if stages not in ("one", "all"):
        raise EdgekdError(f"unknown hint stages {stages!r}: use one or all")
    t_layers = list_layers(teacher, input_shape)
    s_layers = list_layers(student, input_shape)
    for layers, who in ((t_layers, "teacher"), (s_layers, "student")):
        if not layers:
            raise EdgekdError(f"the {who} has no tappable layers (TorchScript and torch.export models "
                              "hide them): use --method kd or mimic, or give the model as a state_dict "
                              "with --arch to train with hints")
    if hint_layer is None and guided_layer is None and stages == "all":
        chosen = stage_pairs(t_layers, s_layers)
        if not chosen:
            chosen = [_auto_pair(t_layers, s_layers)]
    elif hint_layer is None and guided_layer is None:
        chosen = [_auto_pair(t_layers, s_layers)]
    else:
        hint = _resolve(teacher, t_layers, hint_layer, "hint") if hint_layer else None
        guided = _resolve(student, s_layers, guided_layer, "guided") if guided_layer else None
        if hint is None:
            pick = best_pair(t_layers, [guided])
            hint = pick[0] if pick else _resolve(teacher, t_layers, auto_layer(t_layers), "hint")
        if guided is None:
            pick = best_pair([hint], s_layers)
            guided = pick[1] if pick else _resolve(student, s_layers, auto_layer(s_layers), "guided")
        chosen = [(hint, guided)]
    for hint, guided in chosen:
        for layer, role in ((hint, "hint"), (guided, "guided")):
            if layer.shape is None or len(layer.shape) not in (1, 3):
                raise EdgekdError(f"{role} layer '{layer.name}' outputs {layer.shape}, not a feature map "
                                  "or a vector: choose another with --hint-layer/--guided-layer")
    return [HintPair(h.name, g.name, tuple(h.shape), tuple(g.shape)) for h, g in chosen]


def _auto_pair(t_layers: list[LayerInfo], s_layers: list[LayerInfo]) -> tuple[LayerInfo, LayerInfo]:
    pick = best_pair(t_layers, s_layers)
    if pick is not None:
        return pick
    # no feature maps on one side: the middle node of each (vectors are regressed linearly)
    t_name, s_name = auto_layer(t_layers), auto_layer(s_layers)
    return (next(l for l in t_layers if l.name == t_name), next(l for l in s_layers if l.name == s_name))
