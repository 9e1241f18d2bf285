"""Hostile text: credentials in every written form of a URL, damaged input files, misspelt config keys.

Redaction (garimpo.imagery.redact): each hostile string must come out without its secret, in messages and in
tracebacks printed by a logging handler. Input files (garimpo.geo.vector, garimpo.training.points): each damaged or
empty file is an InputDataError naming the file, the config key and what to do. Config: an unknown key
in any section is refused, named with its section.
"""

import copy
import io
import itertools
import json
import logging
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pyogrio.raw
import pytest
import shapely
import yaml
from conftest import EPSG, ORIGIN, make_item
from rasterio.enums import Resampling
from shapely.geometry import box, mapping
from snakemake.utils import update_config

from garimpo.config import config_error
from garimpo.errors import ImageryAccessError, InputDataError
from garimpo.geo.vector import read_polygon_features, read_polygons, read_region
from garimpo.imagery.read import read_band
from garimpo.imagery.redact import RedactFilter, install_redaction, redact, redact_url
from garimpo.imagery.retry import RetryPolicy
from garimpo.imagery.stac import Source
from garimpo.training.points import load_point_sources

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "config" / "schema.yaml"
SECRET = "S3cr3tT0k3n"

# ---- redaction: every textual form of a signed URL ------------------------------------------------------

SAS = (
    "sv=2021-06-08&st=2024-01-01T00%3A00%3A00Z&se=2024-01-02T00%3A00%3A00Z&sr=c&sp=rl&skoid=a1&sktid=b2"
    f"&skt=2024-01-01&ske=2024-01-02&sks=b&skv=2021-06-08&sig={SECRET}%2Bq%3D"
)
AWS = (
    f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA{SECRET}%2F20240101%2Fus-east-1%2Fs3%2Faws4_request"
    f"&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-Security-Token={SECRET}&X-Amz-Signature={SECRET}"
)
# Where the secret sits in a URL: the query (Planetary Computer SAS, AWS presigned, generic names), the
# userinfo, the fragment.
PLACES = [
    ("{scheme}://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/21/M/B04.tif?" + SAS),
    ("{scheme}://bucket.s3.amazonaws.com/tiles/B04.tif?" + AWS),
    ("{scheme}://example.org/data/B04.tif?token=" + SECRET),
    ("{scheme}://example.org/data/B04.tif?access_token=" + SECRET + "&format=tif"),
    ("{scheme}://example.org/data/B04.tif?api_key=" + SECRET),
    ("{scheme}://example.org/data/B04.tif?subscription-key=" + SECRET),
    ("{scheme}://user:" + SECRET + "@example.org/data/B04.tif"),
    ("{scheme}://" + SECRET + "@example.org/data/B04.tif"),
    ("{scheme}://example.org/data/B04.tif#access_token=" + SECRET),
]
SCHEMES = ["https", "HTTPS", "HtTpS", "http", "s3", "az", "gs", "ftp"]
# How a URL is written: as is, percent-encoded once or twice, in JSON with escaped slashes, in a repr.
FORMS = {
    "plain": lambda u: u,
    "percent": lambda u: quote(u, safe=""),
    "percent-twice": lambda u: quote(quote(u, safe=""), safe=""),
    "json-slashes": lambda u: u.replace("/", "\\/"),
    "repr-json": lambda u: repr(u.replace("/", "\\/")),
}
# Where it stands in the text: GDAL paths and option syntax, error messages, JSON documents, tracebacks.
CONTEXTS = {
    "bare": "{url}",
    "vsicurl": "/vsicurl/{url}",
    "vsicurl-options": "/vsicurl?use_head=no&url={url}&max_retry=3",
    "rasterio": "RasterioIOError: '/vsicurl/{url}' not recognized as a supported file format.",
    "sentence": "reading failed (see {url}).",
    "json": '{{"href": "{url}", "type": "image/tiff"}}',
    "traceback": 'Traceback (most recent call last):\n  File "x.py", line 3, in <module>\nOSError: {url}: 403',
}


@pytest.mark.parametrize("place", PLACES)
def test_no_secret_survives_redaction(place):
    """Every scheme spelling x written form x context of one signed URL: the secret is gone, the file named."""
    leaks = []
    for scheme, encode, wrap in itertools.product(SCHEMES, FORMS.values(), CONTEXTS.values()):
        text = wrap.format(url=encode(place.format(scheme=scheme)))
        out = redact(text)
        if SECRET in out or "B04.tif" not in out or redact(out) != out:  # redacting twice changes nothing
            leaks.append((text, out))
    assert not leaks, f"{len(leaks)} of {len(SCHEMES) * len(FORMS) * len(CONTEXTS)}: {leaks[:3]}"


@pytest.mark.parametrize(
    "text",
    [
        f"GET /sentinel2-l2/B04.tif?st=2024&se=2024&sp=r&sig={SECRET} HTTP/1.1",  # urllib3's debug line: no scheme
        f"send: b'GET /a.tif?X-Amz-Signature={SECRET}&X-Amz-Credential={SECRET} HTTP/1.1'",
        f"token={SECRET} expires soon",
        f"params {{'sig': '{SECRET}', 'se': '2024'}}",
        f'{{"token": "{SECRET}", "msft:expiry": "2024-01-02T00:00:00Z"}}',
        f"Authorization: Bearer {SECRET}",
        f"headers={{'Authorization': 'SharedKey acct:{SECRET}'}}",
        f"Ocp-Apim-Subscription-Key: {SECRET}",
        f"/vsicurl?url=https%3A%2F%2Fh%2Fa.tif&header.Authorization=Bearer%20{SECRET}",
        f"sas token sv=2021&sig%3D{SECRET}",
    ],
)
def test_secrets_outside_a_url_are_masked(text):
    assert SECRET not in redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "results/regions/amazon/cells.json: 12 cells of 20 km",
        "/data/B04.tif [config regions.x]: field 'nome' not found; the file has ['name']. Fix `field` in the config.",
        "STAC search at https://planetarycomputer.microsoft.com/api/stac/v1: 12 items",
        "basic checks passed; 3 of 4 keys used",
        "C:\\Users\\ana\\regions\\amazon.gpkg (layer 'ti')",
        "100% done, 50%-quantile 0.3, NDVI < 0.5",
    ],
)
def test_ordinary_text_is_left_alone(text):
    assert redact(text) == text


@pytest.mark.parametrize(
    "unit",
    ["a", "a-", "key ", "%3F", "https:", "'sig'"],
    ids=["letters", "dashes", "words", "encoded", "schemes", "quoted"],
)
def test_redaction_stays_linear_on_long_text(unit):
    """Redaction time grows linearly with the text (no regex backtracking blow-up on a long traceback).

    Compares the time of a text 4x longer with the shorter one's (the best of three each), so the check does
    not depend on how fast or loaded the machine is: linear gives about 4, quadratic 16.
    """
    import time

    def best_of_three(text: str) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            redact(text)
            times.append(time.perf_counter() - start)
        return min(times)

    reps = 40_000 // len(unit)
    short, long = best_of_three(unit * reps), best_of_three(unit * 4 * reps)
    assert long / max(short, 1e-4) < 9.0, (short, long)


def test_redact_url():
    assert redact_url("HTTPS://u:p@Host.example/a/B04.tif?sig=x#frag") == "HTTPS://Host.example/a/B04.tif"
    assert redact_url("/data/B04.tif?sig=x") == "/data/B04.tif"
    assert redact_url("https%3A%2F%2Fh%2Fa.tif%3Fsig%3Dx") == "https%3A%2F%2Fh%2Fa.tif"
    assert redact_url("https://h/a.tif") == "https://h/a.tif"


def test_a_signed_href_given_as_a_secret_is_redacted_in_every_encoding():
    signed = f"https://h.blob.core.windows.net/c/B04.tif?se=1&sig={SECRET}"
    text = f"failed {signed}; GDAL tried /vsicurl?url={quote(signed, safe='')}"
    out = redact(text, signed)
    assert SECRET not in out and "h.blob.core.windows.net/c/B04.tif" in out


# ---- redaction: log records and tracebacks ------------------------------------------------------------------


def _signed(i=0):
    return f"HTTPS://sentinel2l2a01.blob.core.windows.net/c/B0{i}.tif?st=2024&sp=r&sig={SECRET}%3D"


def _open_asset(href):
    raise OSError(
        f"'/vsicurl/{href}' not recognized as a supported file format; also tried /vsicurl?url={quote(href, safe='')}"
    )


def test_a_handler_with_the_filter_prints_no_secret_in_message_args_traceback_or_stack(tmp_path):
    out = io.StringIO()
    stream = logging.StreamHandler(out)
    stream.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    plain = logging.FileHandler(tmp_path / "rule.log")  # after the filtering handler: sees the redacted record
    install_redaction([stream])
    logger = logging.getLogger("garimpo.test_hostile.child")  # a child: a logger filter on 'garimpo' misses it
    logger.addHandler(stream)
    logger.addHandler(plain)
    logger.propagate = False
    try:
        try:
            _open_asset(_signed(4))
        except OSError as err:
            logger.exception("reading %s failed: %s", _signed(4), err, stack_info=True)
        logger.warning("asset %(href)s refused", {"href": _signed(8)})
        logger.error("a bad format %d", _signed(2))  # args that do not fit: shown by logging, so redacted too
    finally:
        logger.removeHandler(stream)
        logger.removeHandler(plain)
        plain.close()
    printed = out.getvalue()
    assert "Traceback (most recent call last)" in printed and "Stack (most recent call last)" in printed
    assert "in _open_asset" in printed and "sentinel2l2a01.blob.core.windows.net/c/B04.tif" in printed
    assert "B08.tif" in printed and "B02.tif" in printed
    for text in (printed, (tmp_path / "rule.log").read_text()):
        assert SECRET not in text


def test_the_filter_formats_the_traceback_once_and_drops_exc_info():
    try:
        _open_asset(_signed())
    except OSError:
        import sys

        record = logging.LogRecord(
            "rasterio._env", logging.ERROR, __file__, 1, "GDAL: %s", (_signed(),), sys.exc_info()
        )
    assert RedactFilter().filter(record)
    assert record.exc_info is None and record.args == ()
    assert "OSError" in record.exc_text and SECRET not in record.exc_text and SECRET not in record.msg
    assert SECRET not in logging.Formatter().format(record)


def _item(tmp_path):
    dn = {"B04": np.full((16, 16), 1500, dtype=np.uint16)}
    return make_item(
        tmp_path, "S2_1", datetime(2023, 3, 1, tzinfo=UTC), "05.09", 1.0, dn, np.full((8, 8), 4, dtype=np.uint8)
    )


@pytest.mark.parametrize(
    "sign",
    [
        lambda href: f"{href}?st=2024&sig={SECRET}",  # a local path with a token: GDAL names it in its error
        lambda href: "/vsicurl?url=" + quote(f"http://127.0.0.1:9/c/B04.tif?st=2024&sig={SECRET}", safe=""),
    ],
)
def test_rasterio_errors_and_gdal_log_lines_name_no_secret(tmp_path, caplog, sign):
    """A read that GDAL refuses: the ImageryAccessError and every log line (DEBUG included) are redacted."""
    from affine import Affine

    from garimpo.geo.raster import Grid

    caplog.set_level(logging.DEBUG)
    item = _item(tmp_path)
    source = Source("local", str(tmp_path / "catalog.json"), retry=RetryPolicy(attempts=1, base_delay=0.0), signer=sign)
    grid = Grid(EPSG, Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]), 8, 8)
    with pytest.raises(ImageryAccessError) as info:
        read_band(item, source, "B04", grid, Resampling.nearest, key="B04")
    assert SECRET not in str(info.value) and "B04.tif" in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is not None  # suppressed, not printed
    printed = caplog.text + "".join(logging.Formatter().format(r) for r in caplog.records)
    assert SECRET not in printed


# ---- damaged input files --------------------------------------------------------------------------------

SQUARE = box(-55.6, -6.6, -55.4, -6.4)


def _fc(*features):
    return json.dumps({"type": "FeatureCollection", "features": list(features)})


def _feature(name, geom=SQUARE):
    return {"type": "Feature", "properties": {"name": name}, "geometry": mapping(geom) if geom else None}


def _write_shapefile(path, names=("a",)):
    wkb = np.array([shapely.to_wkb(SQUARE)] * len(names), dtype=object)
    pyogrio.raw.write(
        path,
        wkb,
        [np.array(names, dtype=object)],
        fields=["name"],
        geometry_type="Polygon",
        crs="EPSG:4326",
        driver="ESRI Shapefile",
    )
    return path


def _damaged(tmp_path, kind) -> Path:
    """A file of one damaged kind; returns its path."""
    good = _fc(*[_feature(n) for n in ("Munduruku", "Yanomami", "Kayapó")])
    if kind == "zero-byte":
        (p := tmp_path / "region.geojson").write_bytes(b"")
    elif kind == "html":
        (p := tmp_path / "region.geojson").write_text(
            "<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head><body></body></html>"
        )
    elif kind == "cut-geojson":
        (p := tmp_path / "region.geojson").write_text(good[: len(good) // 2])
    elif kind == "no-shx":
        p = _write_shapefile(tmp_path / "region.shp")
        p.with_suffix(".shx").unlink()
    elif kind == "zip-without-layer":
        with zipfile.ZipFile(p := tmp_path / "region.zip", "w") as zf:
            zf.writestr("LEIAME.txt", "dados")
            zf.writestr("region.dbf", b"")
    elif kind == "zip-without-shx":
        shp = _write_shapefile(tmp_path / "region.shp")
        with zipfile.ZipFile(p := tmp_path / "region.zip", "w") as zf:
            for ext in (".shp", ".dbf", ".prj"):
                zf.write(shp.with_suffix(ext), "region" + ext)
    elif kind == "not-a-zip":
        (p := tmp_path / "region.zip").write_bytes(b"PK\x03\x04 cut short")
    return p


DAMAGED = {  # kind -> what the message says is wrong
    "zero-byte": "the file is empty (0 bytes",
    "html": "is an HTML page, not vector data",
    "cut-geojson": "it is not valid JSON",
    "no-shx": "region.shx is missing beside it",
    "zip-without-layer": "the .zip holds no vector layer (it holds ['LEIAME.txt', 'region.dbf'])",
    "zip-without-shx": "the .zip holds region.shp without region.shx",
    "not-a-zip": "not a readable .zip archive",
}


@pytest.mark.parametrize("kind", DAMAGED)
@pytest.mark.parametrize(
    "reader, key",
    [
        (lambda p, k: read_region(p, key=k), "regions.amazon"),
        (lambda p, k: read_polygons(p, key=k), "negatives.protected_areas"),
        (lambda p, k: read_polygon_features(p, key=k), "encroachment.areas"),
        (lambda p, k: load_point_sources([{"path": str(p)}], None, k), "positives.points"),
    ],
)
def test_a_damaged_file_names_itself_its_key_and_what_to_do(tmp_path, kind, reader, key):
    path = _damaged(tmp_path, kind)
    with pytest.raises(InputDataError) as info:
        reader(path, key)
    msg = str(info.value)
    assert str(path) in msg and key in msg and DAMAGED[kind] in msg, msg
    assert "re-export" in msg or "replace it" in msg, msg
    assert "JSONDecodeError" not in msg and "SHAPE_RESTORE_SHX" not in msg and "<DRIVER>" not in msg


def test_a_cut_geojson_says_where_and_that_it_was_cut_short(tmp_path):
    path = _damaged(tmp_path, "cut-geojson")
    with pytest.raises(
        InputDataError,
        match=r"not valid JSON: .* \(line 1, column \d+, at the very end of the "
        r"file: it was probably cut short\)",
    ):
        read_region(path, key="regions.amazon")


@pytest.mark.parametrize("kind", ["zero-byte", "html", "cut-geojson"])
def test_a_damaged_download_is_to_be_deleted_and_fetched_again(tmp_path, kind, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "resources" / "downloads").mkdir(parents=True)
    src = _damaged(tmp_path, kind)
    path = Path("resources/downloads/amazon_basin.geojson")
    src.rename(path)
    with pytest.raises(InputDataError) as info:
        read_region(path, key="regions.amazon")
    msg = str(info.value)
    assert "[config regions.amazon]" in msg
    assert f"It is a downloaded input: delete {path} and run the workflow again" in msg, msg


@pytest.mark.parametrize(
    "content, says",
    [
        (_fc(), "the layer holds no features (an empty FeatureCollection?)"),
        (_fc(_feature("a", None), _feature("b", None)), "none of the 2 feature(s) has a geometry (all null)"),
    ],
)
def test_an_empty_or_geometryless_layer_is_refused_for_every_polygon_input(tmp_path, content, says):
    path = tmp_path / "areas.geojson"
    path.write_text(content)
    for call in (
        lambda: read_region(path, key="regions.amazon"),
        lambda: read_polygons(path, key="negatives.protected_areas"),  # was: sampled all study_bounds
        lambda: read_polygons(path, key="negatives.urban_mask"),
        lambda: read_polygon_features(path, key="encroachment.areas"),
    ):
        with pytest.raises(InputDataError) as info:
            call()
        assert says in str(info.value) and str(path) in str(info.value)
        assert "Point the config key at the file you meant" in str(info.value)


def test_an_empty_point_file_is_named(tmp_path):
    path = tmp_path / "mines.geojson"
    path.write_text(_fc())
    with pytest.raises(
        InputDataError,
        match=r"mines.geojson \[config positives.points\[0\]\]: the file holds no "
        r"points",
    ):
        load_point_sources([{"path": str(path)}], None, "positives.points")


def test_a_selection_that_matches_nothing_lists_the_values_there_are(tmp_path):
    path = tmp_path / "territories.geojson"
    path.write_text(_fc(*[_feature(n) for n in ("Munduruku", "Yanomami", "Kayapó")]))
    with pytest.raises(InputDataError) as info:
        read_region(path, "name", "Mundurucu", key="regions.munduruku")
    msg = str(info.value)
    assert "[config regions.munduruku]" in msg and "no feature with name == 'Mundurucu' among 3" in msg
    assert "name has ['Munduruku', 'Yanomami', 'Kayapó']" in msg and "Did you mean 'Munduruku'?" in msg
    assert "Fix `value` (or `field`) in the config" in msg


def test_a_selection_of_features_without_geometry_says_so(tmp_path):
    path = tmp_path / "territories.geojson"
    path.write_text(_fc(_feature("Munduruku", None), _feature("Yanomami")))
    with pytest.raises(InputDataError, match=r"none of the 1 feature\(s\) with name == 'Munduruku' has a geometry"):
        read_region(path, "name", "Munduruku", key="regions.munduruku")


def test_a_shapefile_without_its_dbf_reads_shapes_but_refuses_a_selection(tmp_path, caplog):
    path = _write_shapefile(tmp_path / "region.shp", ("a", "b"))
    path.with_suffix(".dbf").unlink()
    with caplog.at_level(logging.WARNING):
        assert read_region(path, key="regions.x").area > 0
    assert "region.dbf is missing" in caplog.text
    with pytest.raises(
        InputDataError,
        match=r"field 'name' not found; the file has no fields at all: its \.dbf is "
        r"missing",
    ):
        read_region(path, "name", "a", key="regions.x")


def test_a_damaged_file_deep_in_the_reader_is_still_an_input_data_error(tmp_path, monkeypatch):
    """Whatever GDAL, GEOS or PROJ raise past the reading itself comes out named, not bare."""
    import garimpo.geo.vector as vector

    path = tmp_path / "region.geojson"
    path.write_text(_fc(_feature("a")))

    def broken_wkb(wkb):
        raise shapely.errors.GEOSException("ParseException: Unexpected EOF parsing WKB")

    monkeypatch.setattr(vector.shapely, "from_wkb", broken_wkb)
    with pytest.raises(
        InputDataError,
        match=r"region.geojson.*\[config regions.x\]: cannot be read as a vector "
        r"file: GEOSException: ParseException",
    ):
        read_region(path, key="regions.x")


# ---- misspelt config keys ---------------------------------------------------------------------------------


def _config():
    config = {}
    update_config(config, yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    return config


@pytest.mark.parametrize(
    "section, typo, meant",
    [
        ("classifier.lr_scheduler", "patiense", "patience"),
        ("classifier.threshold", "methd", "method"),
        ("proposer.spectral", "bsi_mn", "bsi_min"),
        ("proposer.segformer", "hubid", "hub_id"),
        ("demo_world", "sed", "seed"),
        ("publishing", "atribution", "attribution"),
    ],
)
def test_a_misspelt_key_is_refused_naming_it_and_its_section(section, typo, meant):
    config = copy.deepcopy(_config())
    node = config
    for part in section.split("."):
        node = node.setdefault(part, {})
    node[typo] = 1
    msg = config_error(config, SCHEMA)
    assert msg.startswith(
        f"config {section}: Additional properties are not allowed ('{typo}' was unexpected); "
        f"the keys allowed under {section} are "
    ), msg
    assert f"(did you mean '{meant}'?)" in msg


def test_every_object_of_the_schema_refuses_unknown_keys():
    """Except regions (its own section), every mapping with named keys says which others it takes."""
    schema = yaml.safe_load(SCHEMA.read_text())
    open_ = []

    def walk(node, path):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node and not path.endswith("/properties"):
                open_.append(path)
            for key, value in node.items():
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    walk(schema, "")
    assert [p for p in open_ if not p.startswith("/properties/regions/")] == []


# ---- redaction: names and values spaced apart ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text, masked",
    [
        (f"sig = {SECRET}", "sig = ***"),
        (f"sig: {SECRET}", "sig: ***"),
        (f"sig:{SECRET}", "sig:***"),
        (f"GET /a.tif?se=2024&sig\t={SECRET}", "GET /a.tif?se=***&sig\t=***"),
        (f'{{"sig" : "{SECRET}"}}', '{"sig" : "***"}'),
        (f"{{'sig' = '{SECRET}'}}", "{'sig' = '***'}"),
        (f'token = "{SECRET}"', 'token = "***"'),
        (f"password:\t{SECRET} (from the environment)", "password:\t*** (from the environment)"),
        (f"X-Amz-Signature = {SECRET}\nX-Amz-Date = 20240101", "X-Amz-Signature = ***\nX-Amz-Date = ***"),
        (f"sas sv=2021 &  sig  :  {SECRET}", "sas sv=*** &  sig  :  ***"),
        (f"Authorization: Bearer {SECRET}", "Authorization: Bearer ***"),  # the scheme word stays
    ],
)
def test_a_secret_name_spaced_from_its_value_is_masked(text, masked):
    """Settings files, reprs and log lines put blanks around '=' and ':' (``sig = X``, ``sig: X``)."""
    assert redact(text) == masked
    assert redact(masked) == masked


@pytest.mark.parametrize(
    "text",
    [
        "brightness: 3, contrast = 2, st. 5",
        "results/regions/amazon/cells.json: 12 cells; keys: region, cells",
        "sig =" + " " * 17 + "x",  # past the bounded gap: not a name and its value
    ],
)
def test_words_ending_like_a_secret_name_keep_their_values(text):
    assert redact(text) == text


@pytest.mark.parametrize(
    "text",
    ["sig" + " \t" * 100_000, "sig = " * 40_000, "token :" * 40_000, "'sig' " * 40_000 + "=", "a key " * 40_000],
    ids=["blanks", "names-equals", "names-colons", "quoted-names", "words"],
)
def test_spaced_redaction_stays_linear_on_long_text(text):
    import time

    start = time.perf_counter()
    redact(text)
    assert time.perf_counter() - start < 5.0


@pytest.mark.parametrize(
    "text",
    [
        "https://h/x.tif?sig\t=SECRET2&sv=2022",
        "reading https://h/x.tif?sig = SECRET3 failed",
        "https://h/x?a=1&sig: SECRET4",
        'https://h/x.tif {"sig" : "SECRET5"}',
    ],
)
def test_a_spaced_secret_inside_a_url_is_masked(text):
    """A URL ends at whitespace: the pair is masked before the URL is cut, or its value is left bare."""
    out = redact(text)
    assert "SECRET" not in out and redact(out) == out
