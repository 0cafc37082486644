"""Data sets from a ``--data`` spec (:func:`load_dataset`), checked into an
:class:`~edgekd.inputs.data.ImageDataset`.

Accepted data specs (:func:`load_dataset`):

- ``None`` or ``"mnist-subset"``: the MNIST subset shipped inside the package
  (``edgekd/assets/mnist_subset.npz``): the first 10,000 training images of MNIST (the
  shuffled-with-seed-0 train split of the archive built from the MIT-licensed PNG copy
  ``rasbt/mnist-pngs``) and 2,000 test images sampled at random (seed 0) from the 10,000
  MNIST test images; 28x28 grayscale, classes ``'0'..'9'``. See ``edgekd/assets/README.md``.
- a ``.npz`` file with ``x_train``, ``y_train``, ``x_test``, ``y_test`` and optionally
  ``classes``. Images may be uint8 (0..255) or float (0..1 or 0..255), laid out
  ``(N, H, W)`` (grayscale), ``(N, H, W, C)`` or ``(N, C, H, W)``.
- an image folder ``DIR/train/<class>/*.png|jpg|...`` and ``DIR/test/<class>/*`` (or
  ``DIR/val/<class>/*``), read with Pillow and resized to one size (``image_size``, or the
  first training image's size).
- ``"torchvision:NAME:ROOT"``, e.g. ``torchvision:CIFAR10:~/data``: a torchvision data set
  that is already on disk. edgekd never downloads at run time.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgekd.core.errors import EdgekdError
from edgekd.inputs.data import ImageDataset, make_dataset
from edgekd.inputs.images import TORCHVISION_PREFIX, load_image_folder, load_torchvision

__all__ = ["SHIPPED_SUBSET", "DATA_HELP", "load_dataset", "shipped_subset_path"]

SHIPPED_SUBSET = "mnist-subset"
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
DATA_HELP = ("'mnist-subset' (default), a .npz with x_train/y_train/x_test/y_test, "
             "an image folder DIR/train/<class>/ + DIR/test/<class>/, or 'torchvision:NAME:ROOT'")


def load_dataset(spec: str | None = None, *, image_size: int | Sequence[int] | None = None
                 ) -> ImageDataset:
    """Load a data set from a spec (see the module docstring) and compute its normalisation.

    ``image_size`` (an int or ``(H, W)``) applies to image folders only.
    """
    if spec is None or spec == SHIPPED_SUBSET:
        return _load_npz(shipped_subset_path(), name=SHIPPED_SUBSET, source=SHIPPED_SUBSET)
    if spec.startswith(TORCHVISION_PREFIX):
        return load_torchvision(spec)
    path = Path(spec).expanduser()
    if not path.exists():
        raise EdgekdError(f"data '{spec}': no such file or directory; pass {DATA_HELP}")
    if path.is_dir():
        return load_image_folder(path, image_size=image_size)
    if path.suffix.lower() == ".npz" or zipfile.is_zipfile(path):
        return _load_npz(path, name=path.stem, source=str(path))
    raise EdgekdError(f"data '{spec}': unsupported file type '{path.suffix}'; pass {DATA_HELP}")


def shipped_subset_path() -> Path:
    """Path of the MNIST subset shipped in ``edgekd/assets``."""
    from importlib.resources import files

    return Path(str(files("edgekd.assets").joinpath("mnist_subset.npz")))


def _open_npz(path: Path) -> Any:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise EdgekdError(f"data '{path}': cannot read it as a .npz archive ({error}); "
                          "write it with numpy.savez or numpy.savez_compressed") from None


def _npz_array(archive: Any, key: str, path: Path) -> np.ndarray:
    if key not in archive.files:
        raise EdgekdError(f"data '{path}': the .npz has no array '{key}' (it has "
                          f"{', '.join(archive.files) or 'none'}); save x_train, y_train, x_test, "
                          "y_test (and optionally classes)")
    try:
        return archive[key]
    except ValueError as error:  # object arrays need pickle, which we refuse
        raise EdgekdError(f"data '{path}': array '{key}' cannot be read without pickle ({error}); "
                          "store numbers and strings as plain numpy arrays, not Python objects") from None


def _load_npz(path: Path, *, name: str, source: str) -> ImageDataset:
    with _open_npz(path) as archive:
        arrays = {key: _npz_array(archive, key, path) for key in NPZ_KEYS}
        classes = ([str(c) for c in _npz_array(archive, "classes", path).tolist()]
                   if "classes" in archive.files else None)
    where = f"data '{path}'"
    return make_dataset(name=name, source=source, classes=classes, where=where,
                        x_train=arrays["x_train"], y_train=arrays["y_train"],
                        x_test=arrays["x_test"], y_test=arrays["y_test"])
