"""The offline web map: self-contained HTML, escaping, the Web Mercator true-colour image, and the page itself in a
real headless Chromium (Debian's package) through Playwright: it loads without errors or network requests and
draws every feature."""

import io
import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from browser import OpenMap, not_blank
from PIL import Image
from pyproj import Transformer

from garimpo.errors import InputDataError
from garimpo.publish.webmap import basemap_png, leaflet_assets, render_webmap, write_webmap

HOSTILE = "</script><script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\">Terra & 'Yanomami'"
UTM = "EPSG:32721"
LON0, LAT0 = -56.5, -6.0  # Tapajós


def _png(rgb, size=(160, 80)) -> bytes:
    """A before/after-like thumbnail: forest green on the left, ``rgb`` on the right."""
    img = Image.new("RGB", size, rgb)
    img.paste((34, 80, 40), (0, 0, size[0] // 2, size[1]))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _square(lon, lat, d=0.004, **props):
    ring = [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d], [lon - d, lat - d]]
    return {"type": "Feature", "properties": props, "geometry": {"type": "Polygon", "coordinates": [ring]}}


def _detection(i, lon, lat, period, **extra):
    props = dict(id=f"det-{i}", score=0.8734 + i / 1000, area_ha=12.3456, status="active", period=period)
    props.update(first_detected="2023", last_detected=period, **extra)
    return _square(lon, lat, **props)


def _layers():
    d23 = [_detection(i, LON0 + 0.02 * i, LAT0, "2023") for i in range(3)]
    d24 = [_detection(i, LON0 + 0.02 * i, LAT0 + 0.03, "2024", protected_area="Munduruku") for i in range(4)]
    change = [
        _square(LON0, LAT0 - 0.03, id="chg-1", kind="new_site", score=0.9, area_ha=3.0, period="2024"),
        _square(LON0 + 0.03, LAT0 - 0.03, id="chg-2", kind="expansion", score=0.7, area_ha=1.5, period="2024"),
    ]
    footprint = [_square(LON0 + 0.03, LAT0 + 0.015, d=0.04, id="fp")]
    areas = [
        _square(LON0 + 0.03, LAT0, d=0.06, name=HOSTILE),
        _square(LON0 + 0.03, LAT0, d=0.5, name="Big park"),  # far bigger than the region: clipped
        _square(LON0 + 20, LAT0, name="Far away"),  # outside the region: left out
    ]
    region = [_square(LON0 + 0.03, LAT0, d=0.07, name="test region")]
    return [
        {"name": "Detections 2023", "kind": "detections", "features": d23, "visible": False},
        {"name": "Detections 2024", "kind": "detections", "features": d24, "visible": True},
        {"name": "New mining 2024", "kind": "change", "features": change, "visible": True},
        {"name": "Footprint", "kind": "footprint", "features": footprint, "visible": False},
        {"name": "Protected areas", "kind": "areas", "features": areas, "visible": True},
        {"name": "Region", "kind": "region", "features": region, "visible": True},
    ]


def _evidence(tmp_path):
    path = tmp_path / "det-1.png"
    path.write_bytes(_png((200, 30, 30)))
    return {"det-0": _png((30, 200, 30)), "det-1": path, "chg-1": _png((30, 30, 200))}


def _composite(path, bands=("B02", "B03", "B04"), size=200, res=10.0, origin=None, bright=None, nan_rows=0):
    """A float32 reflectance GeoTIFF in UTM 21S around (LON0, LAT0); ``bright``: (row, col) of a 3x3 red block."""
    if origin is None:
        x, y = Transformer.from_crs("EPSG:4326", UTM, always_xy=True).transform(LON0, LAT0)
        origin = (math.floor(x) - size * res / 2, math.floor(y) + size * res / 2)
    values = {"B02": 0.02, "B03": 0.04, "B04": 0.03}
    arr = np.stack([np.full((size, size), values[b], np.float32) for b in bands])
    if bright is not None:
        r, c = bright
        arr[bands.index("B04"), r - 1 : r + 2, c - 1 : c + 2] = 0.25
    if nan_rows:
        arr[:, -nan_rows:, :] = np.nan
    transform = Affine(res, 0, origin[0], 0, -res, origin[1])
    profile = dict(driver="GTiff", width=size, height=size, count=len(bands), dtype="float32", crs=UTM)
    with rasterio.open(path, "w", transform=transform, **profile) as dst:
        dst.write(arr)
        for i, b in enumerate(bands, 1):
            dst.set_band_description(i, b)
    return transform


def _data_block(page):
    return json.loads(re.search(r'<script type="application/json" id="garimpo-data">(.*?)</script>', page, re.S)[1])


# ---- the HTML, without a browser ----


def test_page_is_self_contained(tmp_path):
    page, counts = render_webmap("Tapajós", _layers(), _evidence(tmp_path), attribution="Copernicus Sentinel data")
    assert counts == {
        "Detections 2023": 3,
        "Detections 2024": 4,
        "New mining 2024": 2,
        "Footprint": 1,
        "Protected areas": 2,
        "Region": 1,
    }
    version, leaflet_js, leaflet_css = leaflet_assets()
    assert version == "1.9.3"
    assert leaflet_js in page and leaflet_css in page and "url(data:image/png;base64," in leaflet_css
    assert "url(images/" not in page and "sourceMappingURL" not in page
    # Leaflet's own default attribution link (replaced at run time) is the only URL in an attribute.
    ours = page.replace(leaflet_js, "")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", ours, re.I)
    assert not re.search(r"url\(\s*[\"']?\s*(https?:)?//", page, re.I)
    assert not re.search(r"<script[^>]*\ssrc=|<link\b|@import|<iframe", page, re.I)
    assert "Leaflet 1.9.3" in page and "BSD 2-Clause License" in page  # the licence, in an HTML comment
    data = _data_block(page)
    assert set(data["evidence"]) == {"det-0", "det-1", "chg-1"}
    assert all(v["uri"].startswith("data:image/png;base64,") for v in data["evidence"].values())
    assert data["evidence"]["det-1"]["width"] == 160 and data["evidence"]["det-1"]["height"] == 80
    # coordinates rounded to 6 decimals
    coords = re.findall(r"-?\d+\.\d+", json.dumps([f["geometry"] for lyr in data["layers"] for f in lyr["features"]]))
    assert coords and max(len(c.split(".")[1]) for c in coords) <= 6


def test_hostile_text_is_escaped(tmp_path):
    layers = _layers()
    layers[0]["name"] = "<b>2023</b>"
    page, _ = render_webmap(HOSTILE, layers, attribution=HOSTILE)
    assert HOSTILE not in page and "</script><script>window.pwned" not in page
    assert page.count("</script>") == 3  # Leaflet, the data block and the page's script
    data = _data_block(page)
    assert data["title"] == HOSTILE and data["attribution"] == HOSTILE
    assert data["layers"][4]["features"][0]["properties"]["name"] == HOSTILE
    assert "<title>&lt;/script&gt;" in page


def test_nan_and_numpy_properties_are_valid_json(tmp_path):
    feat = _square(LON0, LAT0, id=np.int64(7), score=float("nan"), area_ha=np.float32(2.5), when=np.datetime64("2024"))
    page, counts = render_webmap("t", [{"name": "d", "kind": "detections", "features": [feat], "visible": True}])
    props = _data_block(page)["layers"][0]["features"][0]["properties"]
    assert props == {"id": 7, "score": None, "area_ha": 2.5, "when": "2024-01-01"}
    assert counts == {"d": 1}


def test_empty_layers_and_no_layers(tmp_path):
    counts = write_webmap(tmp_path / "empty.html", "empty", [])
    assert counts == {}
    layers = [{"name": "Detections 2024", "kind": "detections", "features": [], "visible": True}]
    layers.append({"name": "Areas", "kind": "areas", "features": [{"type": "Feature", "geometry": None}]})
    assert write_webmap(tmp_path / "m.html", "m", layers) == {"Detections 2024": 0, "Areas": 0}
    assert (tmp_path / "m.html").read_text().startswith("<!DOCTYPE html>")


def test_areas_clipped_to_the_region_and_simplified():
    wiggly = [[LON0 + 0.3 * t, LAT0 + 0.3 * math.sin(t * 40) * 1e-5] for t in np.linspace(-1, 1, 400)]
    area = {"type": "Feature", "properties": {"name": "park"}, "geometry": _square(LON0, LAT0, d=2)["geometry"]}
    line = {
        "type": "Feature",
        "properties": {"name": "river"},
        "geometry": {"type": "LineString", "coordinates": wiggly},
    }
    region = _square(LON0, LAT0, d=0.05)
    page, counts = render_webmap(
        "t",
        [
            {"name": "Areas", "kind": "areas", "features": [area, line]},
            {"name": "Region", "kind": "region", "features": [region]},
        ],
        simplify_m=50,
    )
    geoms = [f["geometry"] for f in _data_block(page)["layers"][0]["features"]]
    xs = [c[0] for c in geoms[0]["coordinates"][0]]
    assert max(xs) - min(xs) == pytest.approx(0.1 * 1.2, abs=1e-6)  # the region's bbox + 10% of its side each way
    assert len(geoms[1]["coordinates"]) < 20  # 1 m wiggles are gone at 50 m
    assert counts == {"Areas": 2, "Region": 1}


def test_bad_layers_are_refused(tmp_path):
    with pytest.raises(ValueError, match="kind 'dots'"):
        render_webmap("t", [{"name": "a", "kind": "dots", "features": []}])
    with pytest.raises(ValueError, match="two layers are called"):
        render_webmap("t", [{"name": "a", "kind": "region", "features": []}] * 2)
    with pytest.raises(InputDataError, match="'a' has a feature whose geometry is not GeoJSON"):
        render_webmap("t", [{"name": "a", "kind": "areas", "features": [{"geometry": {"type": "Blob"}}]}])
    with pytest.raises(InputDataError, match="det-0"):
        render_webmap("t", _layers(), {"det-0": b"GIF89a..."})
    with pytest.raises(InputDataError, match="cannot be read"):
        render_webmap("t", _layers(), {"det-0": tmp_path / "missing.png"})


def test_basemap_is_web_mercator(tmp_path):
    """A bright pixel at a known lon/lat lands on the Web Mercator pixel pyproj computes for it."""
    path = tmp_path / "composite.tif"
    transform = _composite(path, bands=("B04", "B02", "B03"), bright=(60, 140), nan_rows=20)
    to_ll = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    bright_lon, bright_lat = to_ll.transform(*(transform @ (140.5, 60.5)))
    west, north = to_ll.transform(*(transform @ (10, 10)))
    east, south = to_ll.transform(*(transform @ (190, 190)))
    png, (w, s, e, n) = basemap_png([path], (west, south, east, north), max_px=2048)
    img = np.asarray(Image.open(io.BytesIO(png)))
    assert img.shape[2] == 4 and img.dtype == np.uint8
    height, width = img.shape[:2]
    assert max(height, width) <= 2048
    assert (w, n) == (west, north) and e >= east and s <= south
    # No finer than the composite's 10 m: Web Mercator metres are ground metres / cos(lat).
    to_m = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    (x0, x1), (y0, y1) = to_m.transform([w, e], [s, n])
    res = (x1 - x0) / width
    assert res == pytest.approx((y1 - y0) / height)
    assert res >= 10 / math.cos(math.radians(LAT0)) - 1e-6
    bx, by = to_m.transform(bright_lon, bright_lat)
    col, row = (bx - x0) / res, (y1 - by) / res
    red = img[..., 0].astype(float) - img[..., 1]
    peak = np.unravel_index(np.argmax(red), red.shape)
    assert abs(peak[0] + 0.5 - row) <= 1.0 and abs(peak[1] + 0.5 - col) <= 1.0
    assert img[peak][0] > 150  # 0.25 reflectance is full brightness (bilinear smooths the 30 m block a little)
    dark = img[height // 4, width // 4]
    assert tuple(dark) == (31, 41, 20, 255)  # B04 0.03, B03 0.04, B02 0.02 of 0.25 (bands found by name)
    assert (img[-3:, :, 3] == 0).all() and (img[: height // 2, :, 3] == 255).all()  # NaN rows are transparent


def test_basemap_mosaics_and_decimates(tmp_path):
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    ta = _composite(a, size=1000)
    _composite(b, size=1000, origin=(ta.c + 10_000, ta.f))  # the next 10 km east
    to_ll = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    west, north = to_ll.transform(ta.c, ta.f)
    east, south = to_ll.transform(ta.c + 20_000, ta.f - 10_000)
    png, _ = basemap_png([a, b], (west, south, east, north), max_px=200)
    img = np.asarray(Image.open(io.BytesIO(png)))
    assert max(img.shape[:2]) <= 200
    assert (img[5:-5, 5:-5, 3] == 255).all()  # no seam between the two composites
    with pytest.raises(InputDataError, match="covers"):
        basemap_png([a], (west + 10, south, east + 10, north))
    with pytest.raises(ValueError, match="west, south, east, north"):
        basemap_png([a], (east, south, west, north))


def test_basemap_names_missing_bands(tmp_path):
    path = tmp_path / "nir.tif"
    transform = _composite(path, bands=("B02", "B03", "B04"))
    with rasterio.open(path, "r+") as dst:
        dst.set_band_description(3, "B08")
    to_ll = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    west, north = to_ll.transform(transform.c, transform.f)
    east, south = to_ll.transform(transform.c + 2000, transform.f - 2000)
    with pytest.raises(InputDataError, match="B04"):
        basemap_png([path], (west, south, east, north))


# ---- the page in a real browser ----


def test_page_in_chromium(browser, tmp_path):
    layers = _layers()
    comp = tmp_path / "composite.tif"
    t = _composite(comp, size=300, bright=(150, 150))
    to_ll = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    west, north = to_ll.transform(t.c, t.f)
    east, south = to_ll.transform(t.c + 3000, t.f - 3000)
    basemap = basemap_png([comp], (west, south, east, north))
    path = tmp_path / "map.html"
    title = "Tapajós test region: detections 2023–2024"
    counts = write_webmap(path, title, layers, _evidence(tmp_path), basemap, attribution="Copernicus & AMW")
    expected = {lyr["name"]: len(lyr["features"]) for lyr in layers}
    expected["Protected areas"] = 2  # the third is far outside the region
    assert counts == expected
    m = OpenMap(browser, path)
    try:
        state = m.state()
        assert state["errors"] == [] and m.problems == []
        assert state["layers"] == expected
        visible = sum(counts[lyr["name"]] for lyr in layers if lyr["visible"])
        assert m.svg_paths() == visible
        assert (
            m.page.evaluate("document.querySelectorAll('img.leaflet-image-layer[src^=\"data:image/png\"]').length") == 1
        )
        assert m.page.evaluate("window.pwned") is None
        assert m.page.evaluate("document.querySelectorAll('img[src=\"x\"], script[src]').length") == 0
        assert m.page.evaluate("document.title") == title
        assert "Copernicus & AMW" in m.page.inner_text(".leaflet-control-attribution")
        assert "Leaflet 1.9.3 (BSD-2-Clause)" in m.page.inner_text(".leaflet-control-attribution")
        assert m.page.evaluate('document.querySelectorAll(\'a[href^="http"], [src^="http"]\').length') == 0
        # the hostile territory's name is shown as text in its tooltip
        tip = m.page.evaluate(
            "(() => { const l = garimpoMap.overlays['Protected areas'].getLayers()[0]; l.openTooltip();"
            " return l.getTooltip().getElement().textContent; })()"
        )
        assert tip == HOSTILE

        # a detection of 2024 (det-1): its popup has the id, the score to 2 decimals and the evidence image
        m.click_lonlat(LON0 + 0.02, LAT0 + 0.03)
        popup = m.page.wait_for_selector(".leaflet-popup-content", timeout=5_000)
        # Leaflet fades the popup in and pans the map to show it whole: wait for both before the screenshot.
        m.page.wait_for_function(
            "(() => { const p = document.querySelector('.leaflet-popup'); const r = p.getBoundingClientRect();"
            " return getComputedStyle(p).opacity === '1' && r.top >= 0 && !garimpoMap.map._panAnim?._inProgress; })()",
            timeout=5_000,
        )
        text = popup.inner_text()
        assert "det-1" in text and "0.87" in text and "12.35" in text and "Munduruku" in text
        src = m.page.get_attribute(".leaflet-popup-content img", "src")
        assert src.startswith("data:image/png;base64,")
        assert m.page.evaluate("document.querySelector('.leaflet-popup-content img').naturalWidth") == 160

        shot = tmp_path / "map.png"
        m.page.screenshot(path=str(shot))
        not_blank(shot)
        if os.environ.get("GARIMPO_WEBMAP_SCREENSHOT"):
            target = Path(os.environ["GARIMPO_WEBMAP_SCREENSHOT"])
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, target)
        assert m.state()["errors"] == [] and m.problems == []
    finally:
        m.close()


def test_empty_page_in_chromium(browser, tmp_path):
    path = tmp_path / "empty.html"
    write_webmap(path, HOSTILE, [{"name": "Detections 2024", "kind": "detections", "features": []}])
    m = OpenMap(browser, path)
    try:
        assert m.state() == {"layers": {"Detections 2024": 0}, "errors": []}
        assert m.page.evaluate("document.title") == HOSTILE and m.page.inner_text(".garimpo-title") == HOSTILE
        assert m.page.evaluate("window.pwned") is None
        assert m.problems == [] and m.svg_paths() == 0
    finally:
        m.close()


@pytest.mark.shared
def test_real_mining_and_territories_in_chromium(browser, shared_dir, tmp_path):
    """Amazon Mining Watch's 2024 mining polygons in the Munduruku territory's bbox, with the real territories."""
    import shapely
    from shapely.geometry import shape

    amw = shared_dir / "data" / "amw"
    territories = json.loads((amw / "boundaries" / "yanomami_and_munduruku.geojson").read_text())["features"]
    mining = json.loads((amw / "outputs" / "mining_202400_simplified.geojson").read_text())["features"]
    munduruku = next(f for f in territories if f["properties"]["name"] == "Munduruku")
    box = shapely.box(*shape(munduruku["geometry"]).bounds)
    dets = []
    for i, f in enumerate(mining):
        if shape(f["geometry"]).intersects(box):
            props = {"id": f"amw-{i}", "area_ha": f["properties"]["Mined area (ha)"], "period": "2024"}
            dets.append({"type": "Feature", "properties": props, "geometry": f["geometry"]})
    assert len(dets) > 50
    region = {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(box)}
    layers = [
        {"name": "Mining 2024 (Amazon Mining Watch)", "kind": "detections", "features": dets, "visible": True},
        {"name": "Indigenous territories", "kind": "areas", "features": territories, "visible": True},
        {"name": "Region", "kind": "region", "features": [region], "visible": True},
    ]
    path = tmp_path / "munduruku.html"
    counts = write_webmap(path, "Munduruku 2024", layers, attribution="Amazon Mining Watch (CC BY 4.0)")
    assert counts == {"Mining 2024 (Amazon Mining Watch)": len(dets), "Indigenous territories": 1, "Region": 1}
    assert path.stat().st_size < 2_000_000  # the territory is simplified to 50 m
    m = OpenMap(browser, path)
    try:
        state = m.state()
        assert state["errors"] == [] and m.problems == []
        assert state["layers"] == counts
        assert m.svg_paths() == sum(counts.values())
        shot = tmp_path / "munduruku.png"
        m.page.screenshot(path=str(shot))
        not_blank(shot, min_std=5.0, min_colours=10)
    finally:
        m.close()
