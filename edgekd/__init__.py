"""edgekd: compress a trained classifier into a thin, deep student for an edge device.

The pipeline (see docs/architecture.md): search thin-and-deep students that fit a device budget,
train them with FitNets hints then knowledge distillation, export to ONNX / TensorRT and
report measured accuracy against latency.

Importing this package is deliberately cheap: torch, onnx, onnxruntime, matplotlib and ray
are imported only inside the modules (and functions) that need them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
