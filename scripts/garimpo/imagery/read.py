"""Pixels of STAC items on the caller's grid: one band, one asset, or one item's reflectance and clear mask.

Every asset is read through a warped view onto the target grid, so only the needed windows of each COG are
fetched and a window straddling two granules or UTM zones comes out seamless. Remote reads are signed right
before each attempt (:func:`garimpo.imagery.stac.signer_for`), retried on transient errors and re-signed
once on 403 (:mod:`garimpo.imagery.retry`); no signed href reaches an error or a log line
(:mod:`garimpo.imagery.redact`). Which asset to read and how its DN become reflectance is decided
beforehand, from the item's metadata (:func:`garimpo.imagery.assets.plan_item`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlsplit

import numpy as np
import pystac
import rasterio
from affine import Affine
from pyproj import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from garimpo.errors import ImageryAccessError, MissingAssetError
from garimpo.geo.raster import CoarseGrid, Grid
from garimpo.imagery.assets import ItemPlan, find_asset, plan_item
from garimpo.imagery.redact import install_raster_redaction, redact, redact_url
from garimpo.imagery.retry import classify_read_error
from garimpo.imagery.stac import Source, signer_for
from garimpo.schema import default

log = logging.getLogger(__name__)


def read_band(
    item: pystac.Item,
    source: Source,
    band: str,
    grid: Grid,
    resampling: Resampling,
    key: str | None = None,
    nodata: float | None = None,
) -> tuple[np.ndarray, float]:
    """One band (or the mask band) of ``item`` on ``grid``: signed right before reading, retried, re-signed
    once on 403.

    ``key``: the asset (default: :func:`find_asset` with ``source.sensor``). ``nodata``: the DN meaning no
    data when the metadata says so (default: the file's, else 0). Returns (DN array (H, W) in the file's
    dtype, nodata DN). Errors and log lines name the unsigned href only, never a signed one.
    Raises :class:`MissingAssetError` when ``item`` has no such asset (or its href cannot be resolved),
    :class:`ImageryAccessError` when the read fails for good or after ``source.retry.attempts`` attempts;
    an error that is not I/O propagates as it is.
    """
    href = _href(item, band, key, source)
    safe = redact_url(href)
    install_raster_redaction()
    signer = signer_for(source)
    policy = source.retry
    resigned = False
    failures = 0
    while True:
        signed = signer(href) if signer else href
        try:
            return read_asset(signed, grid, resampling, fresh=resigned or failures > 0, nodata=nodata)
        except Exception as err:  # noqa: BLE001 - classified below
            verdict = classify_read_error(err)
            message = redact(f"{type(err).__name__}: {err}", signed)
            if verdict == "raise":
                if signed != href and signed in f"{err!s}{err!r}":  # not ours to classify, nor to leak
                    raise ImageryAccessError(
                        f"reading {safe} (item {item.id}, band {band}) failed: {message}"
                    ) from None
                raise
            if verdict == "forbidden" and signer is not None and not resigned:
                resigned = True  # an expired token: sign again once, no backoff, not counted as an attempt
                log.warning("asset %s refused (%s); signing it again", safe, message[:300])
                if hasattr(signer, "refresh"):
                    signer.refresh()
                continue
            if verdict != "retry":
                raise ImageryAccessError(f"reading {safe} (item {item.id}, band {band}) failed: {message}") from None
            failures += 1
            if failures >= policy.attempts:
                raise ImageryAccessError(
                    f"reading {safe} (item {item.id}, band {band}) failed after "
                    f"{policy.attempts} attempts; last error: {message[:500]}"
                ) from None
            delay = policy.delay(failures)
            log.warning(
                "reading %s failed (attempt %d/%d: %s); retrying in %.2f s",
                safe,
                failures,
                policy.attempts,
                message[:300],
                delay,
            )
            time.sleep(delay)


def read_asset(
    href: str, grid: Grid, resampling: Resampling, fresh: bool = False, nodata: float | None = None
) -> tuple[np.ndarray, float]:
    """Read one single-band asset warped onto ``grid``; only the overlapping windows are fetched.

    ``fresh``: bypass GDAL's /vsicurl/ cache for this URL (it remembers a failed answer,
    so a retry without it would only replay the 503). ``nodata``: the DN that means no data
    (default: the file's, else 0, Sentinel-2's NODATA); those pixels never enter the resampling.
    Returns (DN array (H, W) in the file's dtype, nodata DN); pixels outside the file are nodata.
    Raises what rasterio raises (``RasterioError``, GDAL's ``CPLE_*``, ``OSError``): no retry here.
    """
    remote = urlsplit(href).scheme in ("http", "https")
    options = {}
    if remote:
        options = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_MAX_RETRY": 0}
        if fresh:
            options["CPL_VSIL_CURL_NON_CACHED"] = "/vsicurl/" + redact_url(href)
    env = rasterio.Env(**options)
    with env, rasterio.open(href) as src:
        if nodata is None:
            nodata = src.nodata if src.nodata is not None else 0
        window = aligned_window(src.crs, src.transform, grid)
        if window is not None:  # the grid is one of the file's own: decode only, no warp
            return read_window(src, window, nodata), nodata
        with WarpedVRT(
            src,
            crs=grid.crs,
            transform=grid.transform,
            width=grid.width,
            height=grid.height,
            resampling=resampling,
            src_nodata=nodata,
            nodata=nodata,
        ) as vrt:
            arr = vrt.read(1)
    return arr, nodata


def aligned_window(crs, transform: Affine, grid: Grid, tolerance: float = 1e-6) -> Window | None:
    """The window of a raster (``crs``, north-up ``transform``) that is exactly ``grid``, or None when ``grid`` is
    not on the raster's own pixel grid (another CRS, pixel size or rotation, or pixel edges off by a fraction).

    On its own grid a warp is a copy: nearest and bilinear resampling at the pixels' own centres give the pixel
    values back, so a windowed read gives the same array for a fraction of the cost (no warp). Sentinel-2
    granules put their pixel edges on multiples of 60 m in their UTM zone (MGRS tiling), so every 10 m and 20 m
    grid of the same zone with edges on multiples of its pixel size is one of theirs. ``tolerance``: in pixels.
    The window may reach outside the raster.
    """
    target = grid.transform
    if transform.b or transform.d or target.b or target.d:
        return None
    if not (math.isclose(transform.a, target.a) and math.isclose(transform.e, target.e)):
        return None
    col = (target.c - transform.c) / transform.a
    row = (target.f - transform.f) / transform.e
    if abs(col - round(col)) > tolerance or abs(row - round(row)) > tolerance:
        return None
    if crs is None or CRS.from_user_input(crs) != CRS.from_user_input(grid.crs):
        return None
    return Window(round(col), round(row), grid.width, grid.height)


def read_window(src, window: Window, nodata: float) -> np.ndarray:
    """Band 1 of open raster ``src`` in ``window`` (which may reach outside it: those pixels are ``nodata``),
    in the file's dtype, shape (window height, window width)."""
    out = np.full((int(window.height), int(window.width)), nodata, dtype=src.dtypes[0])
    r0, c0 = max(0, int(window.row_off)), max(0, int(window.col_off))
    r1 = min(src.height, int(window.row_off + window.height))
    c1 = min(src.width, int(window.col_off + window.width))
    if r1 > r0 and c1 > c0:
        inner = Window(c0, r0, c1 - c0, r1 - r0)
        rows = slice(r0 - int(window.row_off), r1 - int(window.row_off))
        cols = slice(c0 - int(window.col_off), c1 - int(window.col_off))
        out[rows, cols] = src.read(1, window=inner)
    return out


def read_item(
    item: pystac.Item,
    source: Source,
    bands: Sequence[str],
    grid: Grid,
    cloud_buffer_m: float = default("imagery.cloud_buffer_m"),
    plan: ItemPlan | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Reflectance (bands, H, W) float32 with NaN where no data, and the clear-pixel mask (H, W) bool, every
    band and the mask on ``grid``.

    Bands are resampled bilinearly, the mask band nearest; clear pixels are those
    ``source.sensor.clear_mask`` calls clear, with cloudy classes grown by ``cloud_buffer_m`` metres, and
    finite in every band. Each band's DN become reflectance by the radiometry its item's metadata implies
    (``plan``, default :func:`plan_item` with ``source.sensor``). Raises :class:`MissingAssetError` when
    ``item`` lacks a band (without a plan), and what :func:`read_band` raises.
    """
    px = read_item_pixels(item, source, bands, (), grid, None, cloud_buffer_m, plan)
    return px.fine, px.fine_clear


@dataclass(frozen=True)
class ItemPixels:
    """One item's pixels on two grids: ``fine`` (bands, H, W) reflectance float32 (NaN: no data) on the target
    grid and ``fine_clear`` (H, W) bool; ``coarse`` (bands, h, w) on the mask's grid and ``coarse_clear``
    (h, w) bool (no bands and the fine grid's shape when there is no mask grid)."""

    fine: np.ndarray
    fine_clear: np.ndarray
    coarse: np.ndarray
    coarse_clear: np.ndarray


def read_item_pixels(
    item: pystac.Item,
    source: Source,
    fine_bands: Sequence[str],
    coarse_bands: Sequence[str],
    fine: Grid,
    coarse: CoarseGrid | None,
    cloud_buffer_m: float = default("imagery.cloud_buffer_m"),
    plan: ItemPlan | None = None,
    pool: Executor | None = None,
) -> ItemPixels:
    """One item's ``fine_bands`` on grid ``fine`` and ``coarse_bands`` and its mask band on ``coarse`` (the
    mask's native pixel, :func:`garimpo.geo.raster.coarse_grid`; None: everything on ``fine``, then
    ``coarse_bands`` must be empty), read concurrently on ``pool`` (GDAL decodes without the GIL).

    Bands are resampled bilinearly, the mask nearest (on a grid of the file's own, a windowed read:
    :func:`aligned_window`). The clear mask is made on ``coarse`` (``fine`` without one): ``source.sensor.clear_mask``
    with the cloudy classes grown by ``cloud_buffer_m`` metres, and finite in every band there; on ``fine``
    each pixel takes the mask of the coarse pixel holding it (nearest: exact, as their edges are aligned) and
    must be finite in the fine bands too. Growing a 20 m mask at 20 m instead of its 10 m copy at 10 m is a
    quarter of the work for the same ground. Raises :class:`MissingAssetError` when ``item`` lacks a band
    (without a plan), ``ValueError`` for coarse bands without a coarse grid, and what :func:`read_band` raises.
    """
    if coarse_bands and coarse is None:
        raise ValueError("coarse bands need a coarse grid")
    sensor = source.sensor
    plan = plan or plan_item(item, (*fine_bands, *coarse_bands), sensor)
    mask_grid = coarse.grid if coarse is not None else fine

    def band(name: str, grid: Grid) -> np.ndarray:
        rad = plan.radiometry[name]
        dn, nodata = read_band(item, source, name, grid, Resampling.bilinear, plan.assets[name], rad.nodata)
        return rad.reflectance(dn, nodata)

    def clear() -> np.ndarray:
        mask, _ = read_band(item, source, sensor.mask_band, mask_grid, Resampling.nearest, plan.mask, plan.mask_nodata)
        return sensor.clear_mask(mask, int(round(cloud_buffer_m / mask_grid.resolution)))

    jobs: list[Callable[[], np.ndarray]] = [partial(band, b, fine) for b in fine_bands]
    jobs += [partial(band, b, mask_grid) for b in coarse_bands]
    jobs.append(clear)
    done = list(pool.map(lambda job: job(), jobs)) if pool is not None else [job() for job in jobs]
    fine_refl = _stack(done[: len(fine_bands)], fine)
    coarse_refl = _stack(done[len(fine_bands) : -1], mask_grid)
    coarse_clear = done[-1] & np.all(np.isfinite(coarse_refl), axis=0)
    fine_clear = coarse.to_fine(coarse_clear) if coarse is not None else coarse_clear
    fine_clear = fine_clear & np.all(np.isfinite(fine_refl), axis=0)
    return ItemPixels(fine_refl, fine_clear, coarse_refl, coarse_clear)


def _stack(arrays: list[np.ndarray], grid: Grid) -> np.ndarray:
    return np.stack(arrays) if arrays else np.empty((0, grid.height, grid.width), dtype=np.float32)


def _href(item: pystac.Item, band: str, key: str | None, source: Source) -> str:
    key = key or find_asset(item, band, source.sensor)
    if key is None or key not in item.assets:
        raise MissingAssetError(f"item {item.id} has no asset for band {band} (assets: {sorted(item.assets)})")
    href = item.assets[key].get_absolute_href()
    if href is None:  # pystac's answer for a relative href whose item has no self link
        raise MissingAssetError(
            f"item {item.id}, asset {key}: its href {item.assets[key].href!r} is relative and the item has no self "
            "link to resolve it against; give the catalog's items absolute hrefs or self links"
        )
    return href
