"""FitNets hints: the nodes of a model and tapping them, the hint/guided pair, regressors.

Romero et al. 2015 ("FitNets: Hints for Thin Deep Nets") train the student up to a *guided*
layer so that a small regressor ``r`` maps its output ``v_g`` onto the teacher's *hint*
layer ``u_h`` (loss ``1/2 ||u_h - r(v_g)||^2``, :func:`edgekd.distill.losses.hint_loss`).

Taps use ``torchvision.models.feature_extraction`` (fx tracing): a tap returns the output of
one named node and computes only the part of the graph that node needs. Models that fx
cannot trace (data-dependent control flow) fall back to a forward hook on a *module* name;
the hook stops the forward pass once the output is captured.

Which nodes are paired (:class:`HintPair`) is :mod:`edgekd.distill.pairing`'s rule: the end of a
teacher stage with the student node of the same spatial size at a similar relative depth.

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

__all__ = ["LayerInfo", "HintPair", "FeatureTap", "list_layers", "HintRegressor", "make_regressor"]

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
