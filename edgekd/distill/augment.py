"""Training-time augmentation, applied to one batch tensor that student AND teacher then see.

Modes (``--augment``):

- ``none``: the images as they are.
- ``shift``: a random translation by up to ``pad`` pixels per image, the uncovered border
  filled with the background (pixel value 0 before normalisation); ``pad`` = round(side/14),
  2 px on 28x28 digits. For single-channel images, where a flip changes the class (2 vs 5).
- ``crop-flip``: the standard CIFAR recipe (He et al. 2016): pad by ``pad`` = round(side/8)
  pixels (4 on 32x32), take a random crop of the original size, flip horizontally with
  probability 1/2.
- ``auto``: ``crop-flip`` for images with 3 or more channels, ``shift`` for 1-channel ones.

An augmentation is drawn as parameters (:class:`AugParams`: offsets and flips per image) and
then applied (:func:`apply`), so the same draw can be replayed: the trainer draws once per
batch, builds ONE augmented tensor and feeds it to the student and to the teacher (same crop,
same flip), and a teacher-view cache (``TrainConfig.teacher_views``) stores the parameters of
K views per image and replays them when a view is served.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["AUGMENTS", "Augment", "AugParams", "resolve", "sample", "apply"]

#: The ``--augment`` choices (edgekd.cli.cli_options repeats them for click without importing
#: torch; tests/test_augment.py checks the two agree).
AUGMENTS = ("auto", "none", "shift", "crop-flip")


@dataclass(frozen=True)
class Augment:
    """A resolved augmentation: ``kind`` in none | shift | crop-flip, border ``pad`` in pixels,
    and whether images are flipped horizontally."""

    kind: str
    pad: int = 0
    flip: bool = False

    @property
    def active(self) -> bool:
        return self.kind != "none"


@dataclass
class AugParams:
    """One draw for ``n`` images: offsets into the padded image (0..2*pad) and flips."""

    oy: torch.Tensor
    ox: torch.Tensor
    flip: torch.Tensor

    def __getitem__(self, idx: torch.Tensor) -> "AugParams":
        return AugParams(self.oy[idx], self.ox[idx], self.flip[idx])


def resolve(mode: str, input_shape: tuple[int, ...]) -> Augment:
    """The augmentation ``mode`` means for images of ``input_shape`` (C, H, W)."""
    if mode not in AUGMENTS:
        from edgekd.core.errors import EdgekdError

        raise EdgekdError(f"unknown augmentation {mode!r}: use one of {', '.join(AUGMENTS)}")
    channels, side = int(input_shape[0]), min(int(input_shape[1]), int(input_shape[2]))
    if mode == "auto":
        mode = "crop-flip" if channels >= 3 else "shift"
    if mode == "none":
        return Augment("none")
    if mode == "shift":
        return Augment("shift", pad=max(1, round(side / 14)), flip=False)
    return Augment("crop-flip", pad=max(1, round(side / 8)), flip=True)


def sample(aug: Augment, n: int, gen: torch.Generator) -> AugParams:
    """Draw offsets (uniform in 0..2*pad) and flips (probability 1/2) for ``n`` images."""
    oy = torch.randint(0, 2 * aug.pad + 1, (n,), generator=gen)
    ox = torch.randint(0, 2 * aug.pad + 1, (n,), generator=gen)
    flip = (torch.rand(n, generator=gen) < 0.5) if aug.flip else torch.zeros(n, dtype=torch.bool)
    return AugParams(oy, ox, flip)


def apply(x: torch.Tensor, aug: Augment, params: AugParams, pad_value: torch.Tensor) -> torch.Tensor:
    """The augmented batch: ``x`` (N, C, H, W, normalised) padded with ``pad_value`` (the
    normalised background, per channel), cropped at ``params``' offsets, then flipped where
    ``params.flip``. One gather for the crop (no Python loop over images)."""
    if not aug.active:
        return x
    b, c, h, w = x.shape
    pad = aug.pad
    xp = pad_value.to(x.dtype).view(1, c, 1, 1).expand(b, c, h + 2 * pad, w + 2 * pad).clone()
    xp[:, :, pad:pad + h, pad:pad + w] = x
    cols_base = torch.arange(w)
    cols_base = torch.where(params.flip[:, None], cols_base.flip(0)[None, :], cols_base[None, :])
    rows = (params.oy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (params.ox[:, None] + cols_base)[:, None, None, :]
    return xp[torch.arange(b)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
