"""The one reader of tagged config documents: a config dataclass's JSON form, as run.json keeps
it (``edgekd.compress-config/1``, ``edgekd.search-config/1``, ``edgekd.train-config/1``).

The rules are the same for every config: the document is a JSON object; its ``format`` tag,
when there, is the config's (an untagged copy, such as the training config in a result.json, is
read as the config's); every other key is a field of the dataclass; a JSON list becomes a tuple
where the field is a tuple. Anything else is one :class:`EdgekdError` line naming the document
and the fix. Each config's ``from_dict`` calls :func:`config_fields` and builds itself from the
result.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from edgekd.core.errors import EdgekdError


def config_fields(cls: type, data: Any, *, tag: str | None, what: str,
                  upgrade: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The keyword arguments of dataclass ``cls`` from the document ``data`` tagged ``tag``
    (None: an untagged part of another document); ``what`` names it in errors (``compress
    config``). ``upgrade(fields)`` rewrites, in place, the fields of an older version of the
    document before they are checked."""
    if not isinstance(data, dict):
        raise EdgekdError(f"{what}: expected a JSON object, got {type(data).__name__}: write it "
                          "with this edgekd version")
    data = dict(data)
    if tag is not None and data.pop("format", tag) != tag:
        raise EdgekdError(f"{what}: not a {tag} document: write it with this edgekd version")
    if upgrade is not None:
        upgrade(data)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise EdgekdError(f"{what}: unknown field(s) {', '.join(unknown)}: "
                          f"use only {', '.join(sorted(known))}")
    return {key: tuple(value) if isinstance(value, list) and "tuple[" in str(known[key].type) else value
            for key, value in data.items()}
