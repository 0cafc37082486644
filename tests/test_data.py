"""edgekd.inputs.data on the shipped MNIST subset: loading in every layout, folders, torchvision,
transfer sets, normalisation, splits and the teacher-logit cache."""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from edgekd.inputs.data import ImageDataset, Normalization, split_train_val, to_tensor
from edgekd.inputs.data import as_uint8_nchw, shape_text
from edgekd.inputs.images import IMAGE_SUFFIXES, list_images, read_images
from edgekd.inputs.loaders import load_dataset, shipped_subset_path
from edgekd.inputs.logits import teacher_logits
from edgekd.core.errors import EdgekdError


@pytest.fixture(scope="module")
def subset() -> ImageDataset:
    return load_dataset()


@pytest.fixture(scope="module")
def raw() -> dict[str, np.ndarray]:
    with np.load(shipped_subset_path()) as archive:
        return {k: archive[k] for k in archive.files}


def _save_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


# --------------------------------------------------------------------------- npz
def test_shipped_subset_and_its_normalisation(subset: ImageDataset, raw: dict) -> None:
    assert subset.x_train.dtype == np.uint8 and subset.x_train.shape == (10000, 1, 28, 28)
    assert subset.y_train.dtype == np.int64 and subset.x_test.shape == (2000, 1, 28, 28)
    assert subset.input_shape == (1, 28, 28) and subset.num_classes == 10
    assert subset.classes == [str(i) for i in range(10)]
    np.testing.assert_array_equal(subset.x_train[:, 0], raw["x_train"])
    pixels = raw["x_train"].astype(np.float64) / 255.0
    assert subset.normalization.mean[0] == pytest.approx(pixels.mean(), abs=1e-5)
    assert subset.normalization.std[0] == pytest.approx(pixels.std(), abs=1e-5)
    x = to_tensor(subset.x_train, subset.normalization)
    assert x.dtype == torch.float32
    assert float(x.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(x.std()) == pytest.approx(1.0, abs=1e-3)
    assert load_dataset("mnist-subset").fingerprint() == subset.fingerprint()


def _layouts(x: np.ndarray) -> dict[str, np.ndarray]:
    """The same 28x28 gray images in every accepted layout and value range."""
    rgb = np.stack([x, 255 - x, x // 2], axis=-1)  # (N, H, W, 3), three distinct channels
    return {"nhw_uint8": x, "nhw1_uint8": x[..., None], "n1hw_uint8": x[:, None],
            "nhw_float01": x.astype(np.float32) / 255.0, "nhwc_rgb_uint8": rgb,
            "nchw_rgb_float255": rgb.transpose(0, 3, 1, 2).astype(np.float64)}


@pytest.mark.parametrize("layout", list(_layouts(np.zeros((1, 2, 2), np.uint8))))
def test_npz_layouts_become_uint8_nchw(tmp_path: Path, raw: dict, layout: str) -> None:
    x_train, x_test = raw["x_train"][:64], raw["x_test"][:32]
    train, test = _layouts(x_train)[layout], _layouts(x_test)[layout]
    path = _save_npz(tmp_path / "d.npz", x_train=train, y_train=raw["y_train"][:64],
                     x_test=test, y_test=raw["y_test"][:32])
    data = load_dataset(str(path))
    expected = _layouts(x_train)["nhwc_rgb_uint8"].transpose(0, 3, 1, 2) if "rgb" in layout \
        else x_train[:, None]
    np.testing.assert_array_equal(data.x_train, expected)
    assert data.x_train.dtype == np.uint8 and data.x_train.flags.c_contiguous
    assert data.normalization.channels == data.input_shape[0]
    assert data.classes == [str(i) for i in range(int(max(raw["y_train"][:64].max(),
                                                              raw["y_test"][:32].max())) + 1)]


def test_npz_classes_are_read(tmp_path: Path, raw: dict) -> None:
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    path = _save_npz(tmp_path / "d.npz", x_train=raw["x_train"][:20], y_train=raw["y_train"][:20],
                     x_test=raw["x_test"][:10], y_test=raw["y_test"][:10], classes=names)
    assert load_dataset(str(path)).classes == list(names)


@pytest.mark.parametrize("change, message", [
    ({"drop": "y_test"}, "has no array 'y_test'"),
    ({"y_train": lambda y: y[:-1]}, "x_train has 64 images but y_train has 63 labels"),
    ({"y_test": lambda y: y + 10}, "outside 0..9"),
    ({"x_train": lambda x: (x.astype(np.float32) / 255 - 0.5) / 0.25}, "not normalised images"),
    ({"x_test": lambda x: x[:, :20]}, "train images are 1x28x28 but test images are 1x20x28"),
    ({"y_train": lambda y: np.eye(10)[y]}, "not one-hot"),
    ({"x_train": lambda x: x[:0], "y_train": lambda y: y[:0]}, "train split is empty"),
])
def test_npz_errors_say_what_is_wrong(tmp_path: Path, raw: dict, change: dict, message: str) -> None:
    arrays = {"x_train": raw["x_train"][:64], "y_train": raw["y_train"][:64],
              "x_test": raw["x_test"][:32], "y_test": raw["y_test"][:32], "classes": raw["classes"]}
    for key, edit in change.items():
        if key == "drop":
            del arrays[edit]
        else:
            arrays[key] = edit(arrays[key])
    path = _save_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(EdgekdError, match=message.replace(".", r"\.")):
        load_dataset(str(path))


def test_bad_paths_and_files(tmp_path: Path) -> None:
    with pytest.raises(EdgekdError, match="no such file or directory"):
        load_dataset(str(tmp_path / "missing.npz"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(EdgekdError, match="unsupported file type"):
        load_dataset(str(tmp_path / "notes.txt"))
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(EdgekdError, match="cannot read it as a .npz"):
        load_dataset(str(tmp_path / "broken.npz"))
    objects = np.array([{"a": 1}], dtype=object)
    path = tmp_path / "pickled.npz"
    np.savez(path, x_train=np.zeros((2, 4, 4), np.uint8), y_train=np.zeros(2, np.int64),
             x_test=np.zeros((2, 4, 4), np.uint8), y_test=np.zeros(2, np.int64), classes=objects)
    with pytest.raises(EdgekdError, match="cannot be read without pickle"):
        load_dataset(str(path))


# --------------------------------------------------------------------------- image folders
def _write_folder(root: Path, raw: dict, per_class: dict[str, int], classes=(0, 1, 2)) -> dict:
    """Write real MNIST digits as PNGs: root/<split>/<class>/<i>.png; returns what was written."""
    written: dict[str, list[tuple[np.ndarray, int]]] = {}
    for split, count in per_class.items():
        source = "train" if split == "train" else "test"
        written[split] = []
        for label, digit in enumerate(classes):
            folder = root / split / f"digit{digit}"
            folder.mkdir(parents=True)
            images = raw[f"x_{source}"][raw[f"y_{source}"] == digit][:count]
            for i, image in enumerate(images):
                Image.fromarray(image).save(folder / f"{i:03d}.png")
                written[split].append((image, label))
    return written


def test_image_folder_round_trip(tmp_path: Path, raw: dict) -> None:
    written = _write_folder(tmp_path / "digits", raw, {"train": 4, "val": 2})
    data = load_dataset(str(tmp_path / "digits"))
    assert data.classes == ["digit0", "digit1", "digit2"]
    assert data.input_shape == (1, 28, 28)
    np.testing.assert_array_equal(data.x_train[:, 0], np.stack([im for im, _ in written["train"]]))
    np.testing.assert_array_equal(data.y_train, [lab for _, lab in written["train"]])
    np.testing.assert_array_equal(data.x_test[:, 0], np.stack([im for im, _ in written["val"]]))
    resized = load_dataset(str(tmp_path / "digits"), image_size=(14, 20))
    assert resized.x_train.shape == (12, 1, 14, 20)


def test_image_folder_mixed_modes_become_rgb(tmp_path: Path, raw: dict) -> None:
    _write_folder(tmp_path / "d", raw, {"train": 2, "test": 1})
    gray = raw["x_train"][raw["y_train"] == 1][5]
    Image.fromarray(np.stack([gray, gray // 2, 255 - gray], -1)).save(tmp_path / "d/train/digit1/rgb.png")
    data = load_dataset(str(tmp_path / "d"))
    assert data.input_shape == (3, 28, 28) and data.normalization.channels == 3
    first = data.x_train[0]  # a grayscale image repeated over three channels
    np.testing.assert_array_equal(first[0], first[1])


@pytest.mark.parametrize("breakage, message", [
    ("no_test", "needs"), ("empty_class", "has no images"), ("corrupt", "cannot be read"),
    ("unknown_test_class", "that .* does not have"),
])
def test_image_folder_errors(tmp_path: Path, raw: dict, breakage: str, message: str) -> None:
    root = tmp_path / "d"
    _write_folder(root, raw, {"train": 2, "test": 1})
    if breakage == "no_test":
        for f in (root / "test").rglob("*.png"):
            f.unlink()
        for d in sorted((root / "test").iterdir()):
            d.rmdir()
        (root / "test").rmdir()
    elif breakage == "empty_class":
        (root / "train" / "digit9").mkdir()
    elif breakage == "corrupt":
        (root / "train" / "digit0" / "zz.png").write_bytes(b"not a png")
    elif breakage == "unknown_test_class":
        (root / "test" / "digit7").mkdir()
    with pytest.raises(EdgekdError, match=message):
        load_dataset(str(root))


def test_empty_image_folder(tmp_path: Path) -> None:
    (tmp_path / "d" / "train").mkdir(parents=True)
    (tmp_path / "d" / "test").mkdir()
    with pytest.raises(EdgekdError, match="no class subfolders"):
        load_dataset(str(tmp_path / "d"))


# --------------------------------------------------------------------------- torchvision
def _write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_torchvision_mnist_from_disk(tmp_path: Path, raw: dict) -> None:
    folder = tmp_path / "MNIST" / "raw"
    folder.mkdir(parents=True)
    for prefix, split, n in (("train", "train", 100), ("t10k", "test", 50)):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", raw[f"x_{split}"][:n], 2051)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", raw[f"y_{split}"][:n], 2049)
    data = load_dataset(f"torchvision:MNIST:{tmp_path}")
    np.testing.assert_array_equal(data.x_train[:, 0], raw["x_train"][:100])
    np.testing.assert_array_equal(data.y_test, raw["y_test"][:50])
    assert data.num_classes == 10 and data.input_shape == (1, 28, 28)


def test_torchvision_never_downloads(tmp_path: Path) -> None:
    with pytest.raises(EdgekdError, match="never downloads"):
        load_dataset(f"torchvision:FashionMNIST:{tmp_path}")
    assert not any(tmp_path.rglob("*")), "nothing may be downloaded or created"
    with pytest.raises(EdgekdError, match="no data set 'Mnist'"):
        load_dataset(f"torchvision:Mnist:{tmp_path}")
    with pytest.raises(EdgekdError, match="torchvision:NAME:ROOT"):
        load_dataset("torchvision:MNIST")


# --------------------------------------------------------------------------- splits, tensors
def test_split_train_val() -> None:
    train, val = split_train_val(1000, 0.1, seed=3)
    assert len(val) == 100 and len(train) == 900
    assert np.intersect1d(train, val).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(1000))
    np.testing.assert_array_equal(split_train_val(1000, 0.1, seed=3)[1], val)
    assert not np.array_equal(split_train_val(1000, 0.1, seed=4)[1], val)
    assert len(split_train_val(10, 0.0)[1]) == 0
    with pytest.raises(EdgekdError, match="outside"):
        split_train_val(10, 1.5)


def test_to_tensor_formula_and_checks() -> None:
    norm = Normalization(mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    x = np.array([0, 255, 51], dtype=np.uint8).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(to_tensor(x, norm).flatten().numpy(), [-1.0, 3.0, 0.2], rtol=1e-6)
    with pytest.raises(EdgekdError, match="3-channel"):
        to_tensor(np.zeros((1, 1, 2, 2), np.uint8), norm)
    assert Normalization.from_dict(norm.to_dict()) == norm
    with pytest.raises(EdgekdError, match="malformed"):
        Normalization.from_dict({"mean": [0.1]})


def test_fingerprint_sees_one_pixel(subset: ImageDataset) -> None:
    x_train = subset.x_train.copy()
    x_train[7, 0, 14, 14] ^= 1
    changed = ImageDataset(subset.name, x_train, subset.y_train, subset.x_test, subset.y_test,
                           subset.classes, subset.normalization, subset.source)
    assert changed.fingerprint() != subset.fingerprint()


# --------------------------------------------------------------------------- transfer sets
def load_transfer_set(path: str | Path, *, input_shape: Sequence[int] | None = None) -> np.ndarray:
    """Unlabeled transfer images as uint8 ``(N, C, H, W)`` (Ba & Caruana 2014), read with the
    package's image and array helpers (edgekd has no transfer-set option; this checks those helpers).

    ``path`` is an ``.npz`` with key ``x`` (or ``x_train``), or a folder searched recursively
    for images (class subfolders and labels are ignored). With ``input_shape`` ``(C, H, W)``
    folder images are read at that size and channel count, and an npz must match it.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise EdgekdError(f"transfer set '{path}': no such file or directory; pass a .npz with "
                          "array 'x' or a folder of images")
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise EdgekdError(f"transfer set '{path}': the folder has no images "
                              f"({', '.join(IMAGE_SUFFIXES)}); add images or pass a .npz")
        shape = tuple(input_shape) if input_shape is not None else None
        x = read_images(files, size_hw=tuple(shape[1:]) if shape else None,  # type: ignore[arg-type]
                        channels=shape[0] if shape else None)
    else:
        with np.load(path, allow_pickle=False) as archive:
            key = next((k for k in ("x", "x_train") if k in archive.files), None)
            if key is None:
                raise EdgekdError(f"transfer set '{path}': the .npz has no array 'x' or 'x_train' "
                                  f"(it has {', '.join(archive.files) or 'none'}); save the images as 'x'")
            x = as_uint8_nchw(archive[key], f"transfer set '{path}': {key}")
    if len(x) == 0:
        raise EdgekdError(f"transfer set '{path}' is empty: give at least one image")
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        raise EdgekdError(f"transfer set '{path}' has images {shape_text(x.shape[1:])} but the data "
                          f"is {shape_text(input_shape)}; give transfer images of the data's size "
                          "and channel count")
    return x


def test_transfer_set_from_npz_and_folder(tmp_path: Path, raw: dict) -> None:
    x = raw["x_test"][:30]
    np.savez(tmp_path / "a.npz", x=x)
    np.savez(tmp_path / "b.npz", x_train=x[..., None], y_train=np.zeros(30))  # labels ignored
    for name in ("a.npz", "b.npz"):
        np.testing.assert_array_equal(load_transfer_set(tmp_path / name, input_shape=(1, 28, 28)),
                                      x[:, None])
    _write_folder(tmp_path / "imgs", raw, {"train": 3, "test": 2})
    images = load_transfer_set(tmp_path / "imgs")
    assert images.shape == (15, 1, 28, 28) and images.dtype == np.uint8
    assert load_transfer_set(tmp_path / "imgs", input_shape=(3, 16, 16)).shape == (15, 3, 16, 16)
    with pytest.raises(EdgekdError, match="but the data is 3x32x32"):
        load_transfer_set(tmp_path / "a.npz", input_shape=(3, 32, 32))
    np.savez(tmp_path / "c.npz", images=x)
    with pytest.raises(EdgekdError, match="no array 'x' or 'x_train'"):
        load_transfer_set(tmp_path / "c.npz")
    (tmp_path / "none").mkdir()
    with pytest.raises(EdgekdError, match="has no images"):
        load_transfer_set(tmp_path / "none")


# --------------------------------------------------------------------------- teacher logits
class _CountingNet(nn.Module):
    """A tiny real classifier that counts its forward calls."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(4 * 13 * 13, 10))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net(x)


def test_teacher_logits_are_cached_and_keyed(tmp_path: Path, subset: ImageDataset) -> None:
    teacher, x, norm = _CountingNet(), subset.x_test[:300], subset.normalization
    first = teacher_logits(teacher, x, norm, cache_dir=tmp_path, teacher_fp="a" * 64, batch_size=128)
    assert first.shape == (300, 10) and first.dtype == np.float32 and teacher.calls == 3
    with torch.no_grad():
        np.testing.assert_allclose(first, teacher.net(to_tensor(x, norm)).numpy(), rtol=1e-5, atol=1e-6)
    files = list(tmp_path.glob("*.npy"))
    assert len(files) == 1 and files[0].name.startswith("a" * 16 + "-")
    stamp = files[0].stat().st_mtime_ns
    again = teacher_logits(teacher, x, norm, cache_dir=tmp_path, teacher_fp="a" * 64)
    assert teacher.calls == 3, "a cached result must not run the teacher"
    np.testing.assert_array_equal(again, first)
    assert files[0].stat().st_mtime_ns == stamp
    teacher_logits(teacher, x, norm, cache_dir=tmp_path, teacher_fp="b" * 64)  # another teacher
    teacher_logits(teacher, x[:200], norm, cache_dir=tmp_path, teacher_fp="a" * 64)  # other data
    assert teacher.calls == 3 + 1 + 1 and len(list(tmp_path.glob("*.npy"))) == 3
    files[0].write_bytes(b"torn")  # a corrupt cache entry is recomputed, not trusted
    np.testing.assert_array_equal(
        teacher_logits(teacher, x, norm, cache_dir=tmp_path, teacher_fp="a" * 64), first)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_teacher_logits_keep_train_mode(subset: ImageDataset) -> None:
    teacher = _CountingNet().train()
    teacher_logits(teacher, subset.x_test[:8], subset.normalization, cache_dir=None, teacher_fp="x")
    assert teacher.training


def test_gzip_is_not_a_dataset(tmp_path: Path) -> None:
    path = tmp_path / "data.npz.gz"
    path.write_bytes(gzip.compress(b"x"))
    with pytest.raises(EdgekdError, match="unsupported file type"):
        load_dataset(str(path))
