"""garimpo.outputs.over_time and the stats_over_time rule script, against hand-computed geodesic areas.

Squares are lon/lat boxes just north of the equator; their expected areas come from pyproj.Geod on the same
corners, so a union or a clip is checked against an independent sum of boxes. A box split along a meridian
has two halves of exactly equal area (the ellipsoid is symmetric about its axis).
"""

import json
import runpy
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from pyproj import Geod
from shapely.geometry import box, mapping

from garimpo.errors import InputDataError
from garimpo.outputs.over_time import area_over_time, plot_over_time

ROOT = Path(__file__).resolve().parents[1]
GEOD = Geod(ellps="WGS84")
U = 0.001  # one unit of the boxes below, in degrees (about 111 m)
ROUNDING = 0.011  # two roundings to 2 decimals (expected and table)


def sq(x0, y0, x1, y1):
    """A lon/lat box in units of U."""
    return box(x0 * U, y0 * U, x1 * U, y1 * U)


def ha(x0, y0, x1, y1) -> float:
    """Geodesic area of the same box by pyproj directly, in hectares."""
    lons = [x0 * U, x1 * U, x1 * U, x0 * U]
    lats = [y0 * U, y0 * U, y1 * U, y1 * U]
    area, _ = GEOD.polygon_area_perimeter(lons, lats)
    return abs(area) / 10_000


def area(name, geom, code=None):
    return {"geometry": geom, "properties": {"name": name, "code": code or name[-1]}}


def change(geom, kind, period="2022"):
    """A change feature in GeoJSON form, as the change rule writes it."""
    return {"type": "Feature", "geometry": mapping(geom), "properties": {"period": period, "kind": kind}}


# Two disjoint areas side by side covering the region: A = [0,10]x[0,10], B = [10,20]x[0,10].
AREAS = [area("Area A", sq(0, 0, 10, 10)), area("Area B", sq(10, 0, 20, 10))]
REGION = sq(0, 0, 20, 10)


def rows(table, name):
    return table[table["name"] == name].set_index("period")


def test_overlapping_detections_count_once_and_a_half_inside_detection_half():
    dets = {
        "2021": [
            sq(1, 1, 3, 3),  # 4 units² in A
            sq(2, 1, 4, 3),  # overlaps the first by half: A holds [1,4]x[1,3]
            {
                "type": "Feature",
                "geometry": mapping(sq(8, 5, 12, 6)),
                "properties": {"score": 0.9},
            },  # half in A, half in B
        ]
    }
    table = area_over_time(dets, {}, AREAS, "name", "code", REGION, "Tapajos")
    a, b = rows(table, "Area A").loc["2021"], rows(table, "Area B").loc["2021"]
    assert a["mined_ha"] == pytest.approx(ha(1, 1, 4, 3) + ha(8, 5, 10, 6), abs=ROUNDING)
    # Half of the straddling detection: the two halves of a box split on a meridian are equal.
    assert b["mined_ha"] == pytest.approx(ha(8, 5, 12, 6) / 2, abs=ROUNDING)
    assert b["mined_ha"] == pytest.approx(ha(10, 5, 12, 6), abs=ROUNDING)
    assert a["area_ha"] == pytest.approx(ha(0, 0, 10, 10), abs=ROUNDING)
    assert (a["id"], b["id"]) == ("A", "B")
    whole = rows(table, "Tapajos").loc["2021"]
    assert whole["id"] == "" and whole["area_ha"] == pytest.approx(ha(0, 0, 20, 10), abs=ROUNDING)
    assert whole["mined_ha"] == pytest.approx(ha(1, 1, 4, 3) + ha(8, 5, 12, 6), abs=ROUNDING)


def test_new_ha_counts_only_new_sites_and_expansions():
    dets = {"2021": [sq(1, 1, 3, 3)], "2022": [sq(1, 1, 6, 3), sq(12, 2, 14, 4), sq(15, 5, 17, 7)]}
    changes = {
        "2022": [
            change(sq(3, 1, 6, 3), "expansion"),  # A grows
            change(sq(12, 2, 14, 4), "new_site"),  # B
            change(sq(13, 3, 14, 4), "new_site"),  # overlaps the one before: counted once in new_ha, twice as a site
            change(sq(15, 5, 17, 7), "unknown"),  # no earlier clear look: not new mining
        ]
    }
    table = area_over_time(dets, changes, AREAS, "name", "code", REGION)
    a, b = rows(table, "Area A"), rows(table, "Area B")
    assert a.loc["2021", "new_ha"] == 0 and a.loc["2021", "new_sites"] == 0
    assert a.loc["2022", "new_ha"] == pytest.approx(ha(3, 1, 6, 3), abs=ROUNDING)
    assert a.loc["2022", "new_sites"] == 0  # an expansion is not a new site
    assert b.loc["2022", "new_ha"] == pytest.approx(ha(12, 2, 14, 4), abs=ROUNDING)
    assert b.loc["2022", "new_sites"] == 2
    whole = rows(table, "region").loc["2022"]
    assert whole["new_ha"] == pytest.approx(ha(3, 1, 6, 3) + ha(12, 2, 14, 4), abs=ROUNDING)
    assert whole["new_sites"] == 2


def test_cumulative_is_the_union_over_periods():
    dets = {
        "2021": [sq(1, 1, 3, 3)],  # disappears in 2022 but stays in the footprint
        "2022": [sq(2, 1, 5, 3)],  # overlaps 2021's by [2,3]x[1,3]
        "2023": [],
    }
    table = area_over_time(dets, {}, AREAS, "name", region=REGION)
    a = rows(table, "Area A")
    assert a.loc["2021", "cumulative_ha"] == pytest.approx(ha(1, 1, 3, 3), abs=ROUNDING)
    assert a.loc["2022", "mined_ha"] == pytest.approx(ha(2, 1, 5, 3), abs=ROUNDING)
    assert a.loc["2022", "cumulative_ha"] == pytest.approx(ha(1, 1, 5, 3), abs=ROUNDING)
    # An empty period: nothing mined, nothing new, the footprint kept.
    assert a.loc["2023", ["mined_ha", "new_ha", "new_sites"]].tolist() == [0, 0, 0]
    assert a.loc["2023", "cumulative_ha"] == a.loc["2022", "cumulative_ha"]
    assert (a["id"] == "").all()  # no id_field


def test_region_row_is_the_sum_of_disjoint_areas_that_cover_it():
    dets = {
        "2021": [sq(1, 1, 3, 3), sq(9, 4, 13, 8), sq(18, 8, 20, 10)],
        "2022": [sq(5, 5, 15, 6), sq(2, 2, 3, 3)],
    }
    changes = {"2022": [change(sq(5, 5, 15, 6), "new_site")]}
    table = area_over_time(dets, changes, AREAS, "name", "code", REGION)
    for period in dets:
        at = table[table["period"] == period].set_index("name")
        for column in ("mined_ha", "new_ha", "cumulative_ha", "area_ha"):
            assert at.loc["region", column] == pytest.approx(
                at.loc["Area A", column] + at.loc["Area B", column], abs=2 * ROUNDING
            ), (period, column)
    # One new site touching both areas counts once in each, and once for the region.
    assert rows(table, "region").loc["2022", "new_sites"] == 1
    assert rows(table, "Area A").loc["2022", "new_sites"] == rows(table, "Area B").loc["2022", "new_sites"] == 1


def test_without_a_region_every_detection_counts():
    dets = {"2021": [sq(1, 1, 3, 3), sq(30, 30, 32, 32)]}  # the second lies outside every area
    table = area_over_time(dets, {}, AREAS, "name")
    whole = rows(table, "region").loc["2021"]
    assert whole["mined_ha"] == pytest.approx(ha(1, 1, 3, 3) + ha(30, 30, 32, 32), abs=ROUNDING)
    assert pd.isna(whole["area_ha"])


def test_period_order_columns_and_empty_areas():
    dets = {"2023": [sq(1, 1, 3, 3)], "2021": [], "2022": [sq(11, 1, 12, 2)]}  # the mapping's order is the time order
    table = area_over_time(dets, {}, [*AREAS, area("Area C", sq(0, 20, 5, 25))], "name", "code")
    assert list(table.columns) == [
        "period",
        "name",
        "id",
        "mined_ha",
        "new_ha",
        "new_sites",
        "cumulative_ha",
        "area_ha",
    ]
    # The region first; then the areas, most cumulative hectares first; each in the given period order.
    assert list(table["name"]) == ["region"] * 3 + ["Area A"] * 3 + ["Area B"] * 3
    assert list(table["period"]) == ["2023", "2021", "2022"] * 3
    assert rows(table, "Area A").loc["2021", "cumulative_ha"] == pytest.approx(ha(1, 1, 3, 3), abs=ROUNDING)
    with_empty = area_over_time(dets, {}, [*AREAS, area("Area C", sq(0, 20, 5, 25))], "name", include_empty=True)
    c = rows(with_empty, "Area C")
    assert c[["mined_ha", "new_ha", "new_sites", "cumulative_ha"]].to_numpy().sum() == 0
    assert c["area_ha"].iloc[0] == pytest.approx(ha(0, 20, 5, 25), abs=ROUNDING)


def test_no_detections_at_all_gives_zero_region_rows():
    table = area_over_time({"2021": [], "2022": []}, {"2021": [], "2022": []}, AREAS, "name", region=REGION)
    assert list(table["name"]) == ["region", "region"]
    assert table[["mined_ha", "new_ha", "new_sites", "cumulative_ha"]].to_numpy().sum() == 0


def test_bad_inputs_are_refused():
    with pytest.raises(InputDataError, match="period.*'2024'"):
        area_over_time({"2021": []}, {"2024": []}, AREAS, "name")
    with pytest.raises(InputDataError, match="no field 'nome'"):
        area_over_time({"2021": []}, {}, AREAS, "nome")
    with pytest.raises(InputDataError, match="no field 'cod'"):
        area_over_time({"2021": []}, {}, AREAS, "name", "cod")


def test_plot_writes_a_png(tmp_path):
    dets = {"2021": [sq(1, 1, 3, 3)], "2022": [sq(1, 1, 4, 3), sq(12, 1, 13, 2)], "2023": [sq(11, 1, 15, 2)]}
    table = area_over_time(dets, {}, AREAS, "name", "code", REGION, "Tapajos")
    out = plot_over_time(table, tmp_path / "figs" / "over_time.png", top_n=1, title="test")
    assert out.stat().st_size > 1000
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > 300
    # A table read back from its CSV (empty ids become NaN) plots too.
    table.to_csv(tmp_path / "t.csv", index=False)
    plot_over_time(pd.read_csv(tmp_path / "t.csv"), tmp_path / "again.png")
    assert (tmp_path / "again.png").stat().st_size > 1000
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]  # no temporary file left


# ---- the rule script ------------------------------------------------------------------------------------------


class Named(list):
    """Snakemake's Namedlist in small: a list whose items are also attributes."""

    def __init__(self, **items):
        super().__init__(items.values())
        self.__dict__.update(items)


class Params:
    def __init__(self, **items):
        self.__dict__.update(items)


def collection(features, period=None):
    doc = {"type": "FeatureCollection", "features": features}
    if period:
        doc["metadata"] = {"period": period}
    return doc


def rule_files(tmp_path, periods=("2021", "2022"), metadata_periods=None):
    def write(path, doc):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))
        return str(path)

    dets = {"2021": [sq(1, 1, 3, 3)], "2022": [sq(1, 1, 5, 3), sq(12, 2, 14, 4)]}
    chg = {"2021": [], "2022": [change(sq(3, 1, 5, 3), "expansion"), change(sq(12, 2, 14, 4), "new_site")]}
    stated = metadata_periods or periods
    detections = [
        write(
            tmp_path / "results/detections/r" / f"{p}.geojson",
            collection([{"type": "Feature", "geometry": mapping(g), "properties": {"score": 0.9}} for g in dets[p]], s),
        )
        for p, s in zip(periods, stated)
    ]
    seen = {"2021": 0.4, "2022": 0.99}  # what the change products say each period saw of the region
    changes = [
        write(
            tmp_path / "results/change/r" / f"{p}.geojson",
            {**collection(chg[p], p), "metadata": {"period": p, "observed_fraction": seen[p]}},
        )
        for p in periods
    ]
    areas = write(
        tmp_path / "areas.geojson",
        collection(
            [{"type": "Feature", "geometry": mapping(a["geometry"]), "properties": a["properties"]} for a in AREAS]
        ),
    )
    region = write(
        tmp_path / "region.geojson", collection([{"type": "Feature", "geometry": mapping(REGION), "properties": {}}])
    )
    return Params(
        input=Named(detections=detections, changes=changes, areas=areas, region=region),
        output=Named(
            csv=str(tmp_path / "results/stats/r_over_time.csv"), png=str(tmp_path / "results/stats/r_over_time.png")
        ),
        log=[str(tmp_path / "logs/stats_over_time_r.log")],
        wildcards=Params(region="r"),
        params=Params(
            periods=list(periods),
            encroachment={"areas": str(areas), "name_field": "name", "id_field": "code"},
            region={},
            attribution="test attribution",
        ),
    )


def test_rule_script_writes_the_table_and_plot(tmp_path, monkeypatch, restore_logging):
    monkeypatch.chdir(tmp_path)
    smk = rule_files(tmp_path)
    runpy.run_path(str(ROOT / "scripts" / "stats_over_time.py"), init_globals={"snakemake": smk})
    table = pd.read_csv(smk.output.csv, keep_default_na=False)
    assert list(table["name"]) == ["r", "r", "Area A", "Area A", "Area B", "Area B"]
    a = table[table["name"] == "Area A"].set_index("period")
    assert a.loc[2022, "new_ha"] == pytest.approx(ha(3, 1, 5, 3), abs=ROUNDING)
    assert a.loc[2022, "cumulative_ha"] == pytest.approx(ha(1, 1, 5, 3), abs=ROUNDING)
    assert table[table["name"] == "Area B"]["new_sites"].tolist() == [0, 1]
    # the region's rows say how much of it each period saw (a cloudy year's dip is "not seen")
    assert table["observed_fraction"].tolist() == ["0.4", "0.99", "", "", "", ""]
    assert Path(smk.output.png).stat().st_size > 1000


def test_rule_script_refuses_a_file_count_or_order_that_does_not_match_the_periods(
    tmp_path, monkeypatch, restore_logging
):
    monkeypatch.chdir(tmp_path)
    smk = rule_files(tmp_path)
    smk.params.periods = ["2021", "2022", "2023"]
    with pytest.raises(InputDataError, match=r"2 detection file\(s\) for 3 period\(s\)"):
        runpy.run_path(str(ROOT / "scripts" / "stats_over_time.py"), init_globals={"snakemake": smk})
    smk = rule_files(tmp_path, metadata_periods=("2022", "2021"))
    with pytest.raises(InputDataError, match="metadata says period '2022' but it is given as period '2021'"):
        runpy.run_path(str(ROOT / "scripts" / "stats_over_time.py"), init_globals={"snakemake": smk})
    assert not Path(smk.output.csv).exists()
