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
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

import numpy as np
import pystac
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from garimpo.errors import ImageryAccessError, MissingAssetError
from garimpo.geo.raster import Grid
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


def read_item(
    item: pystac.Item,
    source: Source,
    bands: Sequence[str],
    grid: Grid,
    cloud_buffer_m: float = default("imagery.cloud_buffer_m"),
    plan: ItemPlan | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Reflectance (bands, H, W) float32 with NaN where no data, and the clear-pixel mask (H, W) bool.

    Bands are resampled bilinearly, the mask band nearest; clear pixels are those
    ``source.sensor.clear_mask`` calls clear, with cloudy classes grown by ``cloud_buffer_m`` metres, and
    finite in every band. Each band's DN become reflectance by the radiometry its item's metadata implies
    (``plan``, default :func:`plan_item` with ``source.sensor``). Raises :class:`MissingAssetError` when
    ``item`` lacks a band (without a plan), and what :func:`read_band` raises.
    """
    sensor = source.sensor
    plan = plan or plan_item(item, bands, sensor)
    out = np.full((len(bands), grid.height, grid.width), np.nan, dtype=np.float32)
    for i, band in enumerate(bands):
        rad = plan.radiometry[band]
        dn, nodata = read_band(item, source, band, grid, Resampling.bilinear, plan.assets[band], rad.nodata)
        out[i] = rad.reflectance(dn, nodata)
    mask, _ = read_band(item, source, sensor.mask_band, grid, Resampling.nearest, plan.mask, plan.mask_nodata)
    clear = sensor.clear_mask(mask, int(round(cloud_buffer_m / grid.resolution)))
    return out, clear & np.all(np.isfinite(out), axis=0)


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
