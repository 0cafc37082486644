"""What every runner of :mod:`deploy.runners` shares: the input description, the feed and batch
checks, ``close``/``with``, and the path of an engine's sidecar JSON (written by ``deploy build``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import DeployError

__all__ = ["_Runner", "sidecar_path"]


def sidecar_path(engine_path: str | Path) -> Path:
    """``model.engine`` -> ``model.engine.json``: what ``deploy build`` knew about the engine
    (TensorRT version, precision, the ONNX file's metadata such as the normalisation)."""
    return Path(str(engine_path) + ".json")


class _Runner:
    """What both runners share: the input description and the feed checks."""

    backend = ""
    input_name: str
    input_shape: tuple[int | None, ...]   # (batch, C, H, W); None where dynamic
    output_names: list[str]
    metadata: dict[str, str]
    precision: str
    device: str

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample, e.g. (C, H, W)."""
        return tuple(int(d) for d in self.input_shape[1:])  # type: ignore[arg-type]

    @property
    def fixed_batch(self) -> int | None:
        return self.input_shape[0]

    def check_batch(self, batch: int) -> None:
        if batch < 1:
            raise DeployError(f"batch {batch}: use a batch of at least 1")
        if self.fixed_batch is not None and batch != self.fixed_batch:
            raise DeployError(f"model has a fixed batch of {self.fixed_batch}, asked for {batch}: "
                              "use that batch, or export with 'edgekd export --dynamic-batch'")

    def random_feed(self, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
        """A standard-normal float32 input of shape (batch, C, H, W)."""
        self.check_batch(batch)
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((batch, *self.sample_shape)).astype(np.float32)
        return {self.input_name: x}

    def check_feed(self, feed: dict[str, np.ndarray]) -> None:
        if set(feed) != {self.input_name}:
            raise DeployError(f"feed has tensors {sorted(feed)}, the model takes "
                              f"['{self.input_name}']: name the input '{self.input_name}'")
        x = feed[self.input_name]
        if tuple(x.shape[1:]) != self.sample_shape:
            raise DeployError(f"input shape {tuple(x.shape[1:])} does not match the model's "
                              f"{self.sample_shape}: pass data shaped (N, "
                              f"{', '.join(map(str, self.sample_shape))})")
        self.check_batch(int(x.shape[0]))

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the runner holds (device memory, CUDA stream); idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
