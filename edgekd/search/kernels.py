"""A network as the fused kernels an inference runtime runs, and their signatures.

ONNX Runtime (CPU: the NCHWc transformer) and TensorRT fold BatchNorm into the convolution and
fuse the activation, and fuse a residual ``Add`` (plus the ReLU after it) into the convolution
that produces one of its operands. So a student runs as a short list of kernels:

* ``conv`` -- a dense convolution with its BN and activation (``+add`` when a residual sum
  is fused into it); 1x1 convolutions are the same kind with ``k1``;
* ``dwconv`` -- a depthwise convolution with its BN and activation;
* ``add`` -- a residual sum that could not be fused (no convolution right before it);
* ``pool`` -- average/max pooling (global pooling included);
* ``gemm`` -- a linear layer (the head, the low-rank bottleneck);
* ``elementwise`` -- anything else that costs time (squeeze-excitation's sigmoid and scale).

:func:`kernels_of` turns a layer table (:mod:`edgekd.search.cost`, the same one the roofline uses) into
that list. Each kernel has a :attr:`Kernel.signature`: kind, input and output channels, kernel
size, stride, input H*W, batch and precision, the key of the per-device table measured by
``edgekd calibrate`` (:mod:`edgekd.search.kernel_model`, in the spirit of nn-Meter, Zhang et al. 2021:
predict per kernel, not per layer, because the kernel is what the runtime schedules).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from edgekd.search.cost import Layer

#: Channel blocks the fallback's compute term may assume (ONNX Runtime's NCHWc kernels use 8
#: or 16 lanes, TensorRT's tensor-core tactics 8 or 32); the fit picks one per table.
CHANNEL_BLOCKS: tuple[int, ...] = (1, 8, 16, 32)
KERNEL_KINDS: tuple[str, ...] = ("conv", "dwconv", "add", "pool", "gemm", "elementwise")


@dataclass(frozen=True)
class Kernel:
    """One fused kernel at one batch and precision (shapes per sample; ``hw`` = input H*W)."""

    kind: str
    cin: int
    cout: int
    k: int
    stride: int
    hw: int
    batch: int
    precision: str
    macs: int = 0  # per sample
    elems: int = 0  # activations read + written per sample, weights included
    fused_add: bool = False

    @property
    def signature(self) -> str:
        add = "+add" if self.fused_add else ""
        return (f"{self.kind}{add}:{self.cin}:{self.cout}:k{self.k}:s{self.stride}:"
                f"hw{self.hw}:b{self.batch}:{self.precision}")

    def padded_macs(self, block: int) -> float:
        """MACs with channels padded to blocks of ``block`` (vectorised conv kernels compute
        whole channel blocks; a thin input, cin < block, is read as is)."""
        if block <= 1 or self.kind not in ("conv", "dwconv") or not self.cout:
            return float(self.macs)
        pad = lambda c: -(-c // block) * block  # noqa: E731
        factor = pad(self.cout) / self.cout
        if self.kind == "conv" and self.cin >= block:
            factor *= pad(self.cin) / self.cin
        return self.macs * factor

    @property
    def group(self) -> str:
        """The regression-fallback group: kind split by 1x1 / kxk and by a thin input
        (cin < 16: vectorised conv kernels waste lanes), as the profiles suggested."""
        if self.kind != "conv":
            return self.kind
        shape = "1x1" if self.k == 1 else "kxk"
        thin = "-thin" if self.cin < 16 else ""
        return f"conv-{shape}{thin}{'+add' if self.fused_add else ''}"


def _spatial(layer: Layer) -> int:
    return layer.in_elems // layer.in_channels if layer.in_channels else layer.in_elems


def kernels_of(layers: Sequence[Layer], batch: int, precision: str, *,
               fuse_add: bool = True) -> list[Kernel]:
    """The fused kernels of a layer table, in execution order (see the module docstring)."""
    kernels: list[Kernel] = []
    for layer in layers:
        elems = layer.in_elems + layer.out_elems + layer.weights
        if layer.kind in ("conv", "depthwise"):
            kind = "conv" if layer.kind == "conv" else "dwconv"
            kernels.append(Kernel(kind, layer.in_channels, layer.out_channels, layer.kernel,
                                  layer.stride, _spatial(layer), batch, precision, layer.macs, elems))
        elif layer.kind == "add":
            last = kernels[-1] if kernels else None
            if fuse_add and last is not None and last.kind == "conv" and not last.fused_add:
                kernels[-1] = Kernel(last.kind, last.cin, last.cout, last.k, last.stride, last.hw,
                                     batch, precision, last.macs, last.elems + layer.out_elems,
                                     fused_add=True)
            else:
                kernels.append(Kernel("add", 0, 0, 0, 0, layer.out_elems, batch, precision, 0, elems))
        elif layer.kind == "pool":
            kernels.append(Kernel("pool", 0, 0, 0, 0, layer.in_elems, batch, precision, 0, elems))
        elif layer.kind == "linear":
            kernels.append(Kernel("gemm", layer.in_channels, layer.out_channels, 0, 0, 1, batch,
                                  precision, layer.macs, elems))
        else:
            kernels.append(Kernel("elementwise", 0, 0, 0, 0, layer.out_elems, batch, precision, 0, elems))
    return kernels
