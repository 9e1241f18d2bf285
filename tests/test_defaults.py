"""Defaults live in one place, config/schema.yaml: the library's keyword defaults are the schema's.

A notebook, the bench or a test calling the package without a config must get what the workflow gets.
Each row names a library default and the config key it stands for; a new default that copies a schema
value belongs here (better: take it from ``garimpo.schema.default``).
"""

import inspect

import pytest
import yaml

from garimpo.classifier.train import DEFAULT_CONFIG
from garimpo.detection import batching, lattice, scan
from garimpo.detection.proposers import DEFAULT_SMOOTHING, DEFAULT_SPECTRAL
from garimpo.imagery.read import read_item
from garimpo.imagery.stac import ImageryRequest
from garimpo.schema import SCHEMA_PATH, default

PARAMETERS = [
    (scan.two_stage_scan, "decimate", "detection.proposer_decimate"),
    (scan.two_stage_scan, "select", "detection.select"),
    (scan.two_stage_scan, "block_px", "detection.block_px"),
    (scan.two_stage_scan, "batch_size", "detection.batch_size"),
    (scan.two_stage_scan, "precision", "detection.precision"),
    (scan.two_stage_scan, "tta", "detection.tta"),
    (scan.brute_force_scan, "block_px", "detection.block_px"),
    (scan.brute_force_scan, "batch_size", "detection.batch_size"),
    (scan.brute_force_scan, "precision", "detection.precision"),
    (scan.brute_force_scan, "tta", "detection.tta"),
    (lattice.iter_blocks, "block_px", "detection.block_px"),
    (batching.ChipScorer, "batch_size", "detection.batch_size"),
    (batching.ChipScorer, "precision", "detection.precision"),
    (batching.ChipScorer, "tta", "detection.tta"),
    (read_item, "cloud_buffer_m", "imagery.cloud_buffer_m"),
]


@pytest.mark.parametrize(("func", "param", "key"), PARAMETERS, ids=[f"{f.__name__}.{p}" for f, p, _ in PARAMETERS])
def test_function_defaults_are_the_schemas(func, param, key):
    assert inspect.signature(func).parameters[param].default == default(key)


def test_imagery_request_defaults_are_the_schemas():
    bare = ImageryRequest(("B04",), ("2024-01-01", "2024-12-31"), 20.0)
    from_config = ImageryRequest.from_config(
        {"bands": ["B04"], "period": ["2024-01-01", "2024-12-31"], "max_cloud_cover": 20}
    )
    for name in ("composite", "max_scenes", "cloud_buffer_m"):
        assert getattr(bare, name) == getattr(from_config, name) == default(f"imagery.{name}"), name


def test_proposer_defaults_are_the_schemas():
    assert DEFAULT_SPECTRAL == default("proposer.spectral") and DEFAULT_SPECTRAL["bsi_min"] == 0.05
    assert DEFAULT_SMOOTHING == default("proposer.smoothing") and DEFAULT_SMOOTHING["closing_radius_px"] == 3


def test_classifier_defaults_are_the_schemas():
    assert DEFAULT_CONFIG == default("classifier")
    assert DEFAULT_CONFIG["weights"] == "imagenet"  # the schema's; the library once said "none"


def test_defaults_follow_the_schema_file():
    with open(SCHEMA_PATH) as fh:
        schema = yaml.safe_load(fh)
    assert default("detection.select") == schema["properties"]["detection"]["properties"]["select"]["default"]
    with pytest.raises(KeyError, match="detection.nonexistent"):
        default("detection.nonexistent")
    assert default("regions") == {}
    with pytest.raises(KeyError, match="no default"):
        default("encroachment.areas.path")
