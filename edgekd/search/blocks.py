"""The torch modules student families are built from (imported only when a model is built).

* :func:`conv_bn_act` -- conv, BatchNorm, ReLU/ReLU6/hard-swish (an ``nn.Sequential`` named
  ``conv``, ``bn``, ``relu``): plain students and every stem; :func:`conv_pool_stem` adds
  ResNet's 3x3 stride-2 max-pool after it (He et al. 2016).
* :class:`BasicBlock` -- He et al. 2016: conv-BN-ReLU-conv-BN + identity or 1x1 projection
  shortcut, then ReLU.
* :class:`DepthwiseSeparable` -- Howard et al. 2017 (MobileNet): depthwise kxk conv-BN-act,
  then pointwise 1x1 conv-BN-act.
* :class:`MBConv` -- Sandler et al. 2018 (MobileNetV2 inverted residual): 1x1 expansion
  conv-BN-act (skipped at expansion 1), depthwise kxk conv-BN-act, optional squeeze-excitation
  (Hu et al. 2018, as in Tan & Le 2019's MBConv: ``x * sigmoid(W2 relu(W1 avgpool(x)))``
  with a reduction of 4 of the block's input channels), linear 1x1 projection conv-BN; the
  input is added back when stride is 1 and channels are unchanged. Hard-swish
  (``x * relu6(x + 3) / 6``, Howard et al. 2019, MobileNetV3) is one of its activations.
* :class:`RepVGGBlock` -- Ding et al. 2021 (RepVGG): trains as ``relu(BN(conv kxk) + BN(conv
  1x1) + BN(x))`` (the identity branch when stride is 1 and channels are unchanged) and is
  re-parameterised for inference into one kxk conv with bias: each BN folds into its conv
  (``W' = W * gamma / sqrt(var + eps)``, ``b' = beta - mean * gamma / sqrt(var + eps)``), the
  1x1 and identity kernels are zero-padded to kxk, and the three kernels and biases add up.
  :func:`deployed` returns a copy of a model with every such block fused (what is exported
  and costed).

Modules that cost time on an inference engine but are not convolutions, linears or pools
carry a ``cost_kind`` class attribute (:mod:`edgekd.search.cost` reads it; the cost model never
looks at class names).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn



class HardSwish(nn.Module):
    """Hard-swish ``x * relu6(x + 3) / 6`` (Howard et al. 2019), written with add, clip and
    multiply so that it exports as ops every TensorRT ONNX parser reads (ONNX's own HardSwish
    op needs opset 14 and is missing from older parsers' operator lists)."""

    cost_kind = "elementwise"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * nn.functional.relu6(x + 3.0) * (1.0 / 6.0)


ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": HardSwish}


class Add(nn.Module):
    """``a + b`` as a module, so the residual sum shows up as a layer in cost tables."""

    cost_kind = "add"

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class Scale(nn.Module):
    """``x * gate`` (squeeze-excitation's channel re-weighting) as a costed element-wise op."""

    cost_kind = "elementwise"

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return x * gate


def conv_bn_act(cin: int, cout: int, kernel: int, stride: int, act: str = "relu",
                groups: int = 1) -> nn.Sequential:
    """conv (no bias, "same" padding) -> BatchNorm -> activation, named conv / bn / relu."""
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups,
                       bias=False),
        bn=nn.BatchNorm2d(cout),
        relu=ACTIVATIONS[act](),
    ))


def conv_pool_stem(cin: int, cout: int, kernel: int, stride: int, act: str = "relu") -> nn.Sequential:
    """conv-BN-act (stride ``stride``), then a 3x3 stride-2 max-pool: ResNet's stem."""
    stem = conv_bn_act(cin, cout, kernel, stride, act)
    stem.add_module("pool", nn.MaxPool2d(3, stride=2, padding=1))
    return stem


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


class DepthwiseSeparable(nn.Module):
    """MobileNet block: depthwise kxk conv-BN-act (carries the stride), pointwise 1x1 conv-BN-act."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, act: str = "relu") -> None:
        super().__init__()
        self.depthwise = conv_bn_act(cin, cin, kernel, stride, act, groups=cin)
        self.pointwise = conv_bn_act(cin, cout, 1, 1, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class SqueezeExcite(nn.Module):
    """Squeeze-excitation: ``x * sigmoid(reduce-expand(avgpool(x)))`` (Hu et al. 2018)."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.relu = nn.ReLU()
        self.expand = nn.Conv2d(squeezed, channels, 1)
        self.gate = nn.Sigmoid()
        self.scale = Scale()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale(x, self.gate(self.expand(self.relu(self.reduce(self.pool(x))))))


class MBConv(nn.Module):
    """MobileNetV2 inverted residual (optionally with squeeze-excitation, as in EfficientNet)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int,
                 act: str = "relu6", se: bool = False) -> None:
        super().__init__()
        hidden = cin * expansion
        self.expand: nn.Module = (conv_bn_act(cin, hidden, 1, 1, act) if expansion > 1
                                  else nn.Identity())
        self.depthwise = conv_bn_act(hidden, hidden, kernel, stride, act, groups=hidden)
        self.se: nn.Module = SqueezeExcite(hidden, max(1, cin // 4)) if se else nn.Identity()
        self.project = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(hidden, cout, 1, bias=False), bn=nn.BatchNorm2d(cout)))
        self.residual = stride == 1 and cin == cout
        self.add: nn.Module = Add() if self.residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return self.add(out, x) if self.residual else out


class RepVGGBlock(nn.Module):
    """RepVGG block: kxk conv-BN + 1x1 conv-BN (+ BN identity) summed, then ReLU; :meth:`reparameterized`
    is the one-conv inference form (see the module docstring)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.dense = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), bn=nn.BatchNorm2d(cout)))
        self.pointwise = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(cin, cout, 1, stride, 0, bias=False), bn=nn.BatchNorm2d(cout)))
        self.identity: nn.Module | None = (nn.BatchNorm2d(cout) if stride == 1 and cin == cout
                                           else None)
        self.add = Add()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.add(self.dense(x), self.pointwise(x))
        if self.identity is not None:
            out = self.add(out, self.identity(x))
        return self.relu(out)

    @torch.no_grad()
    def reparameterized(self) -> nn.Sequential:
        """The same function in eval mode as one kxk conv with bias, then ReLU."""
        conv = self.dense.conv
        k, pad = conv.kernel_size[0], conv.kernel_size[0] // 2
        weight, bias = _folded(conv.weight, self.dense.bn)
        w1, b1 = _folded(nn.functional.pad(self.pointwise.conv.weight, [pad] * 4), self.pointwise.bn)
        weight, bias = weight + w1, bias + b1
        if self.identity is not None:
            eye = torch.zeros_like(conv.weight)
            eye[torch.arange(conv.in_channels), torch.arange(conv.in_channels), pad, pad] = 1
            w2, b2 = _folded(eye, self.identity)
            weight, bias = weight + w2, bias + b2
        out = nn.Conv2d(conv.in_channels, conv.out_channels, k, conv.stride, pad, bias=True,
                        device=weight.device, dtype=weight.dtype)
        out.weight.copy_(weight)
        out.bias.copy_(bias)
        return nn.Sequential(OrderedDict(conv=out, relu=nn.ReLU()))


def _folded(weight: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight`` and a zero bias with ``bn`` (eval statistics) folded in."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return weight * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


def deployed(model: nn.Module) -> nn.Module:
    """``model`` as it is deployed: a copy in which every module with a ``reparameterized()`` method
    (:class:`RepVGGBlock`) is replaced by what it returns (its fused form); ``model`` itself when it has none."""
    import copy

    if not any(callable(getattr(m, "reparameterized", None)) for m in model.modules()):
        return model
    was_training = model.training
    out = copy.deepcopy(model).eval()
    if callable(getattr(out, "reparameterized", None)):
        return out.reparameterized().train(was_training)
    for name, module in list(out.named_modules()):
        if name and callable(getattr(module, "reparameterized", None)):
            parent_name, _, child = name.rpartition(".")
            setattr(out.get_submodule(parent_name), child, module.reparameterized())
    model.train(was_training)
    return out.train(was_training)


def head_modules(width: int, bottleneck: int | None, classes: int
                 ) -> tuple[nn.Module, nn.Module, nn.Module]:
    """Global average pool, the low-rank bottleneck (or Identity) and the linear head."""
    low_rank: nn.Module = nn.Identity()
    if bottleneck:
        low_rank = nn.Linear(width, bottleneck, bias=False)
        width = bottleneck
    return nn.AdaptiveAvgPool2d(1), low_rank, nn.Linear(width, classes)


class StudentNet(nn.Module):
    """``features`` (blocks) -> global average ``pool`` -> ``bottleneck`` -> ``head``."""

    def __init__(self, features: list[nn.Module], width: int, bottleneck: int | None,
                 classes: int, head: nn.Module | None = None) -> None:
        super().__init__()
        self.features = nn.Sequential(*features)
        self.pool, self.bottleneck, self.head = head_modules(width, bottleneck, classes)
        if head is not None:  # a family's own classifier (edgekd.search.reference)
            self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.head(self.bottleneck(torch.flatten(x, 1)))
