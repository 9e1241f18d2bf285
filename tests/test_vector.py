"""User vector and point files: the one reader (garimpo.geo.vector), point tables, and RFC 7946 output.

The real-world cases of ../shared/cases/real-world/vector go through the functions the rules call; the
synthetic cases of the same kinds are written here with pyogrio (GDAL), in tmp_path.
"""

import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import shapely
from shapely.geometry import LinearRing, MultiPolygon, Polygon, box

from garimpo.detection.polygons import to_geojson
from garimpo.errors import CoordinateError, InputDataError
from garimpo.geo.cells import region_cells
from garimpo.geo.coordinates import parse_coordinate
from garimpo.geo.geojson import feature, feature_collection, geodesic_area_ha, reproject, write_geojson
from garimpo.geo.tables import sniff_delimiter
from garimpo.geo.vector import (
    layers,
    read_polygon_features,
    read_polygons,
    read_region,
    read_vector,
    source,
    source_encoding,
)
from garimpo.training.negatives import sampling_area
from garimpo.training.points import load_point_sources, load_points

SCHEMA = Path(__file__).resolve().parents[1] / "config" / "schema.yaml"
CASES = "cases/real-world/vector"
BRAZIL = (-75.0, -35.0, -35.0, 5.0)
# (lon, lat) of the three points of points_semicolon_decimal_comma.csv (README of the cases).
THREE_POINTS = [(-55.7321, -6.2512), (-56.0410, -7.1005), (-57.2200, -5.9988)]
SQUARE = box(-55.6, -6.6, -55.4, -6.4)  # the territory of ti_exemplo, 0.2 x 0.2 degrees
SQUARE_HA = 48_928.2


def lonlat(points):
    return list(zip(points["lon"], points["lat"]))


def assert_points(points, expected, tol=1e-6):
    got = lonlat(points)
    assert len(got) == len(expected)
    for (lon, lat), (elon, elat) in zip(got, expected):
        assert lon == pytest.approx(elon, abs=tol) and lat == pytest.approx(elat, abs=tol)


# ---- the real-world cases, as a run meets them -------------------------------------------------------------


@pytest.mark.shared
def test_semicolon_csv_with_decimal_commas(shared_dir):
    good, bad = load_point_sources(
        [{"path": str(shared_dir / CASES / "points_semicolon_decimal_comma.csv")}], BRAZIL, "positives.points"
    )
    assert_points(good, THREE_POINTS)
    assert bad.empty


@pytest.mark.shared
def test_dms_csv(shared_dir):
    good, bad = load_point_sources(
        [{"path": str(shared_dir / CASES / "points_dms.csv"), "name_column": "nome"}], BRAZIL
    )
    assert_points(good, [(-55.732111, -6.251194), (-56.041000, -7.100500), (-57.2200, -5.9988)])
    assert good["name"].tolist() == ["Garimpo D", "Garimpo E", "Garimpo F"] and bad.empty


@pytest.mark.shared
def test_sirgas_utm_points_geojson_with_a_crs_member(shared_dir):
    good, bad = load_point_sources(
        [{"path": str(shared_dir / CASES / "points_sirgas2000_utm21s.geojson"), "name_column": "nome"}], BRAZIL
    )
    assert_points(good, THREE_POINTS)
    assert good["name"].tolist() == ["Garimpo A", "Garimpo B", "Garimpo C"] and bad.empty


@pytest.mark.shared
def test_point_shapefile(shared_dir, caplog):
    with caplog.at_level(logging.WARNING):
        good, bad = load_point_sources(
            [{"path": str(shared_dir / CASES / "garimpos.shp"), "name_column": "nome"}], BRAZIL
        )
    assert lonlat(good) == [(-55.5, -6.5)] and good["name"].tolist() == ["Garimpo X"] and bad.empty
    assert "no CRS declared" in caplog.text  # no .prj: read as lon/lat only because it can only be degrees


@pytest.mark.shared
def test_sirgas_utm_area_as_a_region(shared_dir):
    region = read_region(shared_dir / CASES / "area_sirgas2000_utm21s.geojson", key="regions.utm")
    assert geodesic_area_ha(region) == pytest.approx(SQUARE_HA, abs=0.1)
    assert region.bounds == pytest.approx((-55.3, -6.6, -55.1, -6.4), abs=1e-6)
    assert len(region_cells(region, 100_000)) >= 1  # was an OverflowError


@pytest.mark.shared
@pytest.mark.parametrize(
    "name, layer", [("ti_exemplo.shp", None), ("ti_exemplo.gpkg", "ti"), ("ti_exemplo.gpkg", None)]
)
def test_territory_shapefile_and_geopackage(shared_dir, name, layer):
    path = shared_dir / CASES / name
    feats = read_polygon_features(path, layer, key="encroachment.areas")
    assert len(feats) == 1 and feats[0]["properties"] == {"terrai_nom": "TI Exemplo"}
    assert geodesic_area_ha(feats[0]["geometry"]) == pytest.approx(48_930, abs=5)
    assert feats[0]["geometry"].bounds == pytest.approx(SQUARE.bounds, abs=1e-7)
    # The same file as a region and as protected areas for the negatives.
    assert geodesic_area_ha(read_region(path, layer=layer)) == pytest.approx(SQUARE_HA, abs=0.1)
    area = sampling_area(read_polygons(path, layer=layer), BRAZIL)
    assert geodesic_area_ha(area) == pytest.approx(SQUARE_HA, abs=0.1)
    assert read_vector(path, layer).crs == "EPSG:4674"


# ---- synthetic files of the same kinds ---------------------------------------------------------------------


def write_layer(path, geoms, names, crs="EPSG:4674", layer=None, encoding=None, field="nome", **kw):
    wkb = np.array([shapely.to_wkb(g) for g in geoms], dtype=object)
    kind = geoms[0].geom_type
    pyogrio.raw.write(
        path,
        wkb,
        [np.array(names, dtype=object)],
        fields=[field],
        geometry_type=kind,
        crs=crs,
        layer=layer,
        encoding=encoding,
        **kw,
    )
    return path


def feature_names(path, **kw):
    return [f["properties"]["nome"] for f in read_polygon_features(path, **kw)]


def test_zipped_shapefile(tmp_path):
    shp = write_layer(tmp_path / "ti.shp", [SQUARE], ["Terra Indígena Munduruku"], driver="ESRI Shapefile")
    archive = tmp_path / "ti.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for part in tmp_path.glob("ti.*"):
            if part != archive:
                zf.write(part, part.name)
    shp.unlink()
    assert feature_names(archive) == ["Terra Indígena Munduruku"]
    assert geodesic_area_ha(read_region(archive)) == pytest.approx(SQUARE_HA, abs=0.1)


def test_flatgeobuf_in_utm_is_reprojected(tmp_path):
    utm = reproject(SQUARE, "EPSG:4326", "EPSG:31981")
    path = write_layer(tmp_path / "ti.fgb", [utm], ["TI"], crs="EPSG:31981", driver="FlatGeobuf")
    region = read_region(path)
    assert region.bounds == pytest.approx(SQUARE.bounds, abs=1e-7)
    assert geodesic_area_ha(region) == pytest.approx(SQUARE_HA, abs=0.5)


def test_geojson_with_a_bom_and_accents(tmp_path):
    doc = feature_collection([feature(SQUARE, {"nome": "Terra Indígena Munduruku"})])
    path = tmp_path / "ti.geojson"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(doc, ensure_ascii=False).encode("utf-8"))
    assert feature_names(path) == ["Terra Indígena Munduruku"]


def test_latin1_geojson_falls_back_with_a_warning(tmp_path, caplog):
    doc = feature_collection([feature(SQUARE, {"nome": "Terra Indígena"})])
    path = tmp_path / "ti.geojson"
    path.write_bytes(json.dumps(doc, ensure_ascii=False).encode("latin-1"))
    with caplog.at_level(logging.WARNING):
        assert feature_names(path) == ["Terra Indígena"]
    assert "not UTF-8" in caplog.text and str(path) in caplog.text


@pytest.mark.parametrize("encoding, cpg", [("cp1252", True), ("latin-1", True), ("latin-1", False)])
def test_shapefile_encodings(tmp_path, encoding, cpg):
    path = write_layer(
        tmp_path / "ti.shp",
        [SQUARE],
        ["Terra Indígena Munduruku"],
        driver="ESRI Shapefile",
        encoding="ISO-8859-1" if encoding == "latin-1" else encoding,
    )
    assert b"Ind\xedgena" in (tmp_path / "ti.dbf").read_bytes()  # one byte: not UTF-8
    if not cpg:
        (tmp_path / "ti.cpg").unlink()  # GDAL then takes the DBF as ISO-8859-1
    assert feature_names(path) == ["Terra Indígena Munduruku"]


# Windows-1252 prints 0x80-0x9F (– ’ “ ” €); ISO-8859-1, GDAL's guess for a .dbf without .cpg, makes them
# C1 controls. Names a Brazilian GIS writes that way:
CP1252_NAMES = ["Terra Indígena São João – Área", "Pau D’Arco", "“Gleba” Rio €", "Sem aspas"]


@pytest.mark.parametrize("driver, suffix", [("ESRI Shapefile", "shp"), ("GeoJSON", "geojson")])
def test_cp1252_text_read_as_latin1_is_read_again_as_cp1252(tmp_path, caplog, driver, suffix):
    path = write_layer(tmp_path / f"ti.{suffix}", [SQUARE] * 4, CP1252_NAMES, driver=driver, encoding="cp1252")
    (tmp_path / "ti.cpg").unlink(missing_ok=True)
    if suffix == "geojson":  # GeoJSON is UTF-8 by RFC 7946: write the cp1252 bytes by hand
        doc = feature_collection([feature(SQUARE, {"nome": n}) for n in CP1252_NAMES])
        path.write_bytes(json.dumps(doc, ensure_ascii=False).encode("cp1252"))
    with caplog.at_level(logging.WARNING):
        assert feature_names(path, key="encroachment.areas") == CP1252_NAMES
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if suffix == "shp":  # silent before: GDAL reads it as ISO-8859-1 without a word
        assert len(warned) == 1 and str(path) in warned[0] and "encroachment.areas" in warned[0]
        assert ".cpg" in warned[0] and "`encoding`" in warned[0]
    caplog.clear()
    # The encoding set in the config is taken as it is, without a warning.
    with caplog.at_level(logging.WARNING):
        assert feature_names(path, encoding="cp1252") == CP1252_NAMES
        assert read_region(path, "nome", "Pau D’Arco", encoding="cp1252").equals(SQUARE)
    assert not caplog.records


def test_undefined_cp1252_bytes_and_plain_latin1_are_left_alone(tmp_path, caplog):
    # 0x81 is a C1 control in ISO-8859-1 and undefined in cp1252: kept, while 0x96 beside it is mapped.
    path = write_layer(tmp_path / "ti.shp", [SQUARE] * 2, ["x", "y"], driver="ESRI Shapefile")
    dbf = (tmp_path / "ti.dbf").read_bytes()
    (tmp_path / "ti.dbf").write_bytes(dbf.replace(b"x ", b"\x81\x96").replace(b"y ", b"\xe9 "))
    (tmp_path / "ti.cpg").unlink()
    with caplog.at_level(logging.WARNING):
        assert [n.strip() for n in feature_names(path)] == ["\x81–", "é"]
    assert "Windows-1252" in caplog.text


@pytest.mark.parametrize("names", [["Terra Indígena São João"], CP1252_NAMES])
def test_utf8_shapefile_without_cpg_is_read_as_utf8(tmp_path, caplog, names):
    """UTF-8 .dbf bytes read as ISO-8859-1 give 'IndÃ­gena' (the user test's case, silent for plain accents)."""
    path = write_layer(tmp_path / "ti.shp", [SQUARE] * len(names), names, driver="ESRI Shapefile", encoding="UTF-8")
    (tmp_path / "ti.cpg").unlink()
    with caplog.at_level(logging.WARNING):
        assert feature_names(path, key="regions.ti") == names
        assert read_region(path, "nome", names[0]).equals(SQUARE)
    assert "is UTF-8" in caplog.text and "holding UTF-8" in caplog.text and "regions.ti" in caplog.text


def test_a_point_shapefile_in_cp1252_without_cpg(tmp_path):
    pts = [shapely.Point(lon, lat) for lon, lat in THREE_POINTS]
    path = write_layer(tmp_path / "garimpos.shp", pts, CP1252_NAMES[:3], driver="ESRI Shapefile", encoding="cp1252")
    (tmp_path / "garimpos.cpg").unlink()
    good, _ = load_points(path, name_column="nome", bounds=BRAZIL)
    assert good["name"].tolist() == CP1252_NAMES[:3]


def test_a_shapefile_without_its_dbf_is_warned_and_named(tmp_path, caplog):
    pts = write_layer(tmp_path / "garimpos.shp", [shapely.Point(-55.5, -6.5)], ["X"], driver="ESRI Shapefile")
    area = write_layer(tmp_path / "ti.shp", [SQUARE], ["TI"], driver="ESRI Shapefile")
    (tmp_path / "garimpos.dbf").unlink()
    (tmp_path / "ti.dbf").unlink()
    with caplog.at_level(logging.WARNING):
        with pytest.raises(InputDataError) as info:
            load_point_sources([{"path": str(pts), "name_column": "nome"}], BRAZIL, "positives.points")
    msg = str(info.value)
    assert str(pts) in msg and "[config positives.points[0]]" in msg and "name_column 'nome' not found" in msg
    assert "no fields at all" in msg and ".dbf is missing" in msg
    assert "garimpos.dbf is missing" in caplog.text and str(pts) in caplog.text
    # Without name_column the points are still usable, with the warning.
    good, _ = load_points(pts, bounds=BRAZIL)
    assert lonlat(good) == [(-55.5, -6.5)]
    with pytest.raises(InputDataError, match=r"\[config regions\.r\]: field 'nome' not found.*\.dbf is missing"):
        read_region(area, "nome", "TI", key="regions.r")
    # Inside a .zip there are no sibling files to look at: a Shapefile without fields is warned about.
    archive = tmp_path / "ti.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for part in ("ti.shp", "ti.shx", "ti.prj"):
            zf.write(tmp_path / part, part)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert read_region(archive).equals(SQUARE)
    assert ".dbf is missing" in caplog.text and str(archive) in caplog.text


def test_a_self_intersecting_polygon_is_repaired_and_logged(tmp_path, caplog):
    bowtie = Polygon([(-55.6, -6.6), (-55.4, -6.4), (-55.4, -6.6), (-55.6, -6.4)])
    path = tmp_path / "areas.geojson"
    path.write_text(
        json.dumps(feature_collection([feature(bowtie, {"nome": "gravata"}), feature(SQUARE, {"nome": "quadrada"})]))
    )
    with caplog.at_level(logging.WARNING):
        feats = read_polygon_features(path, key="negatives.protected_areas")
    assert all(f["geometry"].is_valid for f in feats)
    assert geodesic_area_ha(feats[0]["geometry"]) == pytest.approx(SQUARE_HA / 2, abs=0.1)
    assert "repaired 1 invalid polygon(s) of 2" in caplog.text and str(path) in caplog.text
    assert "negatives.protected_areas" in caplog.text


@pytest.mark.parametrize(
    "name, content",
    [
        ("cut.geojson", b'{"type": "FeatureCollection", "features": [{"type": "Feature", "geom'),
        ("junk.gpkg", b"not a database at all" * 20),
        ("cut.shp", None),
    ],
)
def test_unreadable_files_name_the_file_and_what_to_do(tmp_path, name, content):
    path = tmp_path / name
    if content is None:  # a Shapefile whose .shp was cut short, its .shx and .dbf intact
        write_layer(path, [SQUARE], ["x"], driver="ESRI Shapefile")
        path.write_bytes(path.read_bytes()[:60])
    else:
        path.write_bytes(content)
    with pytest.raises(InputDataError) as info:
        read_region(path, key="regions.x")
    msg = str(info.value)
    assert str(path) in msg and "regions.x" in msg and "re-export" in msg


def test_missing_file(tmp_path):
    with pytest.raises(InputDataError, match="not found; check the path"):
        read_polygons(tmp_path / "nope.gpkg", key="negatives.urban_mask")


def test_geopackage_layers(tmp_path):
    path = write_layer(tmp_path / "areas.gpkg", [SQUARE], ["a"], layer="ti")
    write_layer(path, [box(-55.3, -6.6, -55.1, -6.4)], ["b"], crs="EPSG:4326", layer="uc")
    assert layers(path) == ["ti", "uc"]
    with pytest.raises(InputDataError) as info:
        read_polygons(path, key="encroachment.areas")
    assert "2 layers ['ti', 'uc']" in str(info.value) and "layer" in str(info.value)
    assert "encroachment.areas" in str(info.value)
    assert feature_names(path, layer="uc") == ["b"]
    with pytest.raises(InputDataError, match=r"no such layer; the file has \['ti', 'uc'\]"):
        read_polygons(path, layer="tis")


@pytest.mark.filterwarnings("ignore:.crs. was not provided")
def test_a_projected_file_without_a_crs_asks_for_a_prj(tmp_path):
    path = write_layer(
        tmp_path / "utm.shp", [reproject(SQUARE, "EPSG:4326", "EPSG:31981")], ["x"], crs=None, driver="ESRI Shapefile"
    )
    assert not (tmp_path / "utm.prj").exists()
    with pytest.raises(InputDataError, match=r"no coordinate reference system declared.*\.prj"):
        read_region(path)


def test_a_geojson_in_metres_without_crs_member_is_refused(tmp_path):
    path = tmp_path / "utm.geojson"
    path.write_text(json.dumps(feature_collection([feature(reproject(SQUARE, "EPSG:4326", "EPSG:31981"), {})])))
    with pytest.raises(InputDataError, match="feature 1 lies outside lon/lat range.*declare its CRS"):
        read_region(path)


def test_points_from_a_geopackage_in_utm(tmp_path):
    pts = [reproject(shapely.Point(lon, lat), "EPSG:4326", "EPSG:31981") for lon, lat in THREE_POINTS]
    path = write_layer(tmp_path / "mines.gpkg", pts, ["A", "B", "C"], crs="EPSG:31981", layer="garimpos")
    good, bad = load_points(path, name_column="nome", bounds=BRAZIL)
    assert_points(good, THREE_POINTS, tol=1e-7)
    assert good["name"].tolist() == ["A", "B", "C"] and bad.empty


def test_points_in_metres_without_a_crs_member_say_so(tmp_path):
    path = tmp_path / "utm.geojson"
    pts = [reproject(shapely.Point(lon, lat), "EPSG:4326", "EPSG:31981") for lon, lat in THREE_POINTS]
    path.write_text(json.dumps(feature_collection([feature(p, {}) for p in pts])))
    with pytest.raises(
        InputDataError, match=r"no usable point among 3 rows .*row 1: out of lon/lat range.*CRS declared"
    ):
        load_points(path)


def test_a_polygon_in_a_points_file_is_a_rejected_row(tmp_path):
    path = tmp_path / "mixed.geojson"
    path.write_text(json.dumps(feature_collection([feature(shapely.Point(-56.0, -6.0), {}), feature(SQUARE, {})])))
    good, bad = load_points(path)
    assert len(good) == 1 and bad["row"].tolist() == [2] and "a Polygon, not a point" in bad["reason"].iloc[0]


# ---- point tables ------------------------------------------------------------------------------------------


def test_tab_separated_table(tmp_path):
    path = tmp_path / "mines.tsv"
    path.write_text("nome\tlatitude\tlongitude\nA\t-6,2512\t-55,7321\nB\t-7.1005\t-56.0410\n")
    good, bad = load_points(path, name_column="nome")
    assert_points(good, THREE_POINTS[:2]) and bad.empty


def test_latin1_and_cp1252_tables(tmp_path):
    text = "nome;latitude;longitude\nSão Félix do Xingu;-6,6447;-51,9950\n"
    for enc in ("latin-1", "cp1252", "utf-8-sig"):
        path = tmp_path / f"mines_{enc}.csv"
        path.write_bytes(text.encode(enc))
        good, _ = load_points(path, name_column="nome")
        assert good["name"].tolist() == ["São Félix do Xingu"], enc
        assert lonlat(good) == [(-51.995, -6.6447)]


def test_delimiter_and_encoding_set_in_the_config(tmp_path):
    path = tmp_path / "mines.txt"
    path.write_bytes("nome|latitude|longitude\nSão João|-6.1|-56.1\n".encode("cp1252"))
    good, _ = load_point_sources([{"path": str(path), "delimiter": "|", "encoding": "cp1252", "name_column": "nome"}])
    assert good["name"].tolist() == ["São João"]
    with pytest.raises(InputDataError, match="not utf-8.*encoding"):
        load_points(path, encoding="utf-8", delimiter="|")


def test_a_one_column_read_says_to_set_the_delimiter(tmp_path):
    path = tmp_path / "mines.csv"
    path.write_text("lat:lon\n-6:-56\n")
    with pytest.raises(InputDataError, match=r"column\(s\) .* not found.*one column only: set `delimiter`"):
        load_points(path)


@pytest.mark.parametrize(
    "text, delimiter",
    [
        ("id;nome;latitude;longitude\n1;A;-6,25;-55,73\n", ";"),
        ('id,nome,latitude,longitude\n1,"A; B",-6.25,-55.73\n', ","),
        ("id\tnome\tlat\n1\tA, B\t-6,2\n", "\t"),
        ('id,lat,lon\n1,"06°15\'04.3""S","55°43\'55.6""W"\n', ","),
    ],
)
def test_sniff_delimiter(text, delimiter):
    assert sniff_delimiter(text) == delimiter


@pytest.mark.parametrize(
    "text, axis, degrees",
    [
        ("06°15'04.3\"S", "lat", -(6 + 15 / 60 + 4.3 / 3600)),
        ("7º06'01.8\" S", "lat", -(7 + 6 / 60 + 1.8 / 3600)),
        ("55°43′55.6″W", "lon", -(55 + 43 / 60 + 55.6 / 3600)),
        ("6° 15' 4.3\" S", "lat", -(6 + 15 / 60 + 4.3 / 3600)),
        ("S 6 15 4.3", "lat", -(6 + 15 / 60 + 4.3 / 3600)),
        ("55°43'55,6\"O", "lon", -(55 + 43 / 60 + 55.6 / 3600)),  # Portuguese O (oeste), decimal comma
        ("-6°15.07'", "lat", -(6 + 15.07 / 60)),
        ("6.2512°S", "lat", -6.2512),
        ("2°30'N", "lat", 2.5),
        ("-6°15'04.3\"S", "lat", -(6 + 15 / 60 + 4.3 / 3600)),  # a redundant minus
        ("6°15'4.3''S", "lat", -(6 + 15 / 60 + 4.3 / 3600)),  # two primes for the seconds
        ("−6.25", "lat", -6.25),  # Unicode minus
        ("-6,2512", "lat", -6.2512),
        ("1,234.5", "lon", 1234.5),
    ],
)
def test_parse_coordinate(text, axis, degrees):
    assert parse_coordinate(text, axis) == pytest.approx(degrees, abs=1e-9)


@pytest.mark.parametrize(
    "text, axis, reason",
    [
        ("12°61'00\"S", "lat", "minutes >= 60"),
        ("12°30'75\"S", "lat", "seconds >= 60"),
        ("55°43'55.6\"W", "lat", "hemisphere 'W' belongs to a longitude"),
        ("-6°15'N", "lat", "a minus sign with a north/east hemisphere letter"),
        ("95°00'S", "lat", "more than 90 degrees"),
        ("6.5°15'S", "lat", "decimal degrees followed by minutes"),
        ("abc", "lat", "not a number nor degrees-minutes-seconds"),
        ("S6°N", "lat", "two hemisphere letters"),
        ("6°15'X", "lat", "unknown hemisphere letter"),
        ("", "lat", "missing"),
    ],
)
def test_parse_coordinate_reasons(text, axis, reason):
    with pytest.raises(CoordinateError, match=reason):
        parse_coordinate(text, axis)


def test_table_column_errors_name_the_config_key(tmp_path):
    path = tmp_path / "mines.csv"
    path.write_text("nome,lat,lon\nA,-6.2,-55.7\n")
    with pytest.raises(InputDataError, match=r"mines\.csv \[config positives\.points\[0\]\]: column\(s\)"):
        load_point_sources([{"path": str(path)}], key="positives.points")
    with pytest.raises(InputDataError, match=r"\[config positives\.points\[0\]\]: name_column 'name' not found"):
        load_point_sources(
            [{"path": str(path), "lon_column": "lon", "lat_column": "lat", "name_column": "name"}],
            key="positives.points",
        )


def test_swapped_columns_inside_the_lonlat_range_are_named(tmp_path):
    # Over Brazil both axes are negative: swapped columns stay in lon/lat range, only the bounds see them.
    path = tmp_path / "mines.csv"
    path.write_text("nome,latitude,longitude\nA,-55.7321,-6.2512\nB,-6.2512,-55.7321\nC,10.5,-20.0\n")
    good, bad = load_points(path, name_column="nome", bounds=BRAZIL)
    assert good["name"].tolist() == ["B"] and bad["row"].tolist() == [2, 4]
    assert bad["reason"].iloc[0] == (
        "outside the study bounds [-75.0, -35.0, -35.0, 5.0] (lon=-6.2512, "
        "lat=-55.7321); looks swapped: check lon_column / lat_column"
    )
    assert "swapped" not in bad["reason"].iloc[1]  # the other way round is outside too: not a swap
    geo = tmp_path / "mines.geojson"  # a point file written latitude first
    geo.write_text(json.dumps(feature_collection([feature(shapely.Point(-6.25, -55.73), {})])))
    with pytest.raises(InputDataError, match="looks swapped: does the file hold latitude before longitude"):
        load_points(geo, bounds=BRAZIL)


def test_rows_with_another_number_of_fields_say_so(tmp_path):
    path = tmp_path / "mines.csv"
    path.write_text(
        "nome;latitude;longitude\n"
        "A;-6,2512;-55,7321\n"
        "B,-7.1005,-56.0410\n"  # written with commas: one field for ';'
        "\n"  # a blank line is skipped; later rows keep their line numbers
        "C;-5,9988;-57,22;\n"  # a trailing delimiter is harmless
        "D;-6;25;-55;73\n"  # decimal commas in a ;-file written with ;: 5 fields
        "E;;-55,7\n"
    )  # a truly empty latitude stays "missing"
    good, bad = load_points(path, name_column="nome", bounds=BRAZIL)
    assert good["name"].tolist() == ["A", "C"] and good["point_id"].tolist() == ["mines-00002", "mines-00005"]
    assert bad["row"].tolist() == [3, 6, 7]
    assert (
        bad["reason"].iloc[0]
        == "the row has 1 field for 3 columns (mixed delimiter? the file is read as ';'-separated)"
    )
    assert bad["reason"].iloc[1].startswith("the row has 5 fields for 3 columns (mixed delimiter?")
    assert bad["reason"].iloc[2] == "latitude: missing"
    # Only the fields up to the coordinates are needed: a short row holding them is fine.
    path.write_text("latitude,longitude,nome\n-6.1,-56.1\n")
    good, bad = load_points(path, name_column="nome")
    assert lonlat(good) == [(-56.1, -6.1)] and good["name"].tolist() == [""] and bad.empty


@pytest.mark.parametrize(
    "name, content",
    [
        ("mines.xlsx", b"PK\x03\x04" + b"\0" * 40),
        ("mines.xls", b"\xd0\xcf\x11\xe0" + b"\0" * 40),
        ("mines.ods", b"PK\x03\x04" + b"\0" * 40),
        ("mines.csv", b"PK\x03\x04\x14\x00\x06\x00" + b"\0" * 40),  # a workbook renamed .csv
    ],
)
def test_a_spreadsheet_workbook_is_refused_with_export_as_csv(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputDataError, match=r"\[config positives\.points\[0\]\]: a spreadsheet.*export it as CSV"):
        load_point_sources([{"path": str(path)}], key="positives.points")


def test_rejected_rows_keep_the_precise_reason(tmp_path):
    path = tmp_path / "mines.csv"
    path.write_text("nome;latitude;longitude\nA;-6,2512;-55,7321\nB;12°61'00\"S;56°W\nC;;-55\n", encoding="utf-8")
    good, bad = load_points(path, name_column="nome")
    assert good["name"].tolist() == ["A"]
    assert bad["row"].tolist() == [3, 4]
    assert bad["reason"].iloc[0] == "latitude '12°61'00\"S': minutes >= 60"
    assert bad["reason"].iloc[1] == "latitude: missing"


# ---- configuration ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "areas.geojson",
        {"path": "areas.gpkg", "layer": "ti"},
        {"path": "a.shp"},
        None,
        {"path": "a.shp", "encoding": "cp1252"},
        {"path": "a.gpkg", "encoding": None},
    ],
)
def test_schema_takes_a_path_or_path_and_layer(value):
    from snakemake.utils import validate

    config = {
        "negatives": {"protected_areas": value, "urban_mask": value},
        "encroachment": {"areas": value},
        "regions": {"r": {"path": "r.gpkg", "layer": "ti"}, "s": {"path": "s.shp", "encoding": "cp1252"}},
        "positives": {"points": [{"path": "p.csv", "delimiter": ";", "encoding": "cp1252"}]},
    }
    validate(config, str(SCHEMA))
    assert config["negatives"]["protected_areas"] == value and source(value)[0] == (
        None if value is None else value if isinstance(value, str) else value["path"]
    )
    assert source_encoding(value) == (value.get("encoding") if isinstance(value, dict) else None)
    assert config["positives"]["points"][0]["layer"] is None
    assert config["regions"]["r"]["encoding"] is None and config["regions"]["s"]["encoding"] == "cp1252"


def test_schema_refuses_a_layer_without_a_path():
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    with pytest.raises(WorkflowError, match="path"):
        validate({"encroachment": {"areas": {"layer": "ti"}}}, str(SCHEMA))


# ---- output: RFC 7946 winding ------------------------------------------------------------------------------


def test_written_detections_wind_exteriors_ccw_and_holes_cw(tmp_path):
    cw_with_ccw_hole = Polygon(
        [(-55.6, -6.6), (-55.6, -6.4), (-55.4, -6.4), (-55.4, -6.6)],
        [[(-55.55, -6.55), (-55.45, -6.55), (-55.45, -6.45), (-55.55, -6.45)]],
    )
    assert not cw_with_ccw_hole.exterior.is_ccw and cw_with_ccw_hole.interiors[0].is_ccw
    multi = MultiPolygon([cw_with_ccw_hole, box(-55.3, -6.6, -55.1, -6.4, ccw=False)])
    feats = [{"geometry": g, "properties": {"score": 0.9}} for g in (cw_with_ccw_hole, multi)]
    path = write_geojson(tmp_path / "results/detections/r.geojson", to_geojson(feats), {"region": "r"})
    doc = json.loads(path.read_text())
    polygons = [doc["features"][0]["geometry"]["coordinates"], *doc["features"][1]["geometry"]["coordinates"]]
    assert len(polygons) == 3
    for rings in polygons:
        assert LinearRing(rings[0]).is_ccw
        assert all(not LinearRing(hole).is_ccw for hole in rings[1:])
    assert len(polygons[0]) == 2  # the hole is still there


def test_geodesic_area_does_not_cancel_mixed_windings():
    parts = MultiPolygon([box(-55.6, -6.6, -55.4, -6.4, ccw=True), box(-55.3, -6.6, -55.1, -6.4, ccw=False)])
    assert geodesic_area_ha(parts) == pytest.approx(2 * SQUARE_HA, abs=0.5)


# ---- review: a quote opened and never closed -------------------------------------------------------------------

UNCLOSED = (
    "nome,latitude,longitude\n"
    "A,-6.1,-55.1\n"
    "B,-6.2,-55.2\n"
    "C,-6.3,-55.3\n"
    '"Mina 5,-6.5,-55.5\n'  # line 5: the quote is never closed
    "F,-6.6,-55.6\n"
    "\n"
    "G,-6.7,-55.7\n"
    "H,-6.8,-55.8\n"
    "I,-6.9,-55.9\n"
)


@pytest.mark.parametrize(
    "text, bad_line, kept",
    [
        (UNCLOSED, 5, ["A", "B", "C", "F", "G", "H", "I"]),  # the file ends inside the quote
        # closed by the next row's opening quote, followed by more text: read as one row of lines 5-9 before
        (UNCLOSED.replace("I,-6.9", '"I",-6.9'), 5, ["A", "B", "C", "F", "G", "H", "I"]),
        (  # only the last row's quote is left open
            UNCLOSED.replace('"Mina 5', "Mina 5").replace("I,-6.9,-55.9\n", 'I,"-6.9,-55.9\n'),
            10,
            ["A", "B", "C", "Mina 5", "F", "G", "H"],
        ),
    ],
)
def test_an_unclosed_quote_rejects_its_row_and_keeps_the_rows_after_it(tmp_path, caplog, text, bad_line, kept):
    from garimpo.geo.tables import read_table, unclosed_quote

    path = tmp_path / "mines.csv"
    path.write_text(text)
    with caplog.at_level(logging.WARNING, logger="garimpo"):
        table = read_table(path, key="positives.points[0]")
    assert table.cells.index.tolist() == [2, 3, 4, 5, 6, 8, 9, 10]  # file lines, the blank line 7 skipped
    assert table.problems.to_dict() == {
        line: unclosed_quote(line) if line == bad_line else "" for line in table.problems.index
    }
    assert unclosed_quote(5) == 'unclosed quote (") starting on line 5'
    good = table.cells[table.problems == ""]
    assert good["nome"].tolist() == kept and (table.widths[table.problems == ""] == 3).all()
    assert (
        f"line {bad_line} opens a quoted cell" in caplog.text
        and "mines.csv [config positives.points[0]]" in caplog.text
    )
    # Through load_points: the good rows after it are points, and the file's rows are counted right.
    with caplog.at_level(logging.WARNING, logger="garimpo"):
        points, rejected = load_points(path, name_column="nome", bounds=BRAZIL)
    assert len(points) == 7 and rejected["row"].tolist() == [bad_line]
    assert "1 of 8 rows rejected" in caplog.text
    assert rejected["reason"].tolist() == [unclosed_quote(bad_line)]


def test_a_quoted_cell_that_really_spans_lines_is_still_one_cell(tmp_path):
    from garimpo.geo.tables import read_table

    path = tmp_path / "mines.csv"
    path.write_text('nome;latitude;longitude;nota\nA;-6,1;-55,1;"duas\nlinhas; aqui"\nB;-6,2;-55,2;x\n')
    table = read_table(path)
    assert table.cells.index.tolist() == [2, 4] and table.cells["nota"].tolist() == ["duas\nlinhas; aqui", "x"]
    assert (table.problems == "").all() and table.widths.tolist() == [4, 4]
    # A stray quote inside a cell of one line (seconds of arc) is read as it always was.
    path.write_text("nome;latitude;longitude\nA;12°30'00\"S;56°W\n")
    assert read_table(path).cells["latitude"].tolist() == ["12°30'00\"S"]
