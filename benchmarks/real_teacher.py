"""A torchvision teacher trained from scratch on a ``.npz`` set, the way a user would train it
outside edgekd: ``torchvision.models.get_model(ARCH, weights=None, num_classes=K)``, inputs
``(x/255 - ImageNet mean) / ImageNet std`` (so edgekd must be told ``--normalize imagenet``),
random crop (pad side/8) + horizontal flip, SGD (momentum 0.9, Nesterov, weight decay 5e-4),
one-cycle learning rate (peak ``--lr``), batch 64, one torch thread.

Writes ``WORK/teacher-NAME-ARCH.pt`` (a plain ``state_dict``: edgekd loads it with ``--arch``) and
``WORK/teacher-NAME-ARCH.json`` (recipe, test accuracy, balanced accuracy, MACs, wall-clock).
A finished teacher is reused (the JSON exists and names the same recipe).

Usage:
    python benchmarks/real_teacher.py --data ../shared/data/clothing96.npz --arch resnet18 \
        --epochs 3 --work /tmp/real_inputs
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalise(x_uint8: np.ndarray) -> "Any":
    import torch

    x = torch.from_numpy(np.ascontiguousarray(x_uint8)).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)


def crop_flip(x: "Any", gen: "Any") -> "Any":
    """Pad by side/8 (zeros after normalisation), random crop back, random horizontal flip."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = x.shape
    pad = max(1, round(h / 8))
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    out = torch.stack([padded[i, :, oy[i]:oy[i] + h, ox[i]:ox[i] + w] for i in range(n)])
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(3)
    return out


def accuracies(model: "Any", x: np.ndarray, y: np.ndarray, classes: int) -> tuple[float, float]:
    """(top-1, balanced top-1) on uint8 images."""
    import torch

    model.eval()
    preds = []
    with torch.inference_mode():
        for i in range(0, len(x), 256):
            preds.append(model(normalise(x[i:i + 256])).argmax(1).numpy())
    pred = np.concatenate(preds)
    per_class = [float((pred[y == c] == c).mean()) for c in range(classes) if (y == c).any()]
    return float((pred == y).mean()), float(np.mean(per_class))


def train_teacher(data: Path, arch: str, epochs: int, work: Path, *, lr: float = 0.1,
                  batch: int = 64, seed: int = 0) -> dict[str, Any]:
    """Train (or reuse) the teacher; returns its record."""
    import torch
    import torchvision

    name = data.stem
    stem = work / f"teacher-{name}-{arch}"
    recipe = {"arch": arch, "epochs": epochs, "lr": lr, "batch": batch, "seed": seed,
              "normalize": "imagenet", "augment": "crop-flip", "optimizer": "sgd-nesterov-0.9-wd5e-4",
              "schedule": "one-cycle", "threads": 1}
    record_path = stem.with_suffix(".json")
    if record_path.is_file() and stem.with_suffix(".pt").is_file():
        record = json.loads(record_path.read_text())
        if record.get("recipe") == recipe:
            return record
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    d = np.load(data)
    x_train, y_train = d["x_train"].transpose(0, 3, 1, 2), d["y_train"]
    x_test, y_test = d["x_test"].transpose(0, 3, 1, 2), d["y_test"]
    classes = len(d["classes"])
    model = torchvision.models.get_model(arch, weights=None, num_classes=classes)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = epochs * (len(x_train) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    started = time.monotonic()
    epoch_s = []
    for epoch in range(epochs):
        mark = time.monotonic()
        model.train()
        order = torch.randperm(len(x_train), generator=gen).numpy()
        for i in range(len(x_train) // batch):
            idx = np.sort(order[i * batch:(i + 1) * batch])
            xb = crop_flip(normalise(x_train[idx]), gen)
            loss = torch.nn.functional.cross_entropy(model(xb), torch.from_numpy(y_train[idx]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        epoch_s.append(round(time.monotonic() - mark, 1))
        print(f"[teacher {name} {arch}] epoch {epoch + 1}/{epochs}: loss {float(loss):.3f}, "
              f"{epoch_s[-1]} s", flush=True)
    acc, bal = accuracies(model, x_test, y_test, classes)
    work.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), stem.with_suffix(".pt"))
    from edgekd.search.cost import module_cost

    cost = module_cost(model, (3, *x_train.shape[2:]))
    record = {"data": f"../shared/data/{data.name}", "recipe": recipe, "test_acc": acc,
              "test_balanced_acc": bal, "macs": cost.macs, "params": cost.params,
              "wall_clock_s": round(time.monotonic() - started, 1), "epoch_s": epoch_s}
    record_path.write_text(json.dumps(record, indent=2))
    print(f"[teacher {name} {arch}] test accuracy {acc:.4f} (balanced {bal:.4f})", flush=True)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    print(json.dumps(train_teacher(args.data, args.arch, args.epochs, args.work, lr=args.lr), indent=2))


if __name__ == "__main__":
    main()
