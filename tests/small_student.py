"""One small real student for the bundle and export tests: a plain 2-stage network trained a few
Adam steps on the shipped MNIST subset (non-trivial accuracy, seconds of CPU)."""

from __future__ import annotations

import torch

from edgekd.inputs.data import ImageDataset, to_tensor
from edgekd.inputs.loaders import load_dataset
from edgekd.search.space import Stage, StudentSpec, build

SMALL_SPEC = StudentSpec(family="plain", input=(1, 28, 28), classes=10,
                         stages=(Stage(8, 1, 2), Stage(16, 1, 2)))


def trained_small_student(images: int = 3200, batch: int = 64) -> tuple[torch.nn.Module, ImageDataset]:
    """SMALL_SPEC trained one pass over the first ``images`` training images (seed 0), in eval mode,
    with the data set it was trained on."""
    dataset = load_dataset()
    torch.manual_seed(0)
    model = build(SMALL_SPEC)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = to_tensor(dataset.x_train[:images], dataset.normalization)
    y = torch.from_numpy(dataset.y_train[:images])
    model.train()
    for start in range(0, len(x), batch):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x[start:start + batch]), y[start:start + batch]).backward()
        optimizer.step()
    return model.eval(), dataset
