# garimpo: find illegal gold mining in the Amazon from Sentinel-2 imagery.
# Rules live in rules/*.smk by stage; logic lives in the importable package scripts/garimpo.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))
from garimpo.config import (
    coerce_config,
    config_error,
    config_order_error,
    non_finite_error,
    renamed_key_error,
    text_encoding_error,
)

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


# A key renamed since (tiles.size_m -> chips.size_m, ...): named with its new name, before the schema
# would only call it unexpected.
if renamed_key_error(config):
    raise WorkflowError(renamed_key_error(config))
# Nested --config values arrive as strings ('3', 'false'): typed where the schema says.
coerce_config(config, Path(workflow.basedir) / "config/schema.yaml")
# NaN and inf pass every range of the schema (each comparison with NaN is false): refused first, by key.
if non_finite_error(config):
    raise WorkflowError(non_finite_error(config))
# On a bad value, name the key that is wrong rather than every branch of its schema.
try:
    validate(config, "config/schema.yaml")
except WorkflowError as err:
    raise WorkflowError(config_error(config, "config/schema.yaml") or str(err)) from err
if text_encoding_error(config):
    raise WorkflowError(text_encoding_error(config))
# Values valid one by one but not together (a reversed period, west > east, ...).
if config_order_error(config):
    raise WorkflowError(config_order_error(config))


wildcard_constraints:
    region="[A-Za-z0-9][A-Za-z0-9_-]*",  # as the schema's region names
    cls="positive|negative",
    cell="[EW][0-9]+[NS][0-9]+",  # a grid cell id (garimpo.geo.cells)
    period="[A-Za-z0-9][A-Za-z0-9_-]*",  # a name of config periods (garimpo.change.periods)


include: "rules/common.smk"
include: "rules/demo.smk"
include: "rules/weights.smk"
include: "rules/inputs.smk"
include: "rules/training_data.smk"
include: "rules/classifier.smk"
include: "rules/detection.smk"
include: "rules/evaluation.smk"
include: "rules/publish.smk"


rule all:
    input:
        expand("results/detections/{region}.geojson", region=config["run_regions"]),
        expand("results/detections/{region}_overview.png", region=config["run_regions"]),
        expand(
            "results/change/{region}/footprint.geojson", region=config["run_regions"]
        ),
        expand("results/publish/{region}/MANIFEST.sha256", region=config["run_regions"]),
        expand(
            "results/stats/{region}_{kind}.csv",
            region=config["run_regions"] if config["encroachment"]["areas"] else [],
            kind=["protected_areas", "over_time"],
        ),
