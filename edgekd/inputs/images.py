"""Image folders and torchvision data sets as :class:`~edgekd.inputs.data.ImageDataset`, and
image files read with Pillow (see :mod:`edgekd.inputs.loaders` for the accepted layouts)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgekd.core.errors import EdgekdError
from edgekd.inputs.data import ImageDataset, as_uint8_nchw, make_dataset

__all__ = ["IMAGE_SUFFIXES", "TORCHVISION_PREFIX", "list_images", "read_images", "load_image_folder",
           "load_torchvision"]

#: a ``--data`` spec ``torchvision:NAME:ROOT`` names a torchvision data set already on disk
TORCHVISION_PREFIX = "torchvision:"
TORCHVISION_EXAMPLES = ("MNIST", "FashionMNIST", "KMNIST", "CIFAR10", "CIFAR100", "SVHN")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _size_hw(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int):
        size = (image_size, image_size)
    else:
        size = tuple(int(v) for v in image_size)
    if len(size) != 2 or min(size) <= 0:
        raise EdgekdError(f"image size {image_size!r} is invalid: give one positive int or H,W")
    return size  # type: ignore[return-value]


def read_images(paths: Sequence[Path], *, size_hw: tuple[int, int] | None = None,
                channels: int | None = None) -> np.ndarray:
    """Read image files with Pillow into uint8 ``(N, C, H, W)``.

    All images are resized (bilinear) to ``size_hw`` (default: the first image's size).
    ``channels`` forces 1 (grayscale) or 3 (RGB); by default the set is grayscale when every
    image is, otherwise RGB (grayscale images are then repeated over the three channels).
    """
    from PIL import Image, UnidentifiedImageError

    if channels not in (None, 1, 3):
        raise EdgekdError(f"cannot read images as {channels} channels: use 1 (grayscale) or 3 (RGB)")
    arrays: list[np.ndarray] = []
    for path in paths:
        try:
            with warnings.catch_warnings(), Image.open(path) as image:
                # a decompression bomb (more pixels than PIL's limit) is an error, not a warning
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                gray = image.mode in _GRAY_MODES if channels is None else channels == 1
                image = image.convert("L" if gray else "RGB")
                if size_hw is None:
                    size_hw = (image.height, image.width)
                if (image.height, image.width) != size_hw:
                    image = image.resize((size_hw[1], size_hw[0]), Image.Resampling.BILINEAR)
                array = np.asarray(image, dtype=np.uint8)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError,
                Image.DecompressionBombWarning) as error:
            raise EdgekdError(f"image '{path}' cannot be read ({error}); remove or replace it") from None
        arrays.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
    if any(a.shape[0] == 3 for a in arrays):
        arrays = [np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a for a in arrays]
    return np.stack(arrays) if arrays else np.zeros((0, channels or 1, 0, 0), dtype=np.uint8)


def load_image_folder(root: Path, *, image_size: int | Sequence[int] | None) -> ImageDataset:
    train_dir = root / "train"
    test_dir = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise EdgekdError(f"data '{root}': an image folder needs {root}/train/<class>/ and "
                          f"{root}/test/<class>/ (or val/); create them with one subfolder per class")
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise EdgekdError(f"data '{root}': {train_dir} has no class subfolders; put the images "
                          f"of each class in {train_dir}/<class>/")
    unknown = sorted(p.name for p in test_dir.iterdir()
                     if p.is_dir() and not p.name.startswith(".") and p.name not in classes)
    if unknown:
        raise EdgekdError(f"data '{root}': {test_dir} has classes {unknown} that {train_dir} does "
                          "not have; use the same class folders in both splits")
    splits: dict[str, tuple[list[Path], list[int]]] = {}
    for split, folder in (("train", train_dir), ("test", test_dir)):
        paths: list[Path] = []
        labels: list[int] = []
        for index, name in enumerate(classes):
            found = list_images(folder / name) if (folder / name).is_dir() else []
            if split == "train" and not found:
                raise EdgekdError(f"data '{root}': class folder {folder / name} has no images "
                                  f"({', '.join(IMAGE_SUFFIXES)}); add images or remove the folder")
            paths += found
            labels += [index] * len(found)
        if not paths:
            raise EdgekdError(f"data '{root}': {folder} has no images; put images in {folder}/<class>/")
        splits[split] = (paths, labels)
    size_hw = _size_hw(image_size)
    if size_hw is None:
        size_hw = read_images(splits["train"][0][:1]).shape[2:]  # the first image's size
    x_train = read_images(splits["train"][0], size_hw=size_hw)
    x_test = read_images(splits["test"][0], size_hw=size_hw, channels=x_train.shape[1])
    if x_train.shape[1] != x_test.shape[1]:  # RGB test images with a grayscale train split
        raise EdgekdError(f"data '{root}': train images are grayscale but some test images are "
                          "colour; use one colour mode for both splits")
    return make_dataset(name=root.name, source=str(root), classes=classes, where=f"data '{root}'",
                        x_train=x_train, y_train=np.array(splits["train"][1], dtype=np.int64),
                        x_test=x_test, y_test=np.array(splits["test"][1], dtype=np.int64))


# --------------------------------------------------------------------------- torchvision
def load_torchvision(spec: str) -> ImageDataset:
    parts = spec[len(TORCHVISION_PREFIX):].split(":", 1)
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise EdgekdError(f"data '{spec}': expected 'torchvision:NAME:ROOT', "
                          "e.g. 'torchvision:MNIST:~/data'")
    name, root = parts[0], str(Path(parts[1]).expanduser())
    import torchvision.datasets as tvd

    factory = getattr(tvd, name, None)
    if not isinstance(factory, type):
        raise EdgekdError(f"data '{spec}': torchvision has no data set '{name}'; use e.g. "
                          f"{', '.join(TORCHVISION_EXAMPLES)} (names are case-sensitive)")
    splits = {}
    for train in (True, False):
        kwargs: dict[str, Any] = ({"split": "train" if train else "test"} if name == "SVHN"
                                  else {"train": train})
        try:
            splits[train] = factory(root, download=False, **kwargs)
        except (RuntimeError, FileNotFoundError, OSError):
            split = ", split='test'" if name == "SVHN" and not train else ""
            raise EdgekdError(
                f"data '{spec}': torchvision {name} ({'train' if train else 'test'} split) is not in "
                f"'{root}', and edgekd never downloads at run time: download it once with python -c "
                f"\"import torchvision; torchvision.datasets.{name}('{root}'{split}, download=True)\", "
                "then rerun") from None
        except TypeError as error:
            raise EdgekdError(f"data '{spec}': torchvision {name} is not a simple train/test data "
                              f"set ({error}); export it to a .npz or an image folder instead") from None
    arrays = {train: _torchvision_arrays(ds, f"data '{spec}'") for train, ds in splits.items()}
    classes = getattr(splits[True], "classes", None)
    return make_dataset(name=name, source=spec, classes=classes, where=f"data '{spec}'",
                        x_train=arrays[True][0], y_train=arrays[True][1],
                        x_test=arrays[False][0], y_test=arrays[False][1])


def _torchvision_arrays(ds: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of a torchvision set: its in-memory ``data`` / ``targets`` (or
    ``labels``) when it has them, else each item's PIL image read one by one."""
    data = getattr(ds, "data", None)
    labels = getattr(ds, "targets", getattr(ds, "labels", None))
    if data is not None and labels is not None:
        to_numpy = (lambda v: v.numpy() if hasattr(v, "numpy") else np.asarray(v))
        return as_uint8_nchw(to_numpy(data), f"{where}: images"), np.asarray(to_numpy(labels))
    images, targets = [], []
    for image, target in ds:
        images.append(np.asarray(image))
        targets.append(int(target))
    return as_uint8_nchw(np.stack(images), f"{where}: images"), np.asarray(targets)
