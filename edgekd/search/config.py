"""The configuration of a search (``edgekd search``): :class:`SearchConfig` holds every default
of the command once (the grid's own defaults stay in :class:`~edgekd.search.space.SpaceConfig`);
the CLI reads its option defaults from here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgekd.core.configdoc import config_fields
from edgekd.core.errors import EdgekdError
from edgekd.search.space import SpaceConfig

__all__ = ["SEARCH_CONFIG_FORMAT", "SearchConfig"]

SEARCH_CONFIG_FORMAT = "edgekd.search-config/1"


@dataclass(frozen=True)
class SearchConfig:
    """What a search takes: the device profile, the task (``input_shape`` CxHxW, ``classes``),
    budget overrides (None: the profile's), how many students to shortlist, whether to time
    them on this host (``measure``, host-cpu only), a calibration file for the latency model,
    and the grid (``space``)."""

    profile: str = "host-cpu"
    input_shape: tuple[int, ...] = (1, 28, 28)
    classes: int = 10
    max_macs: int | None = None
    latency_ms: float | None = None
    shortlist: int = 8
    measure: bool = False
    calibration: str | None = None
    space: SpaceConfig = field(default_factory=SpaceConfig)

    def __post_init__(self) -> None:
        if self.shortlist < 1 or self.classes < 1:
            raise EdgekdError(f"search config: shortlist={self.shortlist}, classes={self.classes}: "
                              "give positive integers")

    def to_dict(self) -> dict[str, Any]:
        """A JSON document (tuples become lists), tagged with its format."""
        return {"format": SEARCH_CONFIG_FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        """The inverse of :meth:`to_dict`; a foreign format or unknown field is one error line."""
        found = config_fields(cls, data, tag=SEARCH_CONFIG_FORMAT, what="search config")
        space = config_fields(SpaceConfig, found.pop("space", {}), tag=None, what="search config's space")
        return cls(**found, space=SpaceConfig(**space))
