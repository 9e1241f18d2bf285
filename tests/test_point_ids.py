"""Point ids are unique within each rule's table: each point's training image is written to a file named by its id.

Two files of the same name (2022/mines.csv, 2023/mines.csv), stems that all become ``points``, two equal
``source`` labels and a hard-negatives file named like the random negatives' prefix would otherwise give two
points one id, so one point's imagery would overwrite the other's. Also here: an integer GeoTIFF needs a
scale to reflectance on every band, not only on one.
"""

from __future__ import annotations

import json
import logging
import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import rasterio
from affine import Affine
from conftest import EPSG, ORIGIN

from garimpo.errors import InputDataError
from garimpo.training.images import import_local_images
from garimpo.training.points import check_unique_ids, load_point_sources

ROOT = Path(__file__).resolve().parents[1]
ROWS = "longitude,latitude\n-55.0,-6.0\n-55.1,-6.1\n"


class _Files(list):
    """Snakemake's named file lists: iterable, and each file an attribute."""

    def __init__(self, **files):
        super().__init__(files.values())
        self.__dict__.update(files)


def _csv(path: Path, text: str = ROWS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_files_of_one_name_get_labels_of_their_own_with_a_warning(tmp_path, caplog):
    a, b = _csv(tmp_path / "2022" / "mines.csv"), _csv(tmp_path / "2023" / "mines.csv")
    with caplog.at_level(logging.WARNING, logger="garimpo.training.points"):
        good, _ = load_point_sources([{"path": str(a)}, {"path": str(b)}], None, "positives.points")
    assert list(good["point_id"]) == ["mines-00002", "mines-00003", "mines_2-00002", "mines_2-00003"]
    assert list(good["source"]) == ["mines", "mines", "mines_2", "mines_2"]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and str(a) in said[0] and str(b) in said[0] and "'mines_2'" in said[0], said


def test_stems_that_all_become_points_are_told_apart(tmp_path):
    files = [_csv(tmp_path / "Шахты.csv"), _csv(tmp_path / "---.csv"), _csv(tmp_path / "矿.csv")]
    good, _ = load_point_sources([{"path": str(f)} for f in files], None, "positives.points")
    assert sorted(set(good["source"])) == ["points", "points_2", "points_3"]
    assert good["point_id"].is_unique


def test_a_label_set_in_the_config_keeps_it_and_a_derived_one_steps_aside(tmp_path):
    a, b = _csv(tmp_path / "a" / "mines.csv"), _csv(tmp_path / "b" / "other.csv")
    good, _ = load_point_sources([{"path": str(a)}, {"path": str(b), "source": "Mines"}], None, "p")
    assert list(good["source"]) == ["mines_2", "mines_2", "Mines", "Mines"]  # compared ignoring case


def test_two_equal_sources_in_the_config_are_refused_naming_both(tmp_path):
    a, b = _csv(tmp_path / "a.csv"), _csv(tmp_path / "b.csv")
    inputs = [{"path": str(a), "source": "demo_known_mines"}, {"path": str(b), "source": "demo_known_mines"}]
    with pytest.raises(InputDataError) as exc:
        load_point_sources(inputs, None, "positives.points")
    for word in (str(a), str(b), "positives.points[0].source", "positives.points[1].source", "its own source"):
        assert word in str(exc.value)


def test_hard_negatives_do_not_take_the_random_negatives_prefix(tmp_path):
    neg = _csv(tmp_path / "neg.csv")
    reserved = {"neg": "the random negatives"}
    good, _ = load_point_sources([{"path": str(neg)}], None, "negatives.hard_negative_points", reserved)
    assert list(good["point_id"]) == ["neg_2-00002", "neg_2-00003"]
    with pytest.raises(InputDataError) as exc:
        load_point_sources([{"path": str(neg), "source": "neg"}], None, "negatives.hard_negative_points", reserved)
    for word in (str(neg), "negatives.hard_negative_points[0].source", "the random negatives", "its own source"):
        assert word in str(exc.value)


def test_a_table_with_a_repeated_id_is_refused_listing_it():
    points = pd.DataFrame({"point_id": ["a-00002", "b-00002", "A-00002", "c-00002", "c-00002"]})
    with pytest.raises(InputDataError) as exc:
        check_unique_ids(points, "positives.points")
    assert "positives.points: point ids repeat (3: A-00002, a-00002, c-00002)" in str(exc.value)
    check_unique_ids(points.iloc[[0, 1, 3]], "positives.points")


def test_negative_points_rule_gives_random_and_hard_negatives_distinct_ids(tmp_path):
    mines = tmp_path / "mines.csv"
    pd.DataFrame({"point_id": ["m-00002"], "lon": [-55.9], "lat": [-6.9]}).to_csv(mines, index=False)
    protected = tmp_path / "protected.geojson"
    ring = [[-56, -7], [-54, -7], [-54, -5], [-56, -5], [-56, -7]]
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
    protected.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    hard = _csv(tmp_path / "hard" / "neg.csv")
    out = tmp_path / "out"
    smk = SimpleNamespace(
        input=SimpleNamespace(mines=str(mines), protected=str(protected), urban=""),
        output=_Files(points=str(out / "negatives.csv"), rejected=str(out / "rejected.csv")),
        params=SimpleNamespace(
            bounds=[-56, -7, -54, -5],
            ratio=2,
            min_distance_m=100,
            seed=0,
            protected_layer=None,
            protected_encoding=None,
            urban_layer=None,
            urban_encoding=None,
            hard_points=[{"path": str(hard)}],
        ),
        log=[str(tmp_path / "log.txt")],
    )
    runpy.run_path(str(ROOT / "scripts" / "negative_points.py"), init_globals={"snakemake": smk})
    ids = list(pd.read_csv(smk.output.points)["point_id"])
    assert ids == ["neg-00000", "neg-00001", "neg_2-00002", "neg_2-00003"]


def _uint16_geotiff(path: Path, scales: tuple[float, ...]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    dn = np.full((3, 8, 8), 2000, np.uint16)
    transform = Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1])
    with rasterio.open(
        path, "w", driver="GTiff", width=8, height=8, count=3, dtype="uint16", crs=EPSG, transform=transform
    ) as dst:
        dst.write(dn)
        for i, name in enumerate(("B04", "B03", "B02"), start=1):
            dst.set_band_description(i, name)
        dst.scales, dst.offsets = scales, (0.0,) * 3
    return path


def test_an_integer_geotiff_needs_a_scale_on_every_band(tmp_path):
    key = "positives.local_dirs"
    partial = _uint16_geotiff(tmp_path / "partial" / "a.tif", (1e-4, 1.0, 1.0))
    with pytest.raises(InputDataError) as exc:
        import_local_images([partial.parent], tmp_path / "t1", key=key)
    msg = str(exc.value)
    for word in (str(partial), key, "on some bands only: bands B03, B02 have none", "(DN - 1000) / 10000", "python -c"):
        assert word in msg
    assert "B04" not in msg.split("have none")[0].split("bands ")[-1]
    whole = _uint16_geotiff(tmp_path / "whole" / "a.tif", (1e-4,) * 3)
    assert len(import_local_images([whole.parent], tmp_path / "t2", key=key)) == 1
