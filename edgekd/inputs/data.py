"""The data set every loader returns, :class:`ImageDataset`: uint8 images laid out
``(N, C, H, W)``, int64 labels in ``0..classes-1``, the class names, and the
:class:`Normalization` computed on the train split (per-channel mean and standard deviation of
``x / 255``). The normalisation travels with the student checkpoint and the ONNX metadata, so
export and the on-device kit feed the model exactly what it was trained on:
``x_float = (x_uint8 / 255 - mean[c]) / std[c]``.

Also here: the checks that turn any arrays into one (:func:`make_dataset`), fingerprints, the
train/validation split, ``--val-data`` and ``--normalize``, and images as tensors. Loading a data
set from a ``--data`` spec is :mod:`edgekd.inputs.loaders`; image folders and torchvision sets
are read by :mod:`edgekd.inputs.images`; a teacher's logits on them are cached by
:mod:`edgekd.inputs.logits`.
"""

from __future__ import annotations

import hashlib
import json
import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from edgekd.core.errors import EdgekdError

if TYPE_CHECKING:  # pragma: no cover
    import torch

MAX_CHANNELS = 4  # an axis of at most this size is taken as the channel axis
MAX_CLASSES = 100_000  # labels imply this many classes at most (ImageNet-21k has 21,841)
_STATS_CHUNK_PIXELS = 4096 * 28 * 28  # pixels per chunk when computing mean/std (bounded memory at any size)
_MIN_STD = 1e-6  # a constant channel gets std 1 instead of a division by ~0
# --------------------------------------------------------------------------- normalisation
@dataclass(frozen=True)
class Normalization:
    """Per-channel statistics of ``x / 255`` on the train split: ``(x/255 - mean) / std``."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std) or not self.mean:
            raise EdgekdError(f"normalization has {len(self.mean)} means and {len(self.std)} stds: "
                              "give one mean and one std per channel")
        if any(s <= 0 for s in self.std):
            raise EdgekdError(f"normalization std {list(self.std)} has a value <= 0: "
                              "every std must be positive")

    @property
    def channels(self) -> int:
        return len(self.mean)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Normalization":
        try:
            return cls(mean=tuple(float(v) for v in data["mean"]),
                       std=tuple(float(v) for v in data["std"]))
        except (KeyError, TypeError, ValueError) as error:
            raise EdgekdError(f"normalization {data!r} is malformed ({error}): "
                              "expected {'mean': [..], 'std': [..]} with one number per channel") from None

    @classmethod
    def from_images(cls, x_uint8: np.ndarray) -> "Normalization":
        """Mean and (population) std per channel of ``x/255`` over an ``(N, C, H, W)`` array,
        accumulated in float64 over chunks so a large set never needs a float copy."""
        channels = x_uint8.shape[1]
        total = np.zeros(channels, dtype=np.float64)
        total_sq = np.zeros(channels, dtype=np.float64)
        step = max(1, _STATS_CHUNK_PIXELS // max(1, x_uint8.shape[2] * x_uint8.shape[3]))
        for start in range(0, len(x_uint8), step):
            chunk = x_uint8[start:start + step].astype(np.float64) / 255.0
            total += chunk.sum(axis=(0, 2, 3))
            total_sq += np.square(chunk).sum(axis=(0, 2, 3))
        count = x_uint8.shape[0] * x_uint8.shape[2] * x_uint8.shape[3]
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
        std = np.where(std < _MIN_STD, 1.0, std)
        return cls(mean=tuple(round(float(m), 6) for m in mean),
                   std=tuple(round(float(s), 6) for s in std))


# --------------------------------------------------------------------------- the data set
@dataclass(eq=False)  # arrays: compare fingerprints, not fields
class ImageDataset:
    """A labelled image classification set, uint8 ``(N, C, H, W)`` with int64 labels.
    ``x_val``/``y_val`` (``--val-data``, :func:`with_validation`): validation images given
    apart; then training uses every training image and selects on these instead of holding
    out a share of x_train."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    normalization: Normalization
    source: str
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    _fingerprint: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(int(v) for v in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def fingerprint(self) -> str:
        """sha256 of the four arrays (dtype, shape, bytes) and the class names; cached."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for array in (self.x_train, self.y_train, self.x_test, self.y_test):
                _update_digest(digest, array)
            if self.x_val is not None and self.y_val is not None:  # unchanged for sets without
                _update_digest(digest, self.x_val)
                _update_digest(digest, self.y_val)
            digest.update(json.dumps(list(self.classes)).encode("utf-8"))
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for run.json and reports."""
        return {"name": self.name, "source": self.source, "input_shape": list(self.input_shape),
                "classes": list(self.classes), "train": int(len(self.y_train)),
                "test": int(len(self.y_test)), "normalization": self.normalization.to_dict(),
                "fingerprint": self.fingerprint(),
                **({"val": int(len(self.y_val))} if self.y_val is not None else {})}


def _update_digest(digest: "hashlib._Hash", array: np.ndarray) -> None:
    array = np.ascontiguousarray(array)
    digest.update(f"{array.dtype.str}{array.shape}".encode("ascii"))
    digest.update(memoryview(array).cast("B"))  # the bytes in place: no copy of a GB-sized set


def array_fingerprint(x: np.ndarray, *extra: Any) -> str:
    """sha256 of an array's dtype, shape and bytes, plus the JSON of ``extra`` values."""
    digest = hashlib.sha256()
    _update_digest(digest, x)
    if extra:
        digest.update(json.dumps(extra, sort_keys=True, default=str).encode("utf-8"))
    return digest.hexdigest()


# --------------------------------------------------------------------------- loading
def make_dataset(*, name: str, source: str, x_train: np.ndarray, y_train: np.ndarray,
                 x_test: np.ndarray, y_test: np.ndarray, classes: Sequence[str] | None = None,
                 where: str | None = None) -> ImageDataset:
    """Validate and normalise raw arrays into an :class:`ImageDataset`.

    Images are converted to uint8 ``(N, C, H, W)``; labels to int64 and checked against the
    class list (default: ``'0'..str(max label)``); the normalisation is computed on x_train.
    """
    where = where or f"data '{source}'"
    xs = {"x_train": as_uint8_nchw(x_train, f"{where}: x_train"),
          "x_test": as_uint8_nchw(x_test, f"{where}: x_test")}
    ys = {"y_train": _as_labels(y_train, f"{where}: y_train"),
          "y_test": _as_labels(y_test, f"{where}: y_test")}
    for split in ("train", "test"):
        n_x, n_y = len(xs[f"x_{split}"]), len(ys[f"y_{split}"])
        if n_x != n_y:
            raise EdgekdError(f"{where}: x_{split} has {n_x} images but y_{split} has {n_y} labels; "
                              "give exactly one label per image")
        if n_x == 0:
            raise EdgekdError(f"{where}: the {split} split is empty; give at least one image")
    if xs["x_train"].shape[1:] != xs["x_test"].shape[1:]:
        raise EdgekdError(f"{where}: train images are {shape_text(xs['x_train'].shape[1:])} but "
                          f"test images are {shape_text(xs['x_test'].shape[1:])}; "
                          "use one image size and channel count for both splits")
    top = int(max(ys["y_train"].max(), ys["y_test"].max()))
    if classes is None and top >= MAX_CLASSES:
        raise EdgekdError(f"{where}: the largest label is {top}, which would mean {top + 1} classes "
                          f"(at most {MAX_CLASSES}): labels must be class indices 0..K-1; renumber "
                          "them, or give the class names as 'classes'")
    names = [str(i) for i in range(top + 1)] if classes is None else [str(c) for c in classes]
    if not names:
        raise EdgekdError(f"{where}: the class list is empty; give one name per class")
    for key, labels in ys.items():
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= len(names):
            raise EdgekdError(f"{where}: {key} has labels {low}..{high} outside 0..{len(names) - 1} "
                              f"({len(names)} classes); labels must index the class list")
    return ImageDataset(name=name, x_train=xs["x_train"], y_train=ys["y_train"],
                        x_test=xs["x_test"], y_test=ys["y_test"], classes=names,
                        normalization=Normalization.from_images(xs["x_train"]), source=source)


def shape_text(shape: Sequence[int]) -> str:
    """``(3, 32, 32)`` -> ``3x32x32``."""
    return "x".join(str(int(v)) for v in shape)


def as_uint8_nchw(x: Any, what: str) -> np.ndarray:
    """Convert images to uint8 ``(N, C, H, W)``.

    Layouts: ``(N, H, W)`` (grayscale), ``(N, H, W, C)`` or ``(N, C, H, W)`` with C <= 4
    (the channel axis is the one of size <= 4; ``(N, C, H, W)`` wins a tie). Values: uint8 or
    integers in 0..255 as they are; floats in 0..1 are scaled by 255, floats in 0..255 are
    rounded. Negative or larger values mean the images are already normalised: an error.
    """
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        channels_first = x.shape[1] <= MAX_CHANNELS
        channels_last = x.shape[3] <= MAX_CHANNELS
        if channels_last and not channels_first:
            x = x.transpose(0, 3, 1, 2)
        elif not channels_first:
            raise EdgekdError(f"{what} has shape {x.shape}: cannot tell the channel axis; "
                              f"store images as (N, H, W), (N, H, W, C) or (N, C, H, W) with C <= {MAX_CHANNELS}")
    else:
        raise EdgekdError(f"{what} has shape {x.shape}: expected images (N, H, W), (N, H, W, C) "
                          "or (N, C, H, W)")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.number):
        raise EdgekdError(f"{what} has dtype {x.dtype}: store pixel values as uint8 (0..255) "
                          "or floats (0..1)")
    if x.size == 0:
        return np.ascontiguousarray(x.astype(np.uint8))
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 255 or not np.isfinite(high):
        raise EdgekdError(f"{what} has values {low:g}..{high:g}: store raw pixels (uint8 0..255 or "
                          "floats 0..1), not normalised images; edgekd computes the normalisation")
    if np.issubdtype(x.dtype, np.floating) and high <= 1.0:
        x = x * 255.0
    return np.ascontiguousarray(np.clip(np.rint(x), 0, 255).astype(np.uint8))


def _as_labels(y: Any, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise EdgekdError(f"{what} has shape {y.shape}: labels must be one class index per image "
                          "(shape (N,)), not one-hot vectors")
    if y.size and np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
        y = y.astype(np.int64)
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise EdgekdError(f"{what} has dtype {y.dtype}: labels must be integer class indices")
    return np.ascontiguousarray(y.astype(np.int64))


# --------------------------------------------------------------------------- splits, tensors
def with_validation(dataset: ImageDataset, val: ImageDataset, spec: str) -> ImageDataset:
    """``dataset`` with the validation images of ``--val-data spec``: every image of ``val``
    (its train and test splits), which must have ``dataset``'s image shape and classes. The
    normalisation stays ``dataset``'s (computed on its training images)."""
    if val.input_shape != dataset.input_shape:
        raise EdgekdError(f"--val-data {spec}: images are {shape_text(val.input_shape)} but the training "
                          f"images are {shape_text(dataset.input_shape)}: give validation images of the "
                          "same size and channels")
    if list(val.classes) != list(dataset.classes):
        raise EdgekdError(f"--val-data {spec}: classes {', '.join(val.classes)} differ from the data's "
                          f"({', '.join(dataset.classes)}): give the same classes in the same order")
    return dataclasses.replace(dataset, x_val=np.concatenate([val.x_train, val.x_test]),
                               y_val=np.concatenate([val.y_train, val.y_test]))


def split_train_val(n_train: int, val_fraction: float = 0.1, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n_train)`` into sorted train and validation indices (a seeded random
    permutation; ``round(n_train * val_fraction)`` validation images, at least one when the
    fraction is positive)."""
    if not 0.0 <= val_fraction < 1.0:
        raise EdgekdError(f"validation fraction {val_fraction} is outside [0, 1): use e.g. 0.1")
    n_val = int(round(n_train * val_fraction))
    if val_fraction > 0:
        n_val = max(n_val, 1)
    if n_val >= n_train:
        raise EdgekdError(f"cannot hold out {n_val} validation images from {n_train}: "
                          "use more training data or a smaller validation fraction")
    order = np.random.default_rng(seed).permutation(n_train)
    return np.sort(order[n_val:]).astype(np.int64), np.sort(order[:n_val]).astype(np.int64)


#: Pixels per image side squared times images: an inference batch holds about this many pixels
#: (1,024 images of 32x32; 20 of 224x224), so that a batch's activations stay bounded at any
#: resolution (a 1,024-image batch at 224 px holds GBs in its first feature maps alone).
EVAL_BATCH_PIXELS = 1024 * 32 * 32


def eval_batch(input_shape: Sequence[int], cap: int) -> int:
    """Images per inference batch for images of ``input_shape`` (C, H, W): at most ``cap``, about
    :data:`EVAL_BATCH_PIXELS` pixels, at least 8."""
    return max(8, min(cap, EVAL_BATCH_PIXELS // max(1, int(input_shape[-1]) * int(input_shape[-2]))))


def apply_normalize(dataset: ImageDataset, normalize: str | None) -> ImageDataset:
    """Set ``dataset.normalization`` from ``--normalize`` (:func:`deploy.onnxmeta.parse_normalize`:
    dataset | imagenet | none | MEAN,STD), so the teacher is fed as it was trained, and the
    students, the teacher-logit cache, the checkpoints and the ONNX metadata all follow it.
    ``None`` or ``dataset`` keeps the train split's statistics. Returns the same object."""
    from edgekd_deploy.errors import DeployError
    from edgekd_deploy.onnxmeta import parse_normalize

    if normalize is None:
        return dataset
    try:
        pair = parse_normalize(normalize, dataset.input_shape[0])
    except DeployError as error:
        raise EdgekdError(str(error)) from None
    if pair is not None:
        dataset.normalization = Normalization(mean=tuple(pair[0]), std=tuple(pair[1]))
    return dataset


def to_tensor(x_uint8: np.ndarray, norm: Normalization) -> "torch.Tensor":
    """uint8 ``(N, C, H, W)`` -> float32 tensor ``(x/255 - mean[c]) / std[c]``."""
    import torch

    if x_uint8.ndim != 4 or x_uint8.shape[1] != norm.channels:
        raise EdgekdError(f"images of shape {tuple(x_uint8.shape)} do not match a {norm.channels}-channel "
                          "normalization: expected (N, C, H, W) with C = the data's channels")
    x = torch.from_numpy(np.ascontiguousarray(x_uint8)).to(torch.float32).div_(255.0)
    mean = torch.tensor(norm.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(norm.std, dtype=torch.float32).view(1, -1, 1, 1)
    return x.sub_(mean).div_(std)

