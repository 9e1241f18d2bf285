# Helpers shared by the rules: input functions that turn config into file dependencies.
import json
import os
import re

from garimpo.change.periods import parse_periods

# The detection periods in time order (validated with the config in the Snakefile); the last one is the
# period of results/detections/{region}.geojson.
PERIODS = parse_periods(config["periods"])
PERIOD_NAMES = [p.name for p in PERIODS]


def imagery_inputs(wildcards=None):
    """A local STAC catalog is a file dependency (so the demo world gets built first)."""
    src = config["imagery"]["source"]
    return [src["url"]] if src["kind"] == "local" else []


def point_files(spec_list):
    return [spec["path"] for spec in spec_list]


def vector_file(spec):
    """The file of a vector input given as a path or as {path, layer}; nothing when it is null."""
    if not spec:
        return []
    return spec["path"] if isinstance(spec, dict) else spec


def vector_layer(spec):
    """The layer chosen for a vector input ({path, layer}), or None: the file's only layer."""
    return spec.get("layer") if isinstance(spec, dict) else None


def vector_encoding(spec):
    """The text encoding set for a vector input ({path, layer, encoding}), or None: the file's own."""
    return spec.get("encoding") if isinstance(spec, dict) else None


def download_names():
    """Wildcard pattern matching exactly the names under config downloads.files (nothing if there are none)."""
    names = sorted(config["downloads"]["files"], key=len, reverse=True)
    return "|".join(re.escape(name) for name in names) or "(?!)"


def region_file(wildcards):
    try:
        return config["regions"][wildcards.region]["path"]
    except KeyError:
        raise ValueError(
            f"region {wildcards.region!r} is not in config 'regions' (has {sorted(config['regions'])}); "
            "add it there with a polygon file"
        )


def imagenet_weights(wildcards):
    clf = config["classifier"]
    return (
        [f"resources/weights/{clf['arch']}-imagenet.pth"]
        if clf["weights"] == "imagenet"
        else []
    )


def segformer_inputs(wildcards):
    prop = config["proposer"]
    return (
        [prop["segformer"]["local_dir"]]
        if prop["method"] in ("segformer", "union")
        else []
    )


def chip_set(wildcards):
    """A chip set's config entry: a folder path, or {path, encoding, pixel_size_m, units}."""
    try:
        return config["evaluation"]["chip_sets"][wildcards.name]
    except KeyError:
        raise ValueError(
            f"chip set {wildcards.name!r} is not in config evaluation.chip_sets "
            f"(has {sorted(config['evaluation']['chip_sets'])})"
        )


def chip_set_inputs(wildcards):
    """A chip set the workflow builds (under results/, e.g. the held-out split) is a file dependency."""
    spec = chip_set(wildcards)
    path = str(spec["path"] if isinstance(spec, dict) else spec).rstrip("/")
    return [f"{path}/manifest.csv"] if path.startswith("results/") else [path]


def region_cell_ids(wildcards):
    """Grid cell ids of a region, from the region_cells checkpoint (re-evaluated once it has run)."""
    path = checkpoints.region_cells.get(region=wildcards.region).output[0]
    with open(path) as fh:
        return json.load(fh)["cells"]


def period_entry(wildcards):
    """The period {name, start, end} of the {period} wildcard, refused when it is not in config periods."""
    for p in PERIODS:
        if p.name == wildcards.period:
            return p.as_dict()
    raise ValueError(
        f"period {wildcards.period!r} is not in config periods (has {PERIOD_NAMES}); add it there"
    )


def composite_imagery(wildcards):
    """The imagery config of a cell's composite: its period's dates instead of imagery.period (the training
    images' period), so changing one never rebuilds the other."""
    p = period_entry(wildcards)
    return {**config["imagery"], "period": [p["start"], p["end"]]}


def earlier_composite(wildcards):
    """With proposer.earlier_reference, the previous period's composite of the same cell (the spectral proposer's
    reference NDVI); nothing for the first period, or for a scan that would not read it (brute force, segformer).
    """
    prop = config["proposer"]
    if not prop["earlier_reference"] or prop["method"] == "segformer":
        return []
    if config["detection"]["mode"] != "two_stage":
        return []
    period_entry(wildcards)  # refuses a period not in config periods
    i = PERIOD_NAMES.index(wildcards.period)
    if i == 0:
        return []
    return f"results/regions/{wildcards.region}/{PERIOD_NAMES[i - 1]}/composites/{wildcards.cell}.tif"


def region_chip_scores(wildcards):
    return [
        f"results/regions/{wildcards.region}/{wildcards.period}/chip_scores/{cell}.npz"
        for cell in region_cell_ids(wildcards)
    ]


def all_periods_chip_scores(wildcards):
    """Every (cell, period) chip-score file of a region: the change products read what each scan saw."""
    return [
        f"results/regions/{wildcards.region}/{period}/chip_scores/{cell}.npz"
        for period in PERIOD_NAMES
        for cell in region_cell_ids(wildcards)
    ]


# The scan and the merge read different detection keys, so changing a threshold re-merges
# without rescanning every cell.
SCAN_KEYS = (
    "mode",
    "stride_px",
    "block_px",
    "proposer_decimate",
    "select",
    "batch_size",
    "precision",
    "tta",
)
MERGE_KEYS = ("mode", "threshold", "isolated_threshold", "require_seed", "gap_m", "tta")


def scan_params():
    return {k: config["detection"][k] for k in SCAN_KEYS}


def merge_params():
    return {k: config["detection"][k] for k in MERGE_KEYS}


def region_composites(wildcards):
    """The composites of the latest period (what the overview map shows under its detections)."""
    return [
        f"results/regions/{wildcards.region}/{PERIOD_NAMES[-1]}/composites/{cell}.tif"
        for cell in region_cell_ids(wildcards)
    ]


def encroachment_areas(wildcards):
    areas = config["encroachment"]["areas"]
    if not areas:
        raise ValueError(
            "encroachment.areas is null: set it to a polygon file (GeoJSON, Shapefile, GeoPackage) of "
            f"protected areas to get results/stats/{wildcards.region}_protected_areas.csv"
        )
    return vector_file(areas)


# Publishing (rules/publish.smk).


def all_periods_composites(wildcards):
    """Every (period, cell) composite of a region: the evidence is cut from them."""
    return [
        f"results/regions/{wildcards.region}/{period}/composites/{cell}.tif"
        for period in PERIOD_NAMES
        for cell in region_cell_ids(wildcards)
    ]


def all_periods_composite_metas(wildcards):
    """Every (period, cell) composite's JSON: the STAC items each was made of."""
    return [p[: -len(".tif")] + ".json" for p in all_periods_composites(wildcards)]


def optional_areas(wildcards):
    """The protected areas / territories the detections are placed in, when encroachment.areas is set."""
    return vector_file(config["encroachment"]["areas"])


def pinned_inputs(wildcards):
    """The input files of a region's run, by config key: their sha256 goes into the bundle's inputs.csv."""
    files = {
        f"regions.{wildcards.region}": region_file(wildcards),
        "encroachment.areas": optional_areas(wildcards),
        "negatives.protected_areas": vector_file(
            config["negatives"]["protected_areas"]
        ),
        "negatives.urban_mask": vector_file(config["negatives"]["urban_mask"]),
    }
    for i, spec in enumerate(config["positives"]["points"]):
        files[f"positives.points[{i}]"] = spec["path"]
    for i, spec in enumerate(config["negatives"]["hard_negative_points"]):
        files[f"negatives.hard_negative_points[{i}]"] = spec["path"]
    return {k: v for k, v in files.items() if v}


def region_figures(wildcards):
    """The region's map and statistics: the bundle waits for them so that its report shows them."""
    r = wildcards.region
    figures = [f"results/detections/{r}_overview.png"]
    if config["encroachment"]["areas"]:
        figures += [
            f"results/stats/{r}_protected_areas.csv",
            f"results/stats/{r}_over_time.csv",
        ]
    return figures


def region_evaluation(wildcards):
    """The demo world is the one region with a truth: its object-level figures go into the model card."""
    demo = wildcards.region == "demo" and config["imagery"]["source"]["kind"] == "local"
    return ["results/eval/demo.json"] if demo else []


def chip_set_reports(wildcards):
    return expand(
        "results/eval/{name}/metrics.json", name=config["evaluation"]["chip_sets"]
    )
