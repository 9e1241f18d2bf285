"""Nested --config values (strings from Snakemake's YAML base loader) typed by the schema."""

from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config, validate

from garimpo.cli_config import coerce_config, coerce_strings, config_error

ROOT = Path(__file__).resolve().parents[1]

SCHEMA = {"properties": {
    "c": {"properties": {
        "epochs": {"type": "integer"}, "lr": {"type": "number"}, "budget": {"type": ["number", "null"]},
        "name": {"type": "string"}, "either": {"type": ["string", "integer"]},
        "sizes": {"type": "array", "items": {"type": "integer"}},
    }},
    "d": {"properties": {"tta": {"type": "boolean"}}},
    "sets": {"type": "object"},
}}


def test_strings_become_the_schema_type():
    got = coerce_strings({
        "c": {"epochs": "3", "lr": "1e-4", "budget": "null", "name": "007", "either": "12",
              "sizes": ["48", "96"], "extra": "5"},
        "d": {"tta": "false"},
        "sets": {"x": "1"},
    }, SCHEMA)
    assert got["c"] == {"epochs": 3, "lr": 1e-4, "budget": None, "name": "007", "either": "12",
                        "sizes": [48, 96], "extra": "5"}
    assert got["d"]["tta"] is False and got["sets"] == {"x": "1"}


def test_strings_that_do_not_fit_stay_for_validation_to_report():
    got = coerce_strings({"c": {"epochs": "three", "lr": "[1", "sizes": ["true"]}, "d": {"tta": "1"}}, SCHEMA)
    # An integer field takes no boolean, a boolean field no integer: validation then names the value.
    assert got == {"c": {"epochs": "three", "lr": "[1", "sizes": ["true"]}, "d": {"tta": "1"}}


def test_project_schema_types_a_cli_override():
    schema = Path(__file__).resolve().parents[1] / "config" / "schema.yaml"
    config = {"classifier": {"max_epochs": "3", "time_budget_min": "null", "ema_decay": "0.99"},
              "detection": {"tta": "true"}}
    coerce_config(config, schema)
    assert config == {"classifier": {"max_epochs": 3, "time_budget_min": None, "ema_decay": 0.99},
                      "detection": {"tta": True}}
    classifier = yaml.safe_load(schema.read_text())["properties"]["classifier"]["properties"]
    assert classifier["max_epochs"]["type"] == "integer"


def _merged(*names):
    """Config files layered with Snakemake's own merge, as --configfile layers them."""
    config = {}
    for name in names:
        update_config(config, yaml.safe_load((ROOT / "config" / name).read_text()) or {})
    return config


@pytest.mark.parametrize("overlays", [(), ("demo.yaml",), ("amw.yaml",), ("amw.yaml", "amw_transfer_check.yaml"),
                                      ("amw.yaml", "amw_all.yaml")])
def test_shipped_configs_validate(overlays):
    config = _merged("config.yaml", *overlays)
    validate(config, str(ROOT / "config" / "schema.yaml"))  # raises on any key or type the schema refuses
    if "amw_all.yaml" in overlays:
        assert config["split"]["test_sources"] == [] and config["classifier"]["input_size"] == 96
    if "amw.yaml" in overlays:
        assert config["evaluation"]["bootstrap"] == {"block": 20, "resamples": 1000, "level": 0.95, "seed": 0}


def test_every_shipped_config_is_covered():
    tested = {"config.yaml", "demo.yaml", "amw.yaml", "amw_transfer_check.yaml", "amw_all.yaml", "schema.yaml"}
    assert {p.name for p in (ROOT / "config").glob("*.yaml")} == tested


def test_null_reaches_string_or_null_keys_from_the_command_line():
    """The real-world case: `--config negatives='{protected_areas: null}'` must switch the input off."""
    from snakemake.cli import parse_config

    config = _merged("config.yaml", "demo.yaml")
    update_config(config, parse_config(["negatives={protected_areas: null, urban_mask: ~}",
                                        "imagery={source: {cache_dir: null}}"]))
    assert config["negatives"]["protected_areas"] == "null"  # what Snakemake hands over
    coerce_config(config, ROOT / "config" / "schema.yaml")
    validate(config, str(ROOT / "config" / "schema.yaml"))
    assert config["negatives"]["protected_areas"] is None and config["negatives"]["urban_mask"] is None
    assert config["imagery"]["source"]["cache_dir"] is None
    # Strings stay strings where null is not allowed, and a real path is left alone.
    assert coerce_strings("null", {"type": "string"}) == "null"
    assert coerce_strings("areas.gpkg", {"type": ["string", "null"]}) == "areas.gpkg"
    assert coerce_strings("", {"oneOf": [{"type": "string"}, {"type": "null"}]}) is None


def test_a_wrong_key_inside_a_path_or_mapping_value_is_named():
    """A typo in a local_dirs mapping ('encodng') is named, not drowned in every branch of the oneOf."""
    config = _merged("config.yaml", "demo.yaml")
    schema = ROOT / "config" / "schema.yaml"
    assert config_error(config, schema) is None
    config["positives"]["local_dirs"] = [{"path": "chips", "encodng": "amw_l1c_rgb", "pixel_size_m": 10}]
    assert config_error(config, schema).startswith(
        "config positives.local_dirs[0]: Additional properties are not allowed ('encodng' was unexpected)")


def test_a_misspelt_text_encoding_is_refused_with_the_config():
    from garimpo.cli_config import text_encoding_error

    config = _merged("config.yaml", "demo.yaml")
    assert text_encoding_error(config) is None
    config["regions"]["demo"]["encoding"] = "cp1252"
    config["positives"]["points"][0]["encoding"] = "latin-1"
    assert text_encoding_error(config) is None
    config["encroachment"]["areas"] = {"path": "ti.shp", "encoding": "cp1525"}
    assert text_encoding_error(config).startswith("config encroachment.areas.encoding: unknown text encoding 'cp1525'")
