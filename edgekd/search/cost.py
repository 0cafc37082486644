"""Cost of a student: MACs, parameters and the per-layer table (the latency model is
:mod:`edgekd.search.latency`; measuring a student on this host is :mod:`edgekd.ship.measure`).

**MACs** come from :class:`torch.utils.flop_counter.FlopCounterMode` (MACs = FLOPs / 2: the
counter charges 2 FLOPs per multiply-accumulate of convolutions and matrix products), read per
module from its per-module breakdown, on meta tensors where possible. There is no hand-written
per-layer MAC formula here. A spec's cost is assembled from the costs of its blocks, each
counted once by FlopCounterMode and cached by the block's signature (family, kind, channels,
kernel, stride, options, input size) in memory and optionally in a JSON file
(:func:`block_cost_cache`), so thousands of specs cost seconds; the spec total is cached per
spec id.

**Layers.** :func:`module_cost` lists the layers that cost time on an inference engine:
``conv``, ``depthwise`` (groups == in_channels), ``linear``, ``pool``, ``add`` (the residual
sum) and ``elementwise`` (other activations). BatchNorm and ReLU are not separate layers: ONNX
Runtime and TensorRT fold BN into the conv and fuse the ReLU. A module may declare its kind with
a ``cost_kind`` attribute (the family registry's cost hook, see :mod:`edgekd.search.blocks`).
MACs and layers are counted as the model is deployed (:func:`edgekd.search.blocks.deployed`: a
RepVGG block is the one conv it exports to), parameters as it trains (its branches included):
at the same latency a re-parameterised student has more capacity to learn with.
Operations written as functions outside modules (e.g. torchvision ResNet's ``out += identity``)
are not seen.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import atomic_write_json, read_json
from edgekd.search.space import StudentSpec

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

KINDS: tuple[str, ...] = ("conv", "depthwise", "linear", "pool", "add", "elementwise")
COST_CACHE_FORMAT = "edgekd.cost-cache/5"


# ---------------------------------------------------------------------------- layers
@dataclass(frozen=True)
class Layer:
    """One costed layer, per sample (batch 1): MACs, activation elements in/out, weights, and
    for conv / linear layers their input and output channels, and for convs the kernel size
    and stride (0 for other layers; the kernel latency model keys on them)."""

    name: str
    kind: str
    macs: int
    in_elems: int
    out_elems: int
    weights: int
    in_channels: int = 0
    out_channels: int = 0
    kernel: int = 0
    stride: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ModelCost:
    """MACs and parameters per sample, and the layer table."""

    macs: int
    params: int
    layers: tuple[Layer, ...]


def _layer_kind(module: "nn.Module") -> str | None:
    """The cost kind of a leaf module, or None when it is free or fused into its producer."""
    from torch import nn
    from torch.nn.modules import batchnorm, conv, dropout, pooling

    if isinstance(module, conv._ConvNd):
        depthwise = module.groups > 1 and module.groups == module.in_channels
        return "depthwise" if depthwise else "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, (pooling._AvgPoolNd, pooling._MaxPoolNd, pooling._AdaptiveAvgPoolNd,
                           pooling._AdaptiveMaxPoolNd)):
        return "pool"
    declared = getattr(module, "cost_kind", None)  # a family's cost hook (edgekd.search.blocks)
    if declared is not None:
        return str(declared)
    fused_or_free = (batchnorm._BatchNorm, nn.ReLU, nn.ReLU6, nn.Identity, nn.Flatten,
                     dropout._DropoutNd)
    if isinstance(module, fused_or_free):
        return None
    return "elementwise"


def _first(value: Any) -> int:
    """The first side of a conv's ``kernel_size`` / ``stride`` (an int or a tuple)."""
    return int(value[0] if isinstance(value, (tuple, list)) else value)


def _numel(value: Any) -> int:
    import torch

    if isinstance(value, torch.Tensor):
        return value.numel()
    if isinstance(value, (tuple, list)):
        return sum(_numel(v) for v in value)
    return 0


#: one hooked leaf call: (name, kind, input elements, output elements, weights,
#: (in channels, out channels, kernel, stride))
_Call = tuple[str, str, int, int, int, tuple[int, int, int, int]]


def module_cost(model: "nn.Module", input_shape: Sequence[int]) -> ModelCost:
    """Count ``model`` at batch 1 on an input of shape ``input_shape`` (C, H, W).

    A model whose parameters live on the meta device is run on a meta tensor (free);
    otherwise on a zero CPU tensor, in eval mode and without gradients (the mode is restored).
    MACs are FLOPs / 2 from ``torch.utils.flop_counter.FlopCounterMode``, per leaf module
    (forward hooks give its inputs, outputs and weights).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from edgekd.search.blocks import deployed

    params = sum(p.numel() for p in model.parameters())  # what trains (RepVGG: every branch)
    model = deployed(model)
    tensors = [*model.parameters(), *model.buffers()]
    # count where the model lives: a teacher that just trained students on CUDA stays there
    device = tensors[0].device if tensors else torch.device("cpu")
    calls: list[_Call] = []
    # TorchScript refuses forward hooks: count its MACs in total (FlopCounterMode sees its ops),
    # without a per-layer breakdown
    hookable = not isinstance(model, torch.jit.ScriptModule)
    handles = _hook_leaves(model, calls) if hookable else []
    was_training = model.training
    model.eval()
    # a torch.export graph exported at a constant batch B runs B images per call (one image is
    # padded to B): count one call at B and divide, so MACs are per image as for any model
    batch = getattr(model, "static_batch", None) or 1
    try:
        x = torch.zeros(batch, *input_shape, device=device)
        with torch.no_grad(), FlopCounterMode(display=False) as counter, _skip_free(model, device):
            model(x)
    except RuntimeError as error:
        raise EdgekdError(f"cannot run the model on an input of shape 1x"
                          f"{'x'.join(map(str, input_shape))} ({str(error).splitlines()[0]}): "
                          "check --input") from None
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    flops_of = {key: sum(ops.values()) for key, ops in counter.get_flop_counts().items()}
    total_macs = int(flops_of.get("Global", 0) // 2 // batch)
    if not hookable:  # one layer for the whole graph, so the roofline still predicts a latency
        layers = (Layer("<torchscript>", "conv", total_macs, math.prod(input_shape), 0, params),)
    else:
        layers = _layers(calls, flops_of, type(model).__name__, batch)
    return ModelCost(macs=total_macs, params=params, layers=layers)


@contextlib.contextmanager
def _skip_free(model: "nn.Module", device: Any) -> Iterator[None]:
    """On meta tensors, run the modules that cost nothing and keep the shape (BatchNorm, ReLU,
    ReLU6: fused into their conv, see :func:`_layer_kind`) as the identity while counting: they add no MACs and no layer,
    and their meta kernels were most of the time a block's count took."""
    if getattr(device, "type", None) != "meta":
        yield
        return
    from torch import nn
    from torch.nn.modules import batchnorm

    free = [m for m in model.modules()
            if isinstance(m, (batchnorm._BatchNorm, nn.ReLU, nn.ReLU6)) and not m._forward_hooks]
    for module in free:
        module.forward = _identity  # type: ignore[method-assign]
    try:
        yield
    finally:
        for module in free:
            del module.forward


def _identity(x: Any, *_args: Any, **_kwargs: Any) -> Any:
    return x


def _hook_leaves(model: "nn.Module", calls: list[_Call]) -> list[Any]:
    """Forward hooks on every costed leaf module that append its :data:`_Call` to ``calls``;
    returns the handles (remove them after the forward pass)."""
    def recorder(name: str, kind: str, weights: int, channels: tuple[int, int, int, int]):
        def hook(_module: Any, inputs: Any, output: Any) -> None:
            calls.append((name, kind, _numel(inputs), _numel(output), weights, channels))
        return hook

    handles = []
    for name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue
        kind = _layer_kind(module)
        if kind is not None:
            weights = sum(p.numel() for p in module.parameters(recurse=False))
            spatial = kind in ("conv", "depthwise")
            channels = (getattr(module, "in_channels", getattr(module, "in_features", 0)),
                        getattr(module, "out_channels", getattr(module, "out_features", 0)),
                        _first(getattr(module, "kernel_size", 0)) if spatial else 0,
                        _first(getattr(module, "stride", 0)) if spatial else 0)
            handles.append(module.register_forward_hook(recorder(name, kind, weights, channels)))
    return handles


def _layers(calls: list[_Call], flops_of: dict[str, int], root: str, batch: int) -> tuple[Layer, ...]:
    """One :class:`Layer` per hooked call, per image: a module called n times (shared weights)
    gets 1/n of its counted FLOPs per call."""
    n_calls: dict[str, int] = {}
    for name, *_ in calls:
        n_calls[name] = n_calls.get(name, 0) + 1
    return tuple(
        Layer(name, kind, int(flops_of.get(f"{root}.{name}", 0) // 2 // n_calls[name] // batch),
              inp // batch, out // batch, weights, *channels)
        for name, kind, inp, out, weights, channels in calls
    )


# ---------------------------------------------------------------------------- spec costs
_BLOCK_COSTS: dict[str, ModelCost] = {}
_SPEC_COSTS: dict[str, ModelCost] = {}


def _cost_of(key: str, make: Any, input_shape: Sequence[int]) -> ModelCost:
    cost = _BLOCK_COSTS.get(key)
    if cost is None:
        import torch

        with torch.device("meta"):
            module = make()
        cost = _BLOCK_COSTS[key] = module_cost(module, input_shape)
    return cost


def _spec_parts(spec: StudentSpec) -> list[tuple[str, str, ModelCost]]:
    """``(name prefix, cost key, cost)`` of each block of ``build(spec)`` and of its head
    (cached on the spec: the MAC filter and the layer table both ask)."""
    from edgekd.search.space import build_block, build_head

    parts = spec.__dict__.get("_cost_parts")
    if parts is not None:
        return parts
    shapes = [spec.input, *spec.feature_shapes()]
    parts = []
    for i, block in enumerate(spec.block_plan()):
        _, h, w = shapes[i]
        key = f"{spec.family}/{block.key(h, w)}"  # families may reuse kind names
        parts.append((f"features.{i}.", key, _cost_of(
            key, lambda: build_block(spec.family, block), shapes[i])))
    last = shapes[-1]
    key = f"head:{last[0]}:{last[1]}:{last[2]}:{spec.bottleneck}:{spec.classes}"
    parts.append(("", key, _cost_of(key, lambda: build_head(spec), last)))
    object.__setattr__(spec, "_cost_parts", parts)
    return parts


_RENAMED: dict[tuple[str, str], tuple[Layer, ...]] = {}


def _renamed(prefix: str, key: str, cost: ModelCost) -> tuple[Layer, ...]:
    """The layers of a block's cost under the block's name in the model (cached)."""
    layers = _RENAMED.get((prefix, key))
    if layers is None:
        layers = _RENAMED[(prefix, key)] = tuple(
            dataclasses.replace(layer, name=prefix + layer.name) for layer in cost.layers)
    return layers


def spec_totals(spec: StudentSpec) -> tuple[int, int]:
    """``(MACs, params)`` of ``build(spec)`` without assembling the layer table (fast path
    for filtering thousands of specs by their MAC budget)."""
    cached = _SPEC_COSTS.get(spec.id)
    if cached is not None:
        return cached.macs, cached.params
    parts = _spec_parts(spec)
    return sum(c.macs for _, _, c in parts), sum(c.params for _, _, c in parts)


def spec_cost(spec: StudentSpec) -> ModelCost:
    """MACs, params and layer table of ``build(spec)``, assembled from cached block costs.

    Layer names are the module names inside ``build(spec)`` (``features.3.conv`` ...), and
    the result equals ``module_cost(build(spec), spec.input)`` (a test checks it).
    """
    cached = _SPEC_COSTS.get(spec.id)
    if cached is not None:
        return cached
    parts = _spec_parts(spec)
    layers: list[Layer] = []
    for prefix, key, cost in parts:
        layers += _renamed(prefix, key, cost)
    result = ModelCost(sum(c.macs for _, _, c in parts), sum(c.params for _, _, c in parts), tuple(layers))
    _SPEC_COSTS[spec.id] = result
    return result


def macs_params(model_or_spec: "StudentSpec | nn.Module",
                input_shape: Sequence[int] | None = None) -> tuple[int, int]:
    """``(MACs per sample, parameters)`` of a spec (cached per id) or of a module
    (``input_shape`` = (C, H, W) required)."""
    if isinstance(model_or_spec, StudentSpec):
        cost = spec_cost(model_or_spec)
    else:
        if input_shape is None:
            raise ValueError("macs_params(model) needs input_shape=(C, H, W)")
        cost = module_cost(model_or_spec, tuple(input_shape))
    return cost.macs, cost.params


def load_cost_cache(path: str | Path) -> int:
    """Load block costs saved by :func:`save_cost_cache` (if the file exists and was written
    by the same torch and edgekd versions); returns how many were loaded. A bad file is
    ignored (the costs are simply counted again)."""
    import torch

    from edgekd import __version__

    path = Path(path)
    try:
        data = read_json(path)
        if (data.get("format") != COST_CACHE_FORMAT or data.get("torch") != torch.__version__
                or data.get("edgekd") != __version__):
            return 0
        loaded = {key: ModelCost(v["macs"], v["params"], tuple(Layer(**layer) for layer in v["layers"]))
                  for key, v in data["blocks"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    for key, cost in loaded.items():
        _BLOCK_COSTS.setdefault(key, cost)
    return len(loaded)


def save_cost_cache(path: str | Path) -> Path:
    """Save every block cost counted so far (atomically), keyed by block signature."""
    import torch

    from edgekd import __version__

    blocks = {key: {"macs": c.macs, "params": c.params, "layers": [layer.to_dict() for layer in c.layers]}
              for key, c in sorted(_BLOCK_COSTS.items())}
    return atomic_write_json(path, {"format": COST_CACHE_FORMAT, "torch": torch.__version__,
                                    "edgekd": __version__, "blocks": blocks})


@contextlib.contextmanager
def block_cost_cache(path: str | Path | None) -> Iterator[None]:
    """Use the block-cost file ``path`` for the duration of the ``with`` block: load it first,
    and save it afterwards if new blocks were counted (a file that cannot be written only costs
    time on the next run). ``None``: no file, the in-memory cache only."""
    if path is None:
        yield
        return
    load_cost_cache(path)
    before = len(_BLOCK_COSTS)
    try:
        yield
    finally:
        if len(_BLOCK_COSTS) > before:
            try:
                save_cost_cache(path)
            except OSError:
                pass
