"""The torch modules student families are built from (imported only when a model is built).

* :func:`conv_bn_act` -- conv, BatchNorm, ReLU/ReLU6 (an ``nn.Sequential`` named ``conv``,
  ``bn``, ``relu``): plain students and every stem.
* :class:`BasicBlock` -- He et al. 2016: conv-BN-ReLU-conv-BN + identity or 1x1 projection
  shortcut, then ReLU.
* :class:`DepthwiseSeparable` -- Howard et al. 2017 (MobileNet): depthwise kxk conv-BN-act,
  then pointwise 1x1 conv-BN-act.
* :class:`MBConv` -- Sandler et al. 2018 (MobileNetV2 inverted residual): 1x1 expansion
  conv-BN-act (skipped at expansion 1), depthwise kxk conv-BN-act, optional squeeze-excitation
  (Hu et al. 2018, as in Tan & Le 2019's MBConv: ``x * sigmoid(W2 relu(W1 avgpool(x)))``
  with a reduction of 4 of the block's input channels), linear 1x1 projection conv-BN; the
  input is added back when stride is 1 and channels are unchanged.

Modules that cost time on an inference engine but are not convolutions, linears or pools
carry a ``cost_kind`` class attribute (:mod:`edgekd.search.cost` reads it; the cost model never
looks at class names).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "relu6": nn.ReLU6}


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
                 classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(*features)
        self.pool, self.bottleneck, self.head = head_modules(width, bottleneck, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.head(self.bottleneck(torch.flatten(x, 1)))
