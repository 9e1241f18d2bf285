"""Hostile config values the schema let through (review of issue 17): NaN and infinities, half-set or
misspelt region selections, evaluation.sources for a chip set that does not exist, names with a line
break or too long for a file name, and values outside what the data can be (unknown bands, chips that
are not whole pixels, noise that buries the image, a period before Sentinel-2, bounds off the globe).
Each is refused when the config is read, naming the key; the dry runs show it through Snakemake.
"""

import copy
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config
from test_cli_config import _merged, _set

from garimpo.config import coerce_config, config_error, config_order_error, non_finite_error

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "config" / "schema.yaml"
SHIPPED = [(), ("demo.yaml",), ("amw.yaml",), ("amw.yaml", "amw_transfer_check.yaml"), ("amw.yaml", "amw_all.yaml")]


def _demo(key=None, value=None):
    """config.yaml + demo.yaml, as the workflow's test config, with ``key`` set to ``value``."""
    config = _merged("config.yaml", "demo.yaml")
    if key is not None:
        _set(config, key, copy.deepcopy(value))
    return config


def snakemake(workdir, *args):
    """A dry run of the workflow copy in ``workdir``; its exit code and output."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", "config/demo.yaml", *args]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture
def workflow(tmp_path):
    """The workflow alone (Snakefile, rules, scripts, config, envs) in an empty folder."""
    for name in ("Snakefile", "rules", "scripts", "config", "envs"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("overlays", SHIPPED)
def test_shipped_configs_pass_every_new_check(overlays):
    config = _merged("config.yaml", *overlays)
    assert non_finite_error(config) is None
    assert config_error(config, SCHEMA) is None
    assert config_order_error(config) is None


# ---- kind 1: NaN and infinities pass every range --------------------------------------------------------


@pytest.mark.parametrize(
    "key, text, where",
    [
        ("detection.isolated_threshold", ".nan", "detection.isolated_threshold: nan"),
        ("detection.threshold", ".nan", "detection.threshold: nan"),
        ("imagery.max_cloud_cover", ".NaN", "imagery.max_cloud_cover: nan"),
        ("chips.size_m", ".inf", "chips.size_m: inf"),
        ("augmentation.noise_sigma", "-.inf", "augmentation.noise_sigma: -inf"),
        ("classifier.ema_decay", ".nan", "classifier.ema_decay: nan"),
        ("study_bounds", "[-75.0, .nan, -35.0, 5.0]", "study_bounds[1]: nan"),
        ("augmentation.haze_strength", "[0.1, .inf]", "augmentation.haze_strength[1]: inf"),
    ],
)
def test_a_non_finite_number_from_a_config_file_is_refused_by_key(key, text, where):
    config = _demo(key, yaml.safe_load(text))  # as YAML reads a config file
    assert non_finite_error(config).startswith(f"config {where} is not a finite number")
    assert "write a number in the key's range" in non_finite_error(config)


def test_nan_passes_the_schema_and_the_order_checks_so_it_needs_its_own():
    """Why the walk: every comparison with NaN is false, so no range (nor threshold order) refuses it."""
    config = _demo("detection", {"threshold": 0.5, "isolated_threshold": float("nan")})
    assert config_error(config, SCHEMA) is None and config_order_error(config) is None
    assert non_finite_error(config).startswith("config detection.isolated_threshold: nan is not a finite number")


def test_a_non_finite_number_from_the_command_line_is_refused_by_key():
    from snakemake.cli import parse_config

    config = _demo()
    update_config(config, parse_config(["imagery={max_cloud_cover: nan}"]))
    coerce_config(config, SCHEMA)  # '--config' strings typed by the schema: 'nan' becomes a float there
    assert non_finite_error(config).startswith("config imagery.max_cloud_cover: nan is not a finite number")
    config = _demo()
    update_config(config, parse_config(["chips={size_m: inf}"]))
    coerce_config(config, SCHEMA)
    assert non_finite_error(config).startswith("config chips.size_m: inf is not a finite number")


def test_finite_numbers_and_other_values_pass():
    config = _demo("detection", {"threshold": 0.5, "isolated_threshold": 0.75})
    config["demo_world"] = {"control_region": "nan"}  # a string that reads 'nan' is not a number
    assert non_finite_error(config) is None


# ---- kind 2: region selections half set or misspelt -----------------------------------------------------


@pytest.mark.parametrize(
    "entry, told",
    [
        (
            {"path": "r.geojson", "feild": "name", "value": "demo"},
            ["Additional properties are not allowed ('feild' was unexpected)", "(did you mean 'field'?)"],
        ),
        (
            {"path": "r.geojson", "field": "name", "valeu": "demo"},
            ["Additional properties are not allowed ('valeu' was unexpected)", "(did you mean 'value'?)"],
        ),
        ({"path": "r.geojson", "value": "demo"}, ["'value' is set without 'field'; set both or neither."]),
        ({"path": "r.geojson", "field": "name"}, ["'field' is set without 'value'; set both or neither."]),
    ],
)
def test_a_misspelt_or_half_set_region_selection_is_refused_by_the_schema(entry, told):
    message = config_error(_demo("regions.demo", entry), SCHEMA) or ""
    assert message.startswith("config regions.demo: "), message
    for part in told:
        assert part in message, message


def test_a_region_selection_half_set_with_an_explicit_null_is_refused_with_the_config():
    """A --config override can null one key of a shipped selection: ``regions={demo: {field: null}}``."""
    half = _demo("regions.demo", {"path": "r.geojson", "field": None, "value": "demo"})
    assert config_error(half, SCHEMA) is None  # both keys are present
    assert config_order_error(half) == (
        "config regions.demo: 'value' is set without 'field' (null), so every feature would be taken; "
        "set both (the features whose property field equals value) or neither (every feature)"
    )
    half = _demo("regions.demo", {"path": "r.geojson", "field": "name", "value": None})
    assert config_order_error(half).startswith("config regions.demo: 'field' is set without 'value' (null)")
    for entry in ({"path": "r.geojson", "field": None, "value": None}, {"path": "r.geojson"}):
        config = _demo("regions.demo", entry)
        assert config_error(config, SCHEMA) is None and config_order_error(config) is None


def test_read_region_refuses_a_value_without_its_field(tmp_path):
    from shapely.geometry import box, mapping

    from garimpo.errors import InputDataError
    from garimpo.geo.vector import read_region

    path = tmp_path / "regions.geojson"
    features = [
        {"type": "Feature", "geometry": mapping(box(-56, -7, -55, -6)), "properties": {"name": "demo"}},
        {"type": "Feature", "geometry": mapping(box(-54, -7, -53, -6)), "properties": {"name": "other"}},
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    assert read_region(path).area == pytest.approx(2.0)
    assert read_region(path, "name", "demo").bounds == pytest.approx((-56, -7, -55, -6))
    with pytest.raises(InputDataError, match=r"\[config regions.demo\]: value 'demo' is given without field, so every"):
        read_region(path, None, "demo", key="regions.demo")
    with pytest.raises(InputDataError, match=r"field 'name' is given without value"):
        read_region(path, "name", None, key="regions.demo")


# ---- kind 3: evaluation.sources for a chip set that does not exist -------------------------------------


def test_sources_of_a_misspelt_chip_set_are_refused():
    config = _demo("evaluation", {"chip_sets": {"mychips": "chips"}, "sources": {"mychip": ["^v3"]}})
    assert config_error(config, SCHEMA) is None
    assert config_order_error(config) == (
        "config evaluation.sources.mychip: 'mychip' is not a chip set of evaluation.chip_sets (has ['mychips']) "
        "(did you mean 'mychips'?), so its patterns would filter nothing; name the chip set they are for, or add "
        "it to evaluation.chip_sets"
    )
    config["evaluation"]["sources"] = {"mychips": ["^v3"]}
    assert config_order_error(config) is None


# ---- kind 4: names with a line break, or too long for a file name --------------------------------------


def _config_with(section, name):
    config = _demo()
    if section == "downloads.files":
        config["downloads"]["files"] = {name: {"url": "https://example.org/f", "sha256": "0" * 64}}
    elif section == "regions":
        config["regions"] = {name: {"path": "r.geojson"}}
        config["run_regions"] = []
    elif section == "run_regions":
        config["run_regions"] = [name]
    elif section == "evaluation.chip_sets":
        config["evaluation"] = {"chip_sets": {name: "chips"}}
    elif section == "evaluation.sources":
        config["evaluation"] = {"sources": {name: ["x"]}}
    else:  # a point file's source label
        top, key = section.split(".")
        config[top][key] = [{"path": "p.csv", "source": name}]
    return config


SECTIONS = [
    ("downloads.files", "nl.bin"),
    ("regions", "demo"),
    ("run_regions", "demo"),
    ("evaluation.chip_sets", "heldout"),
    ("evaluation.sources", "heldout"),
    ("positives.points", "demo"),
    ("negatives.hard_negative_points", "demo"),
]


@pytest.mark.parametrize("section, name", SECTIONS)
@pytest.mark.parametrize("odd", ["{}\n", "{}\r\n", "{}\t", "{}\x00", "\n{}", "{}\nx", "{}\x1b"])
def test_a_name_with_a_line_break_or_control_character_is_refused(section, name, odd):
    assert config_error(_config_with(section, name), SCHEMA) is None
    message = config_error(_config_with(section, odd.format(name)), SCHEMA) or ""
    assert message.startswith(f"config {section}"), message
    assert repr(odd.format(name)) in message and "line breaks" in message, message


@pytest.mark.parametrize("section, name", SECTIONS)
def test_a_name_longer_than_100_characters_is_refused(section, name):
    assert config_error(_config_with(section, "a" * 100), SCHEMA) is None
    message = config_error(_config_with(section, "a" * 260), SCHEMA) or ""
    assert message.startswith(f"config {section}"), message
    assert f"{'a' * 40!r}... (260 characters) is not allowed" in message and "at most 100 characters" in message


def test_every_pattern_of_the_schema_ends_at_the_end_of_the_text():
    """Python's ``$`` (jsonschema uses re.search) also matches before a final newline: none may end so."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                found.append(node["pattern"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(yaml.safe_load(SCHEMA.read_text()))
    assert len(found) >= 9
    for pattern in found:
        assert not pattern.endswith("$") and pattern.endswith(r"(?![\s\S])"), pattern


def test_a_date_with_a_line_break_is_refused_with_what_a_date_looks_like():
    message = config_error(_demo("imagery.period", ["2024-01-01\n", "2024-12-31"]), SCHEMA)
    assert (
        message
        == "config imagery.period[0]: '2024-01-01\\n' is not allowed: a date written YYYY-MM-DD (e.g. 2024-12-31)"
    )


@pytest.mark.parametrize(
    "stem, label",
    [
        ("-lead", "lead"),
        ("my mines ü (2023)", "my_mines_u__2023_"),
        ("São Félix do Xingu", "Sao_Felix_do_Xingu"),
        ("..hidden..file", "hidden_file"),
        ("amazon_all_48px_v3.1_2023_positives_0.999_cleaned", "amazon_all_48px_v3.1_2023_positives_0.999_cleaned"),
        ("日本", "points"),
        ("x" * 150, "x" * 100),
    ],
)
def test_a_point_files_name_is_made_a_plain_source_label(stem, label):
    from garimpo.training.points import SOURCE_LABEL, plain_label

    assert plain_label(stem) == label and SOURCE_LABEL.fullmatch(label)
    points = yaml.safe_load(SCHEMA.read_text())["properties"]["positives"]["properties"]["points"]
    rule = points["items"]["properties"]["source"]
    assert re.search(rule["pattern"], label) and len(label) <= rule["maxLength"]  # what the schema asks of a label


def test_points_of_an_oddly_named_file_get_a_plain_label_said_in_the_log(tmp_path, caplog):
    from garimpo.errors import InputDataError
    from garimpo.training.points import load_point_sources

    odd = tmp_path / "my mines ü (2023).csv"
    odd.write_text("longitude,latitude\n-55.0,-6.0\n")
    lead = tmp_path / "-lead.csv"
    lead.write_text("longitude,latitude\n-55.0,-6.0\n")
    plain = tmp_path / "amw.csv"
    plain.write_text("longitude,latitude\n-55.0,-6.0\n")
    with caplog.at_level(logging.WARNING, logger="garimpo.training.points"):
        good, _ = load_point_sources([{"path": str(odd)}, {"path": str(lead)}, {"path": str(plain)}], None, "p")
    assert list(good["point_id"]) == ["my_mines_u__2023_-00002", "lead-00002", "amw-00002"]
    assert list(good["source"]) == ["my_mines_u__2023_", "lead", "amw"]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and "source label 'my_mines_u__2023_', its file name made plain" in said[0], said
    with pytest.raises(InputDataError, match=r"source label 'demo\\n' cannot start a file name"):
        load_point_sources([{"path": str(plain), "source": "demo\n"}], None, "p")
    with pytest.raises(InputDataError, match=r"at most 100 characters"):
        load_point_sources([{"path": str(plain), "source": "d" * 101}], None, "p")


# ---- kind 5: values outside what the data can be --------------------------------------------------------


@pytest.mark.parametrize(
    "key, value, told",
    [
        ("classifier.bands", ["B99", "B03"], "config classifier.bands[0]: 'B99' is not one of ['B01', "),
        ("classifier.bands", ["b04"], "config classifier.bands[0]: 'b04' is not one of "),
        ("chips.size_m", 485, "config chips.size_m: 485 is not a multiple of 10"),
        ("chips.size_m", 480.5, "config chips.size_m: 480.5 is not a multiple of 10"),
        ("augmentation.noise_sigma", 50, "config augmentation.noise_sigma: 50 is greater than the maximum of 0.5"),
        (
            "study_bounds",
            [-75.0, -35.0, 200.0, 5.0],
            "config study_bounds[2]: 200.0 is greater than the maximum of 180",
        ),
        ("study_bounds", [-75.0, -95.0, -35.0, 5.0], "config study_bounds[1]: -95.0 is less than the minimum of -90"),
        ("study_bounds", [-75.0, -35.0, -35.0, 91], "config study_bounds[3]: 91 is greater than the maximum of 90"),
    ],
)
def test_values_no_sentinel2_data_can_have_are_refused_by_the_schema(key, value, told):
    message = config_error(_demo(key, value), SCHEMA) or ""
    assert message.startswith(told), message


@pytest.mark.parametrize(
    "key, value",
    [
        ("classifier.bands", ["B08", "B04", "B03"]),
        ("chips.size_m", 640),
        ("chips.size_m", 480.0),
        ("augmentation.noise_sigma", 0.5),
        ("imagery.period", ["2015-01-01", "2015-06-23"]),
    ],
)
def test_values_at_the_edge_pass(key, value):
    config = _demo(key, value)
    assert config_error(config, SCHEMA) is None and config_order_error(config) is None


def test_classifier_bands_are_the_imagery_bands_names_and_among_them():
    props = yaml.safe_load(SCHEMA.read_text())["properties"]
    names = props["imagery"]["properties"]["bands"]["items"]["enum"]
    assert props["classifier"]["properties"]["bands"]["items"]["enum"] == names
    config = _demo("classifier.bands", ["B05", "B03"])
    assert config_error(config, SCHEMA) is None  # a Sentinel-2 band, but no image holds it
    assert config_order_error(config) == (
        "config classifier.bands: has ['B05'], not among imagery.bands ['B02', 'B03', 'B04', 'B08', 'B11', 'B12'] "
        "(the bands every training image and composite holds), so no chip could feed them to the network; add them "
        "to imagery.bands or choose among those"
    )


def test_a_period_ending_before_sentinel2_is_refused():
    config = _demo("imagery.period", ["1900-01-01", "1900-12-31"])
    assert config_error(config, SCHEMA) is None
    assert config_order_error(config) == (
        "config imagery.period: the end 1900-12-31 is before 2015-06-23, when Sentinel-2A was launched, so no "
        "scene can match; choose a period after it, e.g. [2023-01-01, 2025-12-31]"
    )


# ---- through Snakemake: refused when the config is read, before any job ---------------------------------


def test_the_workflow_refuses_each_hostile_value_before_any_job(workflow):
    long_name = {"regions": {"a" * 260: {"path": "r.geojson"}}, "run_regions": ["a" * 260]}
    (workflow / "long.yaml").write_text(yaml.safe_dump(long_name))
    runs = [
        (
            ["--config", "detection={isolated_threshold: nan}"],
            "config detection.isolated_threshold: nan is not a finite number",
        ),
        (["--config", "regions={demo: {field: null}}"], "config regions.demo: 'value' is set without 'field' (null)"),
        (
            ["--config", "regions={demo: {path: r.geojson, feild: name}}"],
            "config regions.demo: Additional properties are not allowed ('feild' was unexpected)",
        ),
        (
            ["--config", "regions={other: {path: r.geojson, value: demo}}"],
            "config regions.other: 'value' is set without 'field'; set both or neither.",
        ),
        (["--configfile", "long.yaml"], "(260 characters) is not allowed under regions"),
    ]
    for args, told in runs:
        code, out = snakemake(workflow, *args)
        assert code != 0 and told in out, (args, out[-3000:])
        assert "File name too long" not in out and "Traceback" not in out, out[-3000:]
    assert not (workflow / "results").exists()
