"""The config schema's defaults, for code that runs outside the workflow (tests, benchmarks, notebooks).

``config/schema.yaml`` is the one place a default lives. The workflow fills its config from it
(``snakemake.utils.validate`` sets defaults), and library functions take their keyword defaults from
here, so a function called from a notebook or the bench behaves as the rule that calls it.
``tests/test_defaults.py`` fails when a library default and the schema disagree.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"
_MISSING = object()


@functools.cache
def _schema() -> dict[str, Any]:
    with open(SCHEMA_PATH) as fh:
        return yaml.safe_load(fh)


def _fill(node: dict[str, Any]) -> Any:
    """A node's default: its own ``default``, with an object's unset keys filled from its properties."""
    props = node.get("properties")
    if props is None:
        return copy.deepcopy(node["default"]) if "default" in node else _MISSING
    out = copy.deepcopy(node.get("default", {}))
    for key, sub in props.items():
        value = _fill(sub)
        if value is not _MISSING and key not in out:
            out[key] = value
    return out


def default(key: str) -> Any:
    """The default of config key ``key`` (dotted, e.g. ``"detection.select"``; ``""`` for the whole config).

    Objects come back as dicts of their keys' defaults (keys without one are left out); each call returns
    a fresh copy. Raises KeyError naming the key when the schema has no such key, or no default for it.
    """
    node = _schema()
    for part in [p for p in key.split(".") if p]:
        try:
            node = node["properties"][part]
        except KeyError:
            raise KeyError(f"config key {key!r}: no {part!r} in {SCHEMA_PATH}") from None
    value = _fill(node)
    if value is _MISSING:
        raise KeyError(f"config key {key!r} has no default in {SCHEMA_PATH}")
    return value
