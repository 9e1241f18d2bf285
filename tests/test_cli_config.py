"""Nested --config values (strings from Snakemake's YAML base loader) typed by the schema."""

from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config, validate

from garimpo.config import coerce_config, coerce_strings, config_error, config_order_error

ROOT = Path(__file__).resolve().parents[1]

SCHEMA = {
    "properties": {
        "c": {
            "properties": {
                "epochs": {"type": "integer"},
                "lr": {"type": "number"},
                "budget": {"type": ["number", "null"]},
                "name": {"type": "string"},
                "either": {"type": ["string", "integer"]},
                "sizes": {"type": "array", "items": {"type": "integer"}},
            }
        },
        "d": {"properties": {"tta": {"type": "boolean"}}},
        "sets": {"type": "object"},
    }
}


def test_strings_become_the_schema_type():
    got = coerce_strings(
        {
            "c": {
                "epochs": "3",
                "lr": "1e-4",
                "budget": "null",
                "name": "007",
                "either": "12",
                "sizes": ["48", "96"],
                "extra": "5",
            },
            "d": {"tta": "false"},
            "sets": {"x": "1"},
        },
        SCHEMA,
    )
    assert got["c"] == {
        "epochs": 3,
        "lr": 1e-4,
        "budget": None,
        "name": "007",
        "either": "12",
        "sizes": [48, 96],
        "extra": "5",
    }
    assert got["d"]["tta"] is False and got["sets"] == {"x": "1"}


def test_strings_that_do_not_fit_stay_for_validation_to_report():
    got = coerce_strings({"c": {"epochs": "three", "lr": "[1", "sizes": ["true"]}, "d": {"tta": "1"}}, SCHEMA)
    # An integer field takes no boolean, a boolean field no integer: validation then names the value.
    assert got == {"c": {"epochs": "three", "lr": "[1", "sizes": ["true"]}, "d": {"tta": "1"}}


def test_project_schema_types_a_cli_override():
    schema = Path(__file__).resolve().parents[1] / "config" / "schema.yaml"
    config = {
        "classifier": {"max_epochs": "3", "time_budget_min": "null", "ema_decay": "0.99"},
        "detection": {"tta": "true"},
    }
    coerce_config(config, schema)
    assert config == {
        "classifier": {"max_epochs": 3, "time_budget_min": None, "ema_decay": 0.99},
        "detection": {"tta": True},
    }
    classifier = yaml.safe_load(schema.read_text())["properties"]["classifier"]["properties"]
    assert classifier["max_epochs"]["type"] == "integer"


def _merged(*names):
    """Config files layered with Snakemake's own merge, as --configfile layers them."""
    config = {}
    for name in names:
        update_config(config, yaml.safe_load((ROOT / "config" / name).read_text()) or {})
    return config


@pytest.mark.parametrize(
    "overlays",
    [(), ("demo.yaml",), ("amw.yaml",), ("amw.yaml", "amw_transfer_check.yaml"), ("amw.yaml", "amw_all.yaml")],
)
def test_shipped_configs_validate(overlays):
    config = _merged("config.yaml", *overlays)
    validate(config, str(ROOT / "config" / "schema.yaml"))  # raises on any key or type the schema refuses
    assert config_order_error(config) is None
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
    update_config(
        config,
        parse_config(["negatives={protected_areas: null, urban_mask: ~}", "imagery={source: {cache_dir: null}}"]),
    )
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
        "config positives.local_dirs[0]: Additional properties are not allowed ('encodng' was unexpected)"
    )


def test_a_misspelt_text_encoding_is_refused_with_the_config():
    from garimpo.config import text_encoding_error

    config = _merged("config.yaml", "demo.yaml")
    assert text_encoding_error(config) is None
    config["regions"]["demo"]["encoding"] = "cp1252"
    config["positives"]["points"][0]["encoding"] = "latin-1"
    assert text_encoding_error(config) is None
    config["encroachment"]["areas"] = {"path": "ti.shp", "encoding": "cp1525"}
    assert text_encoding_error(config).startswith("config encroachment.areas.encoding: unknown text encoding 'cp1525'")


def _set(config, key, value):
    *parents, last = key.split(".")
    for part in parents:
        config = config.setdefault(part, {})
    config[last] = value


@pytest.mark.parametrize(
    "key, value, where",
    [
        ("detection.threshold", -1, "detection.threshold"),
        ("detection.threshold", 0, "detection.threshold"),  # every chip would be mining
        ("detection.threshold", 1.5, "detection.threshold"),  # named itself, not the derived isolated_threshold
        ("detection.isolated_threshold", 1.2, "detection.isolated_threshold"),
        ("imagery.max_cloud_cover", 0, "imagery.max_cloud_cover"),  # cloud < 0 %: no scene at all
        ("imagery.max_cloud_cover", 120, "imagery.max_cloud_cover"),
        ("imagery.bands", ["B02", "B03", "B03"], "imagery.bands"),
        ("study_bounds", [-200.0, -35.0, -35.0, 5.0], "study_bounds[0]"),
        ("study_bounds", [-75.0, -35.0, -35.0, 95.0], "study_bounds[3]"),
        ("matching.p_high", 101, "matching.p_high"),
        ("augmentation.haze_strength", [0.1, 1.5], "augmentation.haze_strength[1]"),
        ("augmentation.haze_strength", [0.1], "augmentation.haze_strength"),
        ("augmentation.brightness", 1.0, "augmentation.brightness"),
        ("split.block_m", 0, "split.block_m"),
        ("classifier.dropout", 1.0, "classifier.dropout"),
        ("classifier.lr_scheduler", {"factor": 1.0, "patience": 3}, "classifier.lr_scheduler.factor"),
        ("classifier.threshold", {"method": "fixed", "value": 0}, "classifier.threshold.value"),
        (
            "classifier.threshold",
            {"method": "target_precision", "target_precision": 1.5},
            "classifier.threshold.target_precision",
        ),
        ("proposer.spectral", {"forest_fraction_min": 2}, "proposer.spectral.forest_fraction_min"),
        ("proposer.segformer", {"window": 0}, "proposer.segformer.window"),
    ],
)
def test_values_out_of_their_range_are_refused_by_key(key, value, where):
    config = _merged("config.yaml", "demo.yaml")
    _set(config, key, value)
    assert (config_error(config, ROOT / "config" / "schema.yaml") or "").startswith(f"config {where}: ")


@pytest.mark.parametrize(
    "key, value, where",
    [
        ("imagery.period", ["2025-12-31", "2021-01-01"], "imagery.period: the start 2025-12-31 is after the end"),
        ("imagery.period", ["2023-02-30", "2023-12-31"], "imagery.period[0]: '2023-02-30' is not a date"),
        ("study_bounds", [-35.0, -35.0, -75.0, 5.0], "study_bounds: west -35.0 is not less than east -75.0"),
        ("study_bounds", [-75.0, 5.0, -35.0, -35.0], "study_bounds: south 5.0 is not less than north -35.0"),
        (
            "detection",
            {"threshold": 0.9, "isolated_threshold": 0.6},
            "detection.isolated_threshold: 0.6 is below detection.threshold 0.9",
        ),
        ("matching", {"p_low": 98, "p_high": 2}, "matching.p_low: 98 is not below matching.p_high 2"),
        ("augmentation.haze_strength", [0.4, 0.1], "augmentation.haze_strength: [0.4, 0.1] is not a [low, high]"),
        ("detection.stride_px", 80, "detection.stride_px: 80 px (10 m) is more than a chip of chips.size_m 640"),
    ],
)
def test_keys_valid_alone_but_out_of_order_together_are_refused(key, value, where):
    config = _merged("config.yaml", "demo.yaml")
    assert config_order_error(config) is None
    _set(config, key, value)
    assert config_error(config, ROOT / "config" / "schema.yaml") is None  # each value is fine on its own
    assert (config_order_error(config) or "").startswith(f"config {where}")


def test_a_reversed_period_stops_the_workflow_before_any_job(tmp_path):
    """The Snakefile refuses the config when it is read: no job runs, and no composite is replaced."""
    import shutil
    import subprocess
    import sys

    for name in ("Snakefile", "rules", "scripts", "config", "envs"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--cores",
            "1",
            "--configfile",
            "config/demo.yaml",
            "--config",
            "imagery={period: [2025-12-31, 2021-01-01]}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "config imagery.period: the start 2025-12-31 is after the end 2021-01-01" in out, out


@pytest.mark.parametrize(
    "old, value, new",
    [
        ("tiles.size_m", 640, "chips.size_m"),
        ("detection.tile_size_m", 10000, "detection.cell_size_m"),
        ("matching.per_tile", False, "matching.per_chip"),
    ],
)
def test_a_renamed_key_is_refused_with_its_new_name(old, value, new):
    from garimpo.config import RENAMED_KEYS, renamed_key_error

    assert RENAMED_KEYS[old] == new
    config = _merged("config.yaml", "demo.yaml")
    assert renamed_key_error(config) is None  # the shipped configs use the new names
    _set(config, old, value)
    shown = "false" if value is False else str(value)
    assert renamed_key_error(config) == (
        f"config {old}: this key was renamed {new}; write {new}: {shown} instead (in the config file or --config); "
        f"see the description of {new} in config/schema.yaml"
    )
    # and the new name is a key of the schema, with a description
    node = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())
    for part in new.split("."):
        node = node["properties"][part]
    assert node["description"]


def test_a_renamed_section_alone_is_named():
    from garimpo.config import renamed_key_error

    assert renamed_key_error({"tiles": {}}).startswith("config tiles: this key was renamed chips; write chips instead")


def test_an_old_config_file_stops_the_workflow_naming_old_and_new_key(tmp_path):
    """A user config from before the renames fails when it is read, with both names, not 'unexpected key'."""
    import shutil
    import subprocess
    import sys

    for name in ("Snakefile", "rules", "scripts", "config", "envs"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    (tmp_path / "old.yaml").write_text("tiles:\n  size_m: 640\ndetection:\n  tile_size_m: 10000\n")
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", "config/demo.yaml", "old.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "config tiles.size_m: this key was renamed chips.size_m; write chips.size_m: 640" in out, out
