"""Rule merge_detections (garimpo.detection.merge): the streamed merge gives what merging every cell in memory gave,
holds one cell's scores at a time, and tells a region never seen (no clear pixel) from one with no mining."""

import json
import logging
import runpy
import weakref
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import shapely

from garimpo.detection.chip_scores import chip_features, load_chip_scores
from garimpo.detection.merge import merge_region
from garimpo.detection.polygons import area_ha, clip_to_cell, dissolve, dual_threshold
from garimpo.errors import NoImageryError
from garimpo.geo.cells import cell_polygons, region_cells, write_cell_list
from garimpo.geo.geojson import feature, feature_collection, write_geojson
from garimpo.synthetic.merge_bench import MODEL_ID, region_box, write_region

SIZE = 5000.0  # 5 km cells: 6 cells of ~1,250 chips each (48 px chips, 24 px stride)
LOW, HIGH = 0.55, 0.775
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "merge_detections.py"


@pytest.fixture(scope="module")
def region():
    return region_box(-56.5, -6.0, 3, 2, SIZE)


@pytest.fixture(scope="module")
def chips(region, tmp_path_factory):
    return write_region(tmp_path_factory.mktemp("chips"), region, SIZE, mines=12, seed=3)


# ------------------------------------------------ the merge as it was before issue 17, kept as the reference


def _reference_merge_cells(per_cell_features, size_m, low, high, gap_m=0.0, id_prefix="det", require_seed=False):
    pieces = []
    for cid in sorted(per_cell_features):
        positives = [f for f in per_cell_features[cid] if float(f["properties"]["score"]) >= low]
        if not positives:
            continue
        _, cell_ll = cell_polygons(cid, size_m)
        pieces += clip_to_cell(dissolve(positives, gap_m), cell_ll, cid)
    kept = dual_threshold(dissolve(pieces, gap_m), low, high, require_seed)
    for f in kept:
        f["properties"]["area_ha"] = round(area_ha(f["geometry"]), 4)

    def key(f):
        c = f["geometry"].centroid
        return (-f["properties"]["score"], -f["properties"]["area_ha"], round(c.x, 7), round(c.y, 7))

    out = []
    for k, f in enumerate(sorted(kept, key=key), start=1):
        out.append({"geometry": f["geometry"], "properties": {"id": f"{id_prefix}-{k:05d}", **f["properties"]}})
    return out


def _reference_merge_region(paths, region, name, size_m, model_id, low, high, gap_m, require_seed):
    """scripts/merge_detections.py before issue 17: every cell's scores loaded, then merged."""
    scans = [load_chip_scores(p) for p in paths]
    per_cell = {
        s.provenance["cell"]: chip_features(
            s, low, {k: s.provenance[k] for k in ("scene_ids", "dates", "model_id", "config_hash")}
        )
        for s in scans
    }
    merged = _reference_merge_cells(per_cell, size_m, low, high, gap_m, require_seed=require_seed)
    inside = []
    for f in merged:
        geom = f["geometry"].intersection(region)
        if not geom.is_empty and geom.area > 0:
            inside.append(
                {
                    "geometry": geom,
                    "properties": {**f["properties"], "label": "mining", "threshold": low, "isolated_threshold": high},
                }
            )
    metadata = {
        "region": name,
        "cells": len(scans),
        "cell_size_m": size_m,
        "scene_ids": sorted({i for s in scans for i in s.provenance["scene_ids"]}),
        "dates": sorted({d for s in scans for d in s.provenance["dates"]}),
        "threshold": low,
        "isolated_threshold": high,
        "require_seed": require_seed,
        "chips_classified": sum(len(s.scores) for s in scans),
        "model_id": model_id,
    }
    return inside, metadata


@pytest.mark.parametrize("gap_m, require_seed", [(0.0, False), (200.0, True)])
def test_streamed_merge_equals_merging_every_cell_in_memory(chips, region, gap_m, require_seed):
    want, want_meta = _reference_merge_region(chips, region, "synth", SIZE, MODEL_ID, LOW, HIGH, gap_m, require_seed)
    got, meta = merge_region(chips[::-1], region, "synth", SIZE, MODEL_ID, LOW, HIGH, gap_m, require_seed)
    assert [f["properties"] for f in got] == [f["properties"] for f in want]
    assert [shapely.to_wkb(f["geometry"]) for f in got] == [shapely.to_wkb(f["geometry"]) for f in want]
    assert meta.pop("cells_without_data") == [] and meta.pop("cells_with_data") == 6
    assert meta == want_meta and list(meta) == list(want_meta)
    # The set is one worth comparing on: mines across cell edges, lone chips kept and dropped.
    assert any(len(f["properties"]["cells"]) > 1 for f in got)
    assert any(f["properties"]["n_parts"] == 1 for f in got)
    assert len(got) >= 5 and meta["chips_classified"] > 6000


def test_merge_holds_one_cell_of_scores_at_a_time(chips, region):
    loaded, alive_at_load = [], []

    def counting_load(path):
        alive_at_load.append(sum(ref() is not None for ref in loaded))
        scan = load_chip_scores(path)
        loaded.extend(weakref.ref(a) for a in (scan.rows, scan.cols, scan.scores))
        return scan

    feats, meta = merge_region(chips, region, "synth", SIZE, MODEL_ID, LOW, HIGH, load=counting_load)
    assert len(alive_at_load) == len(chips) == meta["cells"]
    assert alive_at_load == [0] * len(chips)  # the previous cell's arrays are gone before the next is read
    assert all(ref() is None for ref in loaded) and feats  # and none is kept with the detections


def test_a_stale_model_is_refused_by_cell_before_any_scores_are_read(chips, region):
    def no_load(path):
        raise AssertionError(f"{path} read before the model check")

    with pytest.raises(ValueError, match=r"cells \['W1089S0152', .*of synth .*another model than m2.*rescan"):
        merge_region(chips, region, "synth", SIZE, "m2", LOW, HIGH, load=no_load)


def test_some_cells_without_a_clear_pixel_are_warned_about_and_listed(region, tmp_path, caplog):
    cells = region_cells(region, SIZE)
    empty = [cells[0], cells[4]]
    # Brute force classifies a blank composite's chips too, all alike: here over the threshold.
    paths = write_region(tmp_path, region, SIZE, mines=12, seed=3, empty_cells=empty, blank_score=0.9)
    with caplog.at_level(logging.WARNING, logger="garimpo.detection.merge"):
        feats, meta = merge_region(paths, region, "synth", SIZE, MODEL_ID, LOW, HIGH)
    assert meta["cells_without_data"] == sorted(empty) and meta["cells_with_data"] == 4 and meta["cells"] == 6
    assert feats and not any(set(f["properties"]["cells"]) & set(empty) for f in feats)  # no blank "mines"
    assert meta["chips_classified"] > 6000  # the blank chips were classified all the same
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "region synth: 2 of 6 cells had no clear pixel in their composite" in warning
    assert all(c in warning for c in empty) and "'not seen'" in warning
    assert "config periods" in warning and "imagery.max_cloud_cover" in warning


def _fake_snakemake(tmp_path, region, paths):
    write_cell_list(tmp_path / "cells.json", "synth", SIZE, region_cells(region, SIZE))
    write_geojson(tmp_path / "region.geojson", feature_collection([feature(region, {"name": "synth"})]))
    (tmp_path / "config.json").write_text(json.dumps({"model_id": MODEL_ID, "threshold": LOW}))
    return SimpleNamespace(
        input=SimpleNamespace(
            cells=str(tmp_path / "cells.json"),
            chip_scores=[str(p) for p in paths],
            region=str(tmp_path / "region.geojson"),
            model=str(tmp_path / "config.json"),
        ),
        output=[str(tmp_path / "out" / "synth.geojson")],
        log=[str(tmp_path / "merge.log")],
        params=SimpleNamespace(
            detection={
                "threshold": None,
                "isolated_threshold": HIGH,
                "tta": False,
                "gap_m": 0.0,
                "require_seed": False,
            },
            region={},
            period={"name": "2024", "start": "2024-01-01", "end": "2024-12-31"},
            latest=True,  # the mission target's period: a region seen nowhere is refused
            attribution="test",
        ),
        wildcards=SimpleNamespace(region="synth", period="2024"),
    )


def test_rule_fails_on_a_region_without_any_clear_pixel_naming_it_and_what_to_do(region, tmp_path):
    paths = write_region(tmp_path / "chips", region, SIZE, empty_cells=region_cells(region, SIZE))
    smk = _fake_snakemake(tmp_path, region, paths)
    with pytest.raises(NoImageryError) as err:
        runpy.run_path(str(SCRIPT), init_globals={"snakemake": smk})
    msg = str(err.value)
    assert msg.startswith("region synth: none of its 6 cells had a clear pixel in its composite")
    for what in ("config periods", "imagery.max_cloud_cover", "regions.synth", "logs/composite_cell_synth_*.log"):
        assert what in msg
    assert not Path(smk.output[0]).exists()  # no empty "no mining" file for the next rules to publish


def test_an_earlier_period_seen_nowhere_is_written_empty_for_the_change_products(region, tmp_path):
    paths = write_region(tmp_path / "chips", region, SIZE, empty_cells=region_cells(region, SIZE))
    smk = _fake_snakemake(tmp_path, region, paths)
    smk.params.latest = False  # a cloudy year before the last one: "not seen", not a stop
    runpy.run_path(str(SCRIPT), init_globals={"snakemake": smk})
    doc = json.loads(Path(smk.output[0]).read_text())
    assert doc["features"] == [] and doc["metadata"]["cells_with_data"] == 0
    assert doc["metadata"]["period"] == "2024" and doc["metadata"]["period_start"] == "2024-01-01"


def test_rule_writes_detections_with_the_cells_without_data_in_metadata(region, tmp_path):
    cells = region_cells(region, SIZE)
    paths = write_region(tmp_path / "chips", region, SIZE, mines=12, seed=3, empty_cells=cells[:1])
    smk = _fake_snakemake(tmp_path, region, paths)
    runpy.run_path(str(SCRIPT), init_globals={"snakemake": smk})
    doc = json.loads(Path(smk.output[0]).read_text())
    meta = doc["metadata"]
    assert meta["cells_without_data"] == cells[:1] and meta["cells_with_data"] == 5
    assert meta["attribution"] == "test" and meta["generator"] == "garimpo detection" and doc["features"]
    assert np.isclose(meta["threshold"], LOW) and "no clear pixel" in Path(smk.log[0]).read_text()
