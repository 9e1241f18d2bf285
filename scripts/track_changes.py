"""Rule track_changes: the detections of every period and what every scan saw -> the region's latest
detections with their status and first/last detected periods, the new mining of each period and the cumulative
footprint (``garimpo.change.track``)."""

import json
from pathlib import Path

from garimpo.change.track import track_region
from garimpo.detection.chip_scores import read_coverage
from garimpo.detection.polygons import from_geojson, to_geojson
from garimpo.geo.cells import read_cell_list
from garimpo.geo.geojson import write_geojson
from garimpo.smk import rule_region, setup_logging


def main(smk):
    log = setup_logging(smk)
    periods = smk.params.periods
    names = [p["name"] for p in periods]
    if len(smk.input.detections) != len(names) or len(smk.output.changes) != len(names):
        raise ValueError(f"{len(smk.input.detections)} detection files for the {len(names)} periods {names}")
    region_name = smk.wildcards.region
    cells = read_cell_list(smk.input.cells)
    metadata, detections = {}, {}
    for name, path in zip(names, smk.input.detections):
        doc = json.loads(Path(path).read_text())
        detections[name] = from_geojson(doc)
        metadata[name] = doc.get("metadata", {})
    # chip-score files by (cell, period): results/regions/{region}/{period}/chip_scores/{cell}.npz
    paths = {(Path(p).stem, Path(p).parent.parent.name): p for p in smk.input.chip_scores}
    change = smk.params.change
    tracked = track_region(
        names,
        detections,
        lambda cell, period: read_coverage(paths[(cell, period)]),
        cells["cells"],
        cells["size_m"],
        rule_region(smk),
        float(change["min_clear_fraction"]),
        bool(change["include_unknown"]),
        # The thresholds each period's detections were made with: chips at the first are mining in that period's
        # history; new ground needs a chip at the second.
        {name: (float(metadata[name]["threshold"]), float(metadata[name]["isolated_threshold"])) for name in names},
    )
    common = {
        "region": region_name,
        "periods": periods,
        "min_clear_fraction": change["min_clear_fraction"],
        "attribution": smk.params.attribution,
    }
    latest = names[-1]
    write_geojson(
        smk.output.latest,
        to_geojson(tracked.latest),
        {
            **metadata[latest],
            **common,
            "status_counts": {
                s: sum(f["properties"]["status"] == s for f in tracked.latest) for s in ("new", "persisting", "unknown")
            },
            "generator": "garimpo change tracking",
        },
    )
    for name, path in zip(names, smk.output.changes):
        write_geojson(
            path,
            to_geojson(tracked.changes[name]),
            {
                **common,
                "period": name,
                **tracked.summary[name],
                "cells_without_data": metadata[name].get("cells_without_data", []),
                "generator": "garimpo change tracking",
            },
        )
        log.info("%s %s: %s", region_name, name, tracked.summary[name])
    write_geojson(
        smk.output.footprint,
        to_geojson(tracked.footprint),
        {**common, "generator": "garimpo change tracking"},
    )


if "snakemake" not in globals():  # standalone: python scripts/track_changes.py region=NAME
    from garimpo.smk import standalone

    snakemake = standalone("track_changes")
main(snakemake)
