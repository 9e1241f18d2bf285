"""The STAC API path (pystac-client) against a local test server: pages, cloud filter,
retries, search cache, late signing that never leaks the token, end-to-end composite."""

import logging
from datetime import UTC, datetime

import numpy as np
import pytest
from conftest import EPSG, ORIGIN, make_item
from stac_server import StacServer

from garimpo.errors import ImageryAccessError
from garimpo.geo.raster import Grid
from garimpo.imagery.composite import fetch_composite
from garimpo.imagery.provenance import provenance
from garimpo.imagery.redact import redact
from garimpo.imagery.retry import RetryPolicy
from garimpo.imagery.stac import ImageryRequest, Source, search_items

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, timeout=5.0)
REFL = {"B02": 0.02, "B03": 0.045, "B04": 0.025, "B08": 0.30, "B11": 0.14, "B12": 0.06}
PERIOD = ("2023-01-01", "2023-12-31")
SECRET = "SECRET"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Six 2023 scenes (cloud 2..60 %) and one 2021 scene, all over the same 32x32 px area."""
    root = tmp_path_factory.mktemp("api_assets")
    clouds = [2.0, 5.0, 9.0, 12.0, 35.0, 60.0]
    items = []
    for i, cloud in enumerate(clouds):
        dn = {b: np.full((32, 32), v * 10000 + 1000, dtype=np.uint16) for b, v in REFL.items()}
        scl = np.full((16, 16), 4, dtype=np.uint8)
        items.append(make_item(root, f"S2_2023_{i}", datetime(2023, 3 + i, 10, tzinfo=UTC), "05.09", cloud, dn, scl))
    dn = {b: np.full((32, 32), v * 10000, dtype=np.uint16) for b, v in REFL.items()}
    items.append(
        make_item(
            root, "S2_2021", datetime(2021, 8, 1, tzinfo=UTC), "03.01", 1.0, dn, np.full((16, 16), 4, dtype=np.uint8)
        )
    )
    return root, items


def grid():
    from affine import Affine

    return Grid(EPSG, Affine(10, 0, ORIGIN[0] + 40, 0, -10, ORIGIN[1] - 40), 16, 16)


def api_source(url, tmp_path=None, **kw):
    return Source("planetary_computer", url, retry=FAST, cache_dir=str(tmp_path / "cache") if tmp_path else None, **kw)


def test_search_follows_pages_and_filters_cloud(scenes):
    _, items = scenes
    with StacServer(items, page_size=2) as srv:
        got = search_items(api_source(srv.url, signer=lambda h: h), grid().bbox_lonlat(), PERIOD, 20)
        searches = srv.count_path("/search")
    assert [it.id for it in got] == ["S2_2023_0", "S2_2023_1", "S2_2023_2", "S2_2023_3"]  # sorted by cloud
    assert searches >= 2  # 4 matches, 2 per page


def test_get_search_pagination_and_query_server_side(scenes):
    import pystac_client

    _, items = scenes
    with StacServer(items, page_size=2) as srv:
        client = pystac_client.Client.open(srv.url)
        search = client.search(
            collections=["sentinel-2-l2a"],
            bbox=grid().bbox_lonlat(),
            method="GET",
            datetime="2023-01-01T00:00:00Z/2023-12-31T23:59:59Z",
            query={"eo:cloud_cover": {"lt": 10}},
        )
        ids = sorted(it.id for it in search.items())
    assert ids == ["S2_2023_0", "S2_2023_1", "S2_2023_2"]


def test_client_side_recheck_drops_what_the_server_let_through(scenes, monkeypatch):
    _, items = scenes
    with StacServer(items, page_size=3) as srv:
        monkeypatch.setattr(srv, "search", lambda params, method, f=srv.search: f({**params, "query": {}}, method))
        got = search_items(api_source(srv.url, signer=lambda h: h), grid().bbox_lonlat(), PERIOD, 20)
    assert all(it.properties["eo:cloud_cover"] < 20 for it in got) and len(got) == 4


def test_flaky_server_is_retried(scenes, caplog):
    _, items = scenes
    with StacServer(items, page_size=10, fail_first=2) as srv:
        got = search_items(api_source(srv.url), grid().bbox_lonlat(), PERIOD, 20)
        assert srv.count_path("/") >= 3  # two 503s, then the successful landing page + search
        fails = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(got) == 4
    assert len(fails) == 2


def test_always_failing_server_gives_a_clear_error(scenes):
    _, items = scenes
    with StacServer(items, always_fail=True) as srv:
        with pytest.raises(ImageryAccessError) as exc:
            search_items(api_source(srv.url), grid().bbox_lonlat(), PERIOD, 20)
        assert srv.count == FAST.attempts
    msg = str(exc.value)
    assert srv.url in msg and f"after {FAST.attempts} attempts" in msg


def test_client_error_is_not_retried(scenes):
    _, items = scenes
    with StacServer(items, always_fail=True, fail_status=400) as srv:
        with pytest.raises(ImageryAccessError, match="STAC search at"):
            search_items(api_source(srv.url), grid().bbox_lonlat(), PERIOD, 20)
        assert srv.count == 1


def test_search_cache_second_search_makes_no_request(scenes, tmp_path):
    _, items = scenes
    with StacServer(items, page_size=2) as srv:
        src = api_source(srv.url, tmp_path)
        first = search_items(src, grid().bbox_lonlat(), PERIOD, 20)
        n = srv.count
        second = search_items(src, grid().bbox_lonlat(), PERIOD, 20)
        assert srv.count == n  # zero requests the second time
        search_items(src, grid().bbox_lonlat(), PERIOD, 10)  # another key: queries again
        assert srv.count > n
    assert [i.id for i in second] == [i.id for i in first]
    assert [i.assets["B04"].href for i in second] == [i.assets["B04"].href for i in first]
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 2 and all(f.suffix == ".json" for f in files)  # no temp file left


def _signed_setup(scenes, tmp_path, **server_kw):
    root, items = scenes
    srv = StacServer(items, page_size=10, asset_root=root, require_sig=SECRET, **server_kw)
    calls = []

    def signer(href):
        calls.append(href)
        return f"{href}?sig={SECRET}"

    return srv, calls, api_source(srv.url, tmp_path, signer=signer)


def _assert_no_secret(caplog, *texts):
    for rec in caplog.records:
        assert SECRET not in rec.getMessage()
    for t in texts:
        assert SECRET not in str(t)


def test_fetch_composite_end_to_end_signed_late(scenes, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    srv, calls, src = _signed_setup(scenes, tmp_path)
    req = ImageryRequest(("B04", "B08"), PERIOD, 20.0, max_scenes=2)
    with srv:
        image, used = fetch_composite(src, req, grid())
    assert [it.id for it in used] == ["S2_2023_0", "S2_2023_1"]
    np.testing.assert_allclose(image[0], REFL["B04"], atol=1e-3)  # offset 04.00 removed
    np.testing.assert_allclose(image[1], REFL["B08"], atol=1e-3)
    assert len(calls) == 2 * 3 and all("?" not in c for c in calls)  # signed per read, from unsigned hrefs
    assert srv.count_path("/assets/") > 0
    cached = "".join(p.read_text() for p in (tmp_path / "cache").iterdir())
    _assert_no_secret(caplog, cached, provenance(used), [it.to_dict() for it in used])


def test_expired_token_is_resigned_once(scenes, tmp_path, caplog):
    srv, calls, src = _signed_setup(scenes, tmp_path, asset_forbid_first=1)
    req = ImageryRequest(("B04",), PERIOD, 20.0, max_scenes=1)
    with srv:
        image, used = fetch_composite(src, req, grid())
    assert np.isfinite(image).all()
    assert len(calls) == 2 + 1  # B04 signed twice (403 then re-sign), SCL once
    assert any("signing it again" in r.getMessage() for r in caplog.records)
    _assert_no_secret(caplog)


def test_asset_read_retries_then_fails_without_leaking(scenes, tmp_path, caplog):
    root, items = scenes
    srv, calls, src = _signed_setup(scenes, tmp_path, asset_fail_first=10**6)
    req = ImageryRequest(("B04",), PERIOD, 20.0, max_scenes=1)
    with srv:
        with pytest.raises(ImageryAccessError) as exc:
            fetch_composite(src, req, grid())
    msg = str(exc.value)
    assert f"after {FAST.attempts} attempts" in msg and f"{srv.url}/assets/" in msg and "B04.tif" in msg
    # B04 tried exactly that often (the SCL read runs beside it on another thread and fails on its own)
    assert sum("B04" in c for c in calls) == FAST.attempts
    _assert_no_secret(caplog, msg, repr(exc.value), exc.value.__cause__, exc.value.__context__)


def test_asset_read_recovers_from_transient_503(scenes, tmp_path):
    srv, calls, src = _signed_setup(scenes, tmp_path, asset_fail_first=1)
    req = ImageryRequest(("B04",), PERIOD, 20.0, max_scenes=1)
    with srv:
        image, _ = fetch_composite(src, req, grid())
    np.testing.assert_allclose(image[0], REFL["B04"], atol=1e-3)


def test_redact_strips_query_strings():
    text = "failed /vsicurl/https://x.blob.core.windows.net/a/B04.tif?st=1&se=2&sig=abc%3D failed: 403"
    assert redact(text) == "failed /vsicurl/https://x.blob.core.windows.net/a/B04.tif failed: 403"


def test_window_read_fetches_a_small_fraction_of_a_granule(tmp_path):
    """A 5 km window of a full-size 10 m granule (10980 x 10980 px COG) over HTTP reads only its tiles."""
    from affine import Affine
    from conftest import write_band_cog
    from rasterio.enums import Resampling

    from garimpo.geo.raster import point_grid
    from garimpo.imagery.read import read_asset

    n = 10980
    rng = np.random.default_rng(0)
    # Noise so deflate cannot shrink the file to nothing: the fraction below is honest.
    band = rng.integers(500, 3000, (n, n), dtype=np.uint16)
    path = tmp_path / "assets" / "B04.tif"
    write_band_cog(path, band, Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]))
    del band
    size = path.stat().st_size
    lon, lat = grid().bbox_lonlat()[:2]  # a point inside the granule, near its north-west corner
    window = point_grid(lon + 0.2, lat - 0.2, 5000)
    with StacServer([], asset_root=tmp_path / "assets") as srv:
        arr, nodata = read_asset(f"{srv.url}/assets/B04.tif", window, Resampling.bilinear)
        sent = srv.asset_bytes_sent
    assert arr.shape == (500, 500) and (arr != nodata).all()
    fraction = sent / size
    print(f"5 km window: {sent / 1e6:.2f} MB of a {size / 1e6:.1f} MB granule ({100 * fraction:.2f} %)")
    assert fraction < 0.02
