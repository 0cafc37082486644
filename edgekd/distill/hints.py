"""FitNets hints: tapping intermediate layers, pairing hint/guided layers, regressors.

Romero et al. 2015 ("FitNets: Hints for Thin Deep Nets") train the student up to a *guided*
layer so that a small regressor ``r`` maps its output ``v_g`` onto the teacher's *hint*
layer ``u_h`` (loss ``1/2 ||u_h - r(v_g)||^2``, :func:`edgekd.distill.losses.hint_loss`).

Taps use ``torchvision.models.feature_extraction`` (fx tracing): a tap returns the output of
one named node and computes only the part of the graph that node needs. Models that fx
cannot trace (data-dependent control flow) fall back to a forward hook on a *module* name;
the hook stops the forward pass once the output is captured.

Automatic choice: :mod:`edgekd.distill.pairing` pairs the end of a teacher stage with the
student node of the same spatial size at a similar relative depth (the stage end nearest the
middle of the teacher for a single pair; one pair per stage with ``stages="all"``).
:func:`auto_layer` (the middle activation) is the fallback when one side has no feature maps.
``edgekd layers`` marks the pairs :func:`hint_pairs` makes; ``--hint-layer`` and
``--guided-layer`` override either side.

Regressor (:func:`make_regressor`), from the guided shape ``(C_g, N_g, N_g)`` to the hint
shape ``(C_h, N_h, N_h)``:

- equal spatial size: 1x1 convolution ``C_g -> C_h``;
- student map larger (``N_g > N_h``): convolution with kernel ``N_g - N_h + 1`` per side,
  no padding, which outputs ``N_h`` exactly (the paper's choice; fewer parameters than a
  fully connected regressor);
- student map smaller (``N_g < N_h``, in any side): the teacher's hint is average-pooled
  down to ``N_g`` (:meth:`HintRegressor.target`) and a 1x1 convolution maps ``C_g -> C_h``.
  The student map is never upsampled: that asked the student for spatial detail it cannot
  represent at its resolution;
- vectors (``(D_g,) -> (D_h,)``): a linear layer; a feature map guiding a vector hint is
  global-average-pooled first. A vector guiding a feature map is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgekd.core.errors import EdgekdError

__all__ = ["LayerInfo", "HintPair", "FeatureTap", "list_layers", "auto_layer", "pair_layers",
           "hint_pairs", "HintRegressor", "make_regressor"]

_ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Hardswish, nn.Hardtanh, nn.Sigmoid, nn.Tanh,
)
_ACTIVATION_NAMES = {"relu", "relu6", "leaky_relu", "prelu", "elu", "selu", "celu", "gelu",
                     "silu", "mish", "hardswish", "hardtanh", "sigmoid", "tanh", "act",
                     "activation"}


@dataclass(frozen=True)
class LayerInfo:
    """One tappable node: its name, what it is, and its output shape (without batch)."""

    name: str
    kind: str
    shape: tuple[int, ...] | None
    activation: bool


@dataclass(frozen=True)
class HintPair:
    """The layers FitNets pairs: teacher hint layer and student guided layer + shapes."""

    hint_layer: str
    guided_layer: str
    hint_shape: tuple[int, ...]
    guided_shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"hint_layer": self.hint_layer, "guided_layer": self.guided_layer,
                "hint_shape": list(self.hint_shape), "guided_shape": list(self.guided_shape)}


class _StopForward(Exception):
    """Raised by a hook tap once it has captured its output, to skip the rest."""


def _fx_node_names(model: nn.Module) -> list[str] | None:
    """fx node names, or None when the model cannot be traced or torchvision is absent (a
    machine with torch alone, like the GPU hosts: hooks on module names then)."""
    try:
        from torchvision.models.feature_extraction import get_graph_node_names
    except ImportError:
        return None
    try:
        return list(get_graph_node_names(model, suppress_diff_warning=True)[1])
    except Exception:  # noqa: BLE001 - any tracing failure means: use hooks
        return None


def _node_kind(model: nn.Module, name: str) -> tuple[str, bool]:
    base = re.sub(r"_\d+$", "", name)
    for candidate in (name, base):
        try:
            module = model.get_submodule(candidate)
        except AttributeError:
            continue
        if candidate:
            return type(module).__name__, isinstance(module, _ACTIVATION_TYPES)
    last = base.rsplit(".", 1)[-1]
    return last, last in _ACTIVATION_NAMES


def _dummy_input(model: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    return torch.zeros((2, *input_shape), device=device)


@torch.no_grad()
def list_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerInfo]:
    """Every tappable node of ``model`` in execution order, with its output shape.

    Uses fx node names (``get_graph_node_names``, eval mode); a model fx cannot trace
    lists its modules (forward hooks) instead.
    """
    was_training = model.training
    model.eval()
    try:
        names = _fx_node_names(model)
        x = _dummy_input(model, input_shape)
        if names is not None:
            from torchvision.models.feature_extraction import create_feature_extractor

            names = [n for n in names if n not in ("x", "input")]
            extractor = create_feature_extractor(model, return_nodes={n: n for n in names})
            outputs = extractor(x)
            layers = []
            for name in names:
                out = outputs.get(name)
                shape = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) and out.dim() > 0 else None
                kind, act = _node_kind(model, name)
                layers.append(LayerInfo(name, kind, shape, act))
            return layers
        return _list_layers_by_hooks(model, x)
    finally:
        model.train(was_training)


def _list_layers_by_hooks(model: nn.Module, x: torch.Tensor) -> list[LayerInfo]:
    if isinstance(model, torch.jit.ScriptModule):
        return []  # TorchScript refuses forward hooks: no tappable layers (pair_layers explains)
    seen: dict[str, LayerInfo] = {}
    handles = []

    def hook_for(name: str, module: nn.Module):
        def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
            if name not in seen:
                shape = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else None
                seen[name] = LayerInfo(name, type(module).__name__, shape,
                                       isinstance(module, _ACTIVATION_TYPES))
        return hook

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_hook(hook_for(name, module)))
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return list(seen.values())


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
    """The single (hint, guided) pair: explicit names win, else the resolution-aware rule of
    :mod:`edgekd.distill.pairing` (a spec's middle block is not the automatic choice: it may sit
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
    from edgekd.distill import pairing

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
        chosen = pairing.stage_pairs(t_layers, s_layers)
        if not chosen:
            chosen = [_auto_pair(t_layers, s_layers)]
    elif hint_layer is None and guided_layer is None:
        chosen = [_auto_pair(t_layers, s_layers)]
    else:
        hint = _resolve(teacher, t_layers, hint_layer, "hint") if hint_layer else None
        guided = _resolve(student, s_layers, guided_layer, "guided") if guided_layer else None
        if hint is None:
            pick = pairing.best_pair(t_layers, [guided])
            hint = pick[0] if pick else _resolve(teacher, t_layers, auto_layer(t_layers), "hint")
        if guided is None:
            pick = pairing.best_pair([hint], s_layers)
            guided = pick[1] if pick else _resolve(student, s_layers, auto_layer(s_layers), "guided")
        chosen = [(hint, guided)]
    for hint, guided in chosen:
        for layer, role in ((hint, "hint"), (guided, "guided")):
            if layer.shape is None or len(layer.shape) not in (1, 3):
                raise EdgekdError(f"{role} layer '{layer.name}' outputs {layer.shape}, not a feature map "
                                  "or a vector: choose another with --hint-layer/--guided-layer")
    return [HintPair(h.name, g.name, tuple(h.shape), tuple(g.shape)) for h, g in chosen]


def _auto_pair(t_layers: list[LayerInfo], s_layers: list[LayerInfo]) -> tuple[LayerInfo, LayerInfo]:
    from edgekd.distill import pairing

    pick = pairing.best_pair(t_layers, s_layers)
    if pick is not None:
        return pick
    # no feature maps on one side: the middle node of each (vectors are regressed linearly)
    t_name, s_name = auto_layer(t_layers), auto_layer(s_layers)
    return (next(l for l in t_layers if l.name == t_name), next(l for l in s_layers if l.name == s_name))


class FeatureTap(nn.Module):
    """``tap(x)`` = the output of node ``node`` of ``model``, computing only what it needs.

    The tap shares its parameters with ``model`` (training through it trains ``model``).
    fx first; for models fx cannot trace, a forward hook on the module named ``node``.
    """

    def __init__(self, model: nn.Module, node: str) -> None:
        super().__init__()
        self.node = node
        self._hooked: nn.Module | None = None
        try:
            from torchvision.models.feature_extraction import create_feature_extractor

            self.extractor: nn.Module = create_feature_extractor(model, return_nodes={node: "out"})
        except Exception:  # noqa: BLE001 - fx failed: fall back to a hook
            try:
                self._hooked = model.get_submodule(node)
            except AttributeError:
                raise EdgekdError(f"layer '{node}' is not a module of the model and the model cannot "
                                  "be traced by fx: choose a module name from 'edgekd layers'") from None
            self.extractor = model
        self._captured: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._hooked is None:
            return self.extractor(x)["out"]
        # a torch.export teacher exported at a constant batch runs in chunks of it, and the
        # hook below stops the forward pass at the first chunk: tap chunk by chunk
        from edgekd.inputs.teachers import in_static_batches

        return in_static_batches(self._tap, x, getattr(self.extractor, "static_batch", None))

    def _tap(self, x: torch.Tensor) -> torch.Tensor:
        def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
            self._captured = out
            raise _StopForward

        handle = self._hooked.register_forward_hook(hook)
        try:
            self.extractor(x)
        except _StopForward:
            pass
        finally:
            handle.remove()
        out, self._captured = self._captured, None
        if out is None:
            raise EdgekdError(f"layer '{self.node}' was not called in the forward pass: "
                              "choose another layer from 'edgekd layers'")
        return out


class HintRegressor(nn.Module):
    """``r(v_g)``: maps the student's guided output onto the teacher's hint shape.

    ``kind`` is one of ``"conv1x1"``, ``"conv"`` (kernel ``N_g - N_h + 1``),
    ``"conv1x1+pooled-hint"``, ``"linear"``, ``"pool+linear"`` (see the module docstring).
    The loss compares ``regressor(v)`` with ``regressor.target(u)``, which pools the hint
    down when the student map is smaller (and is ``u`` itself otherwise).
    """

    def __init__(self, guided_shape: tuple[int, ...], hint_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.guided_shape, self.hint_shape = tuple(guided_shape), tuple(hint_shape)
        self.pool_hint_to: tuple[int, int] | None = None
        self.pool = False
        if len(hint_shape) == 3 and len(guided_shape) == 3:
            (cg, hg, wg), (ch, hh, wh) = guided_shape, hint_shape
            if (hg, wg) == (hh, wh):
                self.kind, self.map = "conv1x1", nn.Conv2d(cg, ch, 1)
            elif hg >= hh and wg >= wh:
                self.kind, self.map = "conv", nn.Conv2d(cg, ch, (hg - hh + 1, wg - wh + 1))
            else:
                self.kind, self.map = "conv1x1+pooled-hint", nn.Conv2d(cg, ch, 1)
                self.pool_hint_to = (min(hg, hh), min(wg, wh))
                if (hg, wg) != self.pool_hint_to:  # student larger on one side: crop it by conv
                    self.map = nn.Conv2d(cg, ch, (hg - self.pool_hint_to[0] + 1, wg - self.pool_hint_to[1] + 1))
        elif len(hint_shape) == 1 and len(guided_shape) == 1:
            self.kind, self.map = "linear", nn.Linear(guided_shape[0], hint_shape[0])
        elif len(hint_shape) == 1 and len(guided_shape) == 3:
            self.kind, self.map, self.pool = "pool+linear", nn.Linear(guided_shape[0], hint_shape[0]), True
        else:
            raise EdgekdError(f"cannot regress a guided output of shape {guided_shape} onto a hint of "
                              f"shape {hint_shape}: guide a feature map with a feature map "
                              "(--guided-layer/--hint-layer)")

    @property
    def target_shape(self) -> tuple[int, ...]:
        """The shape the loss compares: the hint's, pooled down when the student is smaller."""
        if self.pool_hint_to is None:
            return self.hint_shape
        return (self.hint_shape[0], *self.pool_hint_to)

    def target(self, u: torch.Tensor) -> torch.Tensor:
        """The teacher hint as the loss sees it: ``u``, average-pooled to the student's size
        when the student map is smaller (adaptive average pooling, never upsampling)."""
        if self.pool_hint_to is None:
            return u
        return F.adaptive_avg_pool2d(u, self.pool_hint_to)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        if self.pool:
            v = v.mean(dim=(2, 3))
        return self.map(v)


def make_regressor(guided_shape: tuple[int, ...], hint_shape: tuple[int, ...]) -> HintRegressor:
    """The FitNets regressor for one (guided, hint) shape pair (module docstring)."""
    return HintRegressor(guided_shape, hint_shape)
