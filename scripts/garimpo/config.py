"""Typed values for nested ``--config`` overrides.

Snakemake reads a nested ``--config key='{a: 3, b: false}'`` with YAML's base loader, so every value
inside arrives as a string ('3', 'false') and schema validation refuses it. Where the schema wants a
number, boolean or null and the string reads as one, it is converted; strings the schema allows stay.
The same holds for a YAML config file's 1e-4, which YAML 1.1 reads as a string.
Where the schema allows null, YAML's spellings of null (``null``, ``Null``, ``NULL``, ``~`` and the empty
value) become None even when a string is allowed too (YAML 1.2 core schema, section 10.3.2), so
``--config negatives='{protected_areas: null}'`` switches the input off instead of naming a file "null".
Keys that were renamed (:data:`RENAMED_KEYS`) are refused by their old name before anything else
(:func:`renamed_key_error`), so an old config fails with the new name rather than "unexpected key".
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from typing import Any

import yaml

# Sentinel-2A, the first Sentinel-2 satellite, was launched on 23 June 2015 (ESA:
# https://www.esa.int/Applications/Observing_the_Earth/Copernicus/Sentinel-2/Celebrating_10_years_of_Sentinel-2):
# a period ending before it holds no scene.
SENTINEL2_LAUNCH = "2015-06-23"

# YAML 1.2 core schema's null (https://yaml.org/spec/1.2.2/#1032-tag-resolution); '' is `key:` with no value.
YAML_NULLS = frozenset({"null", "Null", "NULL", "~", ""})
_PY_TYPES = {"integer": (int,), "number": (int, float), "boolean": (bool,), "null": (type(None),)}

# Old dotted key -> new one, for keys renamed when "tile" stopped meaning three things (a training image,
# a grid cell, a GeoTIFF block): "chip" is the classifier's input, "cell" the fan-out grid's cell.
# A section is listed too, so that a config naming only the section is told where it went.
RENAMED_KEYS = {
    "tiles.size_m": "chips.size_m",
    "tiles": "chips",
    "detection.tile_size_m": "detection.cell_size_m",
    "matching.per_tile": "matching.per_chip",
}


def renamed_key_error(config: dict, renamed: dict[str, str] = RENAMED_KEYS) -> str | None:
    """An error naming the first old key of ``renamed`` that ``config`` still sets, and its new name; None
    when there is none. Deepest keys first, so ``tiles.size_m`` is named rather than its section.

    Checked before schema validation, which would only say the old key is not allowed there.
    """
    for old in sorted(renamed, key=lambda k: -k.count(".")):
        *parents, leaf = old.split(".")
        node: Any = config
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            new = renamed[old]
            value = node[leaf]
            # YAML's spelling of a scalar (false, null, 640); a string by its repr; a section by its name alone.
            scalar = _shown(value) if isinstance(value, str) else json.dumps(value)
            written = new if isinstance(value, (dict, list)) else f"{new}: {scalar}"
            return (
                f"config {old}: this key was renamed {new}; write {written} instead (in the config file or "
                f"--config); see the description of {new} in config/schema.yaml"
            )
    return None


def _allowed(schema: dict) -> list[str]:
    """JSON types a schema allows, including those of its ``oneOf`` / ``anyOf`` branches."""
    kind = schema.get("type", [])
    types = [kind] if isinstance(kind, str) else list(kind)
    for branch in (*schema.get("oneOf", ()), *schema.get("anyOf", ())):
        types += [t for t in _allowed(branch) if t not in types]
    return types


def _fits(value: Any, types: list[str]) -> bool:
    for name in types:
        py = _PY_TYPES.get(name)
        # bool is an int in Python: an integer field must not take true/false.
        if py and isinstance(value, py) and not (name in ("integer", "number") and isinstance(value, bool)):
            return True
    return False


def _properties(schema: dict) -> dict:
    """Property schemas of an object schema, including those of its ``oneOf`` / ``anyOf`` branches
    (e.g. a local_dirs item that is a path or a {path, encoding, pixel_size_m} mapping)."""
    props = dict(schema.get("properties", {}))
    for branch in (*schema.get("oneOf", ()), *schema.get("anyOf", ())):
        props.update({k: v for k, v in _properties(branch).items() if k not in props})
    return props


def coerce_strings(value: Any, schema: dict) -> Any:
    """``value`` with strings turned into the scalar type ``schema`` asks for, recursively."""
    if isinstance(value, dict):
        # Named keys by their property schema (an object branch's too); the others by additionalProperties.
        props, extra = _properties(schema), schema.get("additionalProperties")
        return {k: coerce_strings(v, props.get(k, extra if isinstance(extra, dict) else {})) for k, v in value.items()}
    if isinstance(value, list):
        return [coerce_strings(v, schema.get("items", {})) for v in value]
    types = _allowed(schema)
    if isinstance(value, str) and "null" in types and value.strip() in YAML_NULLS:
        return None
    if isinstance(value, str) and types and "string" not in types:
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if _fits(parsed, types):
            return parsed
        if "number" in types:
            try:  # YAML 1.1 reads 1e-4 (no dot) as a string
                return float(value)
            except ValueError:
                pass
    return value


def coerce_config(config: dict, schema_path: str | os.PathLike) -> None:
    """Convert ``config`` in place against the JSON schema in ``schema_path`` (YAML); dates YAML read unquoted
    (``start: 2024-06-01`` is a date object, not text) become their ISO text, as the schema expects."""
    with open(schema_path) as fh:
        schema = yaml.safe_load(fh)
    config.update(_dates_as_text(coerce_strings(config, schema)))


def _dates_as_text(value: Any) -> Any:
    import datetime

    if isinstance(value, dict):
        return {k: _dates_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dates_as_text(v) for v in value]
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def config_error(config: dict, schema_path: str | os.PathLike) -> str | None:
    """The one most relevant schema violation of ``config``, as ``config KEY.PATH: message``; None if valid.

    Snakemake's own message for a value under ``oneOf`` (a path, or a mapping) lists every branch's
    schema; jsonschema's ``best_match`` names the offending key instead ('encodng' was unexpected).
    A name refused by ``propertyNames`` (a region, download or chip set NAME that becomes part of a
    path) or a value refused by a ``pattern`` is told with its schema's description (what is allowed),
    not the bare regular expression: ``config regions.my region: the name 'my region' is not allowed; ...``.
    An unknown key is named with its section, the keys allowed there and the nearest one: ``config
    classifier.lr_scheduler: Additional properties are not allowed ('patiense' was unexpected); the keys
    allowed under classifier.lr_scheduler are ['factor', 'patience'] (did you mean 'patience'?); ...``.
    A name or value with a line break or too long (``maxLength``) is shown by its repr, cut short; a key set
    without the one it goes with (``dependentRequired``, a region's field and value) is named with both.
    """
    import jsonschema
    from jsonschema.exceptions import best_match

    with open(schema_path) as fh:
        schema = yaml.safe_load(fh)
    error = best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is None:
        return None
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
    described = isinstance(error.schema, dict) and error.schema.get("description")
    if "propertyNames" in error.schema_path:
        rule = described or error.message
        name = error.instance
        named = f"{where}.{name}" if isinstance(name, str) and name.isprintable() and len(name) <= 100 else where
        return (
            f"config {named}: the name {_shown(name)} is not allowed under {where}: {rule}. "
            "Rename it, and every key that refers to it, in the config"
        )
    if error.validator in ("pattern", "maxLength") and described:
        return f"config {where}: {_shown(error.instance)} is not allowed: {described}"
    if error.validator == "dependentRequired" and isinstance(error.instance, dict):
        given = [k for k in error.validator_value if k in error.instance]
        missing = [n for k in given for n in error.validator_value[k] if n not in error.instance]
        if given and missing:
            rule = described or f"See the description of {where} in {schema_path}."
            return f"config {where}: {given[0]!r} is set without {missing[0]!r}; set both or neither. {rule}"
    allowed = error.schema.get("properties") if isinstance(error.schema, dict) else None
    if error.validator == "additionalProperties" and allowed and isinstance(error.instance, dict):
        import difflib

        unknown = [k for k in error.instance if k not in allowed]
        guesses = [m for k in unknown for m in difflib.get_close_matches(str(k), list(allowed), n=1)]
        hint = f" (did you mean {', '.join(map(repr, guesses))}?)" if guesses else ""
        return (
            f"config {where or '(top level)'}: {error.message}; the keys allowed under {where or 'the top level'}"
            f" are {sorted(allowed)}{hint}; see their descriptions in {schema_path}"
        )
    return f"config {where or '(top level)'}: {error.message}; see its description in {schema_path}"


def _shown(value: Any) -> str:
    """``value`` as a message shows it: its repr (line breaks visible), cut short when it is long."""
    if isinstance(value, str) and len(value) > 60:
        return f"{value[:40]!r}... ({len(value)} characters)"
    return repr(value)


def _leaves(value: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every scalar in ``value``, list items as ``key[i]``."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{where}[{i}]")
    else:
        yield where, value


def non_finite_error(config: dict) -> str | None:
    """The first value of ``config`` that is a float but not a finite number (NaN, inf, -inf), as an
    error naming its key; None when there is none.

    YAML reads ``.nan`` and ``.inf`` as floats, and a nested ``--config`` ``nan`` or ``inf`` becomes one
    where the schema wants a number (:func:`coerce_strings`). JSON Schema's ranges cannot refuse NaN
    (every comparison with it is false), so ``detection.isolated_threshold: .nan`` would pass, select no
    chip and write NaN, which is not JSON, into the outputs. The whole config is walked, every key.
    """
    for key, value in _leaves(config):
        if isinstance(value, float) and not math.isfinite(value):
            return (
                f"config {key}: {value} is not a finite number (YAML .nan or .inf, or nan or inf in --config), "
                "and no range check can refuse it; write a number in the key's range (its description in "
                "config/schema.yaml gives it), or null where the key allows it"
            )
    return None


def text_encoding_error(config: dict) -> str | None:
    """The first vector or table input whose text ``encoding`` Python does not know, as an error; else None.

    The schema cannot list every codec, so a misspelt one ('utf9', 'cp1525') would otherwise surface only
    when the job reading the file runs.
    """
    import codecs

    specs = [(f"positives.points[{i}]", s) for i, s in enumerate(config.get("positives", {}).get("points") or [])]
    negatives = config.get("negatives", {})
    specs += [
        (f"negatives.hard_negative_points[{i}]", s) for i, s in enumerate(negatives.get("hard_negative_points") or [])
    ]
    specs += [(f"negatives.{k}", negatives.get(k)) for k in ("protected_areas", "urban_mask")]
    specs += [("encroachment.areas", config.get("encroachment", {}).get("areas"))]
    specs += [(f"regions.{name}", spec) for name, spec in (config.get("regions") or {}).items()]
    for key, spec in specs:
        name = spec.get("encoding") if isinstance(spec, dict) else None
        if name is None:
            continue
        try:
            codecs.lookup(str(name))
        except LookupError:
            return (
                f"config {key}.encoding: unknown text encoding {name!r}; use a Python codec name such as "
                "utf-8, cp1252 or latin-1, or null to let the reader find it"
            )
    return None


def _get(config: dict, key: str) -> Any:
    """The value at dotted ``key`` of ``config``; None where a level is missing."""
    value: Any = config
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def config_order_error(config: dict) -> str | None:
    """The first pair of keys whose values the schema accepts one by one but not together, as
    ``config KEY: what is wrong; what to do``; None when every pair is in order.

    JSON Schema checks each value against a range; it cannot say that a start comes before an end.
    Checked: imagery.period (real ISO dates, start not after end, end not before Sentinel-2A's launch);
    periods (each one's dates, unique names, in time order without overlap: ``garimpo.change.periods``);
    study_bounds (west < east, south < north); detection.isolated_threshold >= detection.threshold when
    both are set; matching.p_low < matching.p_high; augmentation.haze_strength low <= high;
    detection.stride_px at most a chip (chips.size_m / 10 m px), so no ground is left unscanned;
    classifier.bands among imagery.bands; each regions.NAME's field and value both set or both null;
    each key of evaluation.sources a chip set of evaluation.chip_sets. Keys that are missing or of
    another type are left to the schema. Raises nothing.
    """
    from datetime import date

    period = _get(config, "imagery.period")
    if isinstance(period, list) and len(period) == 2:
        days = []
        for i, text in enumerate(period):
            try:
                days.append(date.fromisoformat(str(text)))
            except ValueError as err:
                return (
                    f"config imagery.period[{i}]: {text!r} is not a date ({err}); write it as YYYY-MM-DD, "
                    "e.g. 2024-12-31"
                )
        if days[0] > days[1]:
            return (
                f"config imagery.period: the start {period[0]} is after the end {period[1]}, so no scene "
                f"can match; write [start, end], e.g. [{period[1]}, {period[0]}]"
            )
        if days[1] < date.fromisoformat(SENTINEL2_LAUNCH):
            return (
                f"config imagery.period: the end {period[1]} is before {SENTINEL2_LAUNCH}, when Sentinel-2A was "
                "launched, so no scene can match; choose a period after it, e.g. [2023-01-01, 2025-12-31]"
            )

    periods = _get(config, "periods")
    if isinstance(periods, list):
        from garimpo.change.periods import parse_periods
        from garimpo.errors import InputDataError

        try:
            parse_periods(periods)
        except InputDataError as err:
            return str(err)

    bounds = _get(config, "study_bounds")
    if isinstance(bounds, list) and len(bounds) == 4 and all(map(_is_number, bounds)):
        west, south, east, north = bounds
        if not west < east:
            return (
                f"config study_bounds: west {west} is not less than east {east}; the order is "
                "[west, south, east, north] in degrees (longitude first)"
            )
        if not south < north:
            return (
                f"config study_bounds: south {south} is not less than north {north}; the order is "
                "[west, south, east, north] in degrees (longitude first)"
            )

    low, high = _get(config, "detection.threshold"), _get(config, "detection.isolated_threshold")
    if _is_number(low) and _is_number(high) and high < low:
        return (
            f"config detection.isolated_threshold: {high} is below detection.threshold {low}, but a lone "
            "chip must score at least as high as a chip in a group; raise it to at least "
            f"{low}, or set it to null (halfway between detection.threshold and 1)"
        )

    p_low, p_high = _get(config, "matching.p_low"), _get(config, "matching.p_high")
    if _is_number(p_low) and _is_number(p_high) and not p_low < p_high:
        return (
            f"config matching.p_low: {p_low} is not below matching.p_high {p_high}; the stretch maps "
            "P_low..P_high, so p_low must be the smaller percentile (the default is 2 and 98)"
        )

    haze = _get(config, "augmentation.haze_strength")
    if isinstance(haze, list) and len(haze) == 2 and all(map(_is_number, haze)) and haze[0] > haze[1]:
        return f"config augmentation.haze_strength: {haze} is not a [low, high] range; write [{haze[1]}, {haze[0]}]"

    stride, size_m = _get(config, "detection.stride_px"), _get(config, "chips.size_m")
    if _is_number(stride) and _is_number(size_m) and stride * 10.0 > size_m:
        return (
            f"config detection.stride_px: {stride} px (10 m) is more than a chip of chips.size_m "
            f"{size_m} m ({size_m / 10:g} px), so strips between chips would never be scanned; set it to at "
            "most the chip, or null (half a chip)"
        )

    bands, stored = _get(config, "classifier.bands"), _get(config, "imagery.bands")
    if isinstance(bands, list) and isinstance(stored, list):
        absent = [b for b in bands if b not in stored]
        if absent:
            return (
                f"config classifier.bands: has {absent}, not among imagery.bands {stored} (the bands every "
                "training image and composite holds), so no chip could feed them to the network; add them to "
                "imagery.bands or choose among those"
            )

    for name, region in (_get(config, "regions") or {}).items():
        if not isinstance(region, dict):
            continue
        field, value = region.get("field"), region.get("value")
        if (field is None) != (value is None):
            given, missing = ("field", "value") if value is None else ("value", "field")
            return (
                f"config regions.{name}: {given!r} is set without {missing!r} (null), so every feature would be "
                "taken; set both (the features whose property field equals value) or neither (every feature)"
            )

    sets, sources = _get(config, "evaluation.chip_sets"), _get(config, "evaluation.sources")
    if isinstance(sets, dict) and isinstance(sources, dict):
        import difflib

        for name in sources:
            if name not in sets:
                near = difflib.get_close_matches(str(name), [str(s) for s in sets], n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                return (
                    f"config evaluation.sources.{name}: {name!r} is not a chip set of evaluation.chip_sets "
                    f"(has {sorted(sets)}){hint}, so its patterns would filter nothing; name the chip set they "
                    "are for, or add it to evaluation.chip_sets"
                )
    return None
