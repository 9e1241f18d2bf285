"""GeoTIFF I/O and target grids: the georeferenced edge of the package.

Readers return arrays plus CRS and transform; everything in between works on
plain arrays. Writers are atomic (temporary file, then rename) so a killed job
never leaves a half-written tile that looks finished.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from pyproj import CRS, Transformer

from .atomic import atomic_path
from .errors import InputDataError


@dataclass(frozen=True)
class Grid:
    """A target pixel grid: every source is warped onto one of these."""

    crs: str
    transform: Affine
    width: int
    height: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        left, top = self.transform.c, self.transform.f
        right = left + self.transform.a * self.width
        bottom = top + self.transform.e * self.height
        return (left, bottom, right, top)

    @property
    def resolution(self) -> float:
        return abs(self.transform.a)

    def bbox_lonlat(self) -> tuple[float, float, float, float]:
        """Lon/lat bounding box of the grid (densified edges, so it is not too small)."""
        left, bottom, right, top = self.bounds
        to_ll = Transformer.from_crs(self.crs, "EPSG:4326", always_xy=True)
        xs = np.concatenate([np.linspace(left, right, 21)] * 2 + [np.full(21, left), np.full(21, right)])
        ys = np.concatenate([np.full(21, bottom), np.full(21, top)] + [np.linspace(bottom, top, 21)] * 2)
        lon, lat = to_ll.transform(xs, ys)
        return (float(np.min(lon)), float(np.min(lat)), float(np.max(lon)), float(np.max(lat)))


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS 84 / UTM zone containing a point (326xx north, 327xx south)."""
    zone = int(math.floor((lon + 180.0) / 6.0)) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


def tile_grid(lon: float, lat: float, size_m: float, resolution: float = 10.0) -> Grid:
    """A square grid of ``size_m`` centred on a point, in the point's UTM zone.

    The origin snaps to the resolution so tiles of neighbouring points share pixel edges.
    """
    epsg = utm_epsg(lon, lat)
    x, y = Transformer.from_crs("EPSG:4326", epsg, always_xy=True).transform(lon, lat)
    n = max(1, int(round(size_m / resolution)))
    left = math.floor((x - n * resolution / 2) / resolution) * resolution
    top = math.floor((y + n * resolution / 2) / resolution) * resolution
    return Grid(f"EPSG:{epsg}", Affine(resolution, 0, left, 0, -resolution, top), n, n)


def bounds_grid(crs: str, bounds: Sequence[float], resolution: float = 10.0) -> Grid:
    """A grid covering projected ``bounds`` (left, bottom, right, top), snapped outward."""
    left, bottom, right, top = bounds
    left = math.floor(left / resolution) * resolution
    top = math.ceil(top / resolution) * resolution
    width = int(math.ceil((right - left) / resolution))
    height = int(math.ceil((top - bottom) / resolution))
    return Grid(crs, Affine(resolution, 0, left, 0, -resolution, top), width, height)


# Band order of 8-bit true-colour images (PNG/JPEG chips): red, green, blue.
RGB_BANDS = ("B04", "B03", "B02")
GEOTIFF_SUFFIXES = (".tif", ".tiff")
EIGHT_BIT_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_SUFFIXES = (*GEOTIFF_SUFFIXES, *EIGHT_BIT_SUFFIXES)


@dataclass(frozen=True)
class Raster:
    """An array with its georeferencing and band names."""

    array: np.ndarray  # (bands, rows, cols)
    crs: str | None
    transform: Affine
    band_names: tuple[str, ...]
    tags: dict = field(default_factory=dict)

    def band(self, name: str) -> np.ndarray:
        try:
            return self.array[self.band_names.index(name)]
        except ValueError:
            raise KeyError(f"band {name!r} not in raster (has {', '.join(self.band_names)})") from None

    def select(self, names: Sequence[str]) -> np.ndarray:
        return np.stack([self.band(n) for n in names])


def read_raster(path: str | Path, window=None) -> Raster:
    with rasterio.open(path) as src:
        arr = src.read(window=window)
        transform = src.window_transform(window) if window is not None else src.transform
        names = tuple(d or f"band{i + 1}" for i, d in enumerate(src.descriptions))
        crs = src.crs.to_string() if src.crs else None
        return Raster(arr, crs, transform, names, dict(src.tags()))


@dataclass(frozen=True)
class ImageHeader:
    """What an image file says about itself without reading its pixels."""

    shape: tuple[int, int]  # rows, cols
    crs: str | None
    transform: Affine
    tags: dict
    eight_bit: bool  # a PNG/JPEG, or a GeoTIFF of uint8: a rendering, not reflectance


def read_header(path: str | Path) -> ImageHeader:
    """Size, georeferencing, tags and 8-bit-ness of a GeoTIFF or PNG/JPEG (no pixels read)."""
    path = Path(path)
    if path.suffix.lower() in GEOTIFF_SUFFIXES:
        with rasterio.open(path) as src:
            return ImageHeader((src.height, src.width), src.crs.to_string() if src.crs else None, src.transform,
                               dict(src.tags()), src.dtypes[0] == "uint8")
    from PIL import Image

    with Image.open(path) as img:
        return ImageHeader((img.height, img.width), None, Affine.identity(), {}, True)


def read_image(path: str | Path, encoding: str | None = None) -> Raster:
    """A GeoTIFF as float32, or an 8-bit image (PNG/JPEG chip, uint8 GeoTIFF) decoded to reflectance.

    8-bit values are a rendering, so they need their ``encoding`` (a name in
    ``garimpo.contract.ENCODINGS``, e.g. amw_l1c_rgb: reflectance = value / 255 * 0.3); decoded images
    get tags ``units`` and ``encoding``, and PNG/JPEG chips the encoding's bands (B04, B03, B02) and no
    georeferencing. Raises InputDataError for an 8-bit image without an encoding, or an encoding given
    for an image that is not 8-bit.
    """
    from .contract import ENCODINGS, encoding as known_encoding

    path = Path(path)
    enc = known_encoding(encoding) if encoding else None
    if path.suffix.lower() in GEOTIFF_SUFFIXES:
        r = read_raster(path)
        if r.array.dtype != np.uint8:
            if enc:
                raise InputDataError(f"{path} holds {r.array.dtype} values, not 8-bit ones: drop encoding "
                                     f"{enc.name} for its folder")
            return Raster(r.array.astype(np.float32, copy=False), r.crs, r.transform, r.band_names, r.tags)
        array, crs, transform, names, tags = r.array, r.crs, r.transform, r.band_names, r.tags
    else:
        from PIL import Image

        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB")).transpose(2, 0, 1)
        crs, transform, names, tags = None, Affine.identity(), enc.bands if enc else RGB_BANDS, {}
    if enc is None:
        raise InputDataError(f"{path} is an 8-bit rendering, not reflectance: declare its encoding with its folder "
                             f"(e.g. {{path: {path.parent}, encoding: amw_l1c_rgb, pixel_size_m: 10}}); known "
                             f"encodings: {sorted(ENCODINGS)}")
    return Raster(enc.decode(array), crs, transform, tuple(names),
                  {**tags, "units": enc.units, "encoding": enc.name})


def write_raster(
    path: str | Path,
    array: np.ndarray,
    crs: str | None,
    transform: Affine,
    band_names: Sequence[str],
    nodata: float | None = float("nan"),
    tags: dict | None = None,
    cog: bool = False,
) -> Path:
    """Write a (bands, rows, cols) array as a GeoTIFF (or COG), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 2:
        array = array[None]
    if len(band_names) != array.shape[0]:
        raise ValueError(f"{len(band_names)} band names for {array.shape[0]} bands")
    profile = {
        "driver": "COG" if cog else "GTiff",
        "height": array.shape[1],
        "width": array.shape[2],
        "count": array.shape[0],
        "dtype": array.dtype.name,
        "crs": CRS.from_user_input(crs).to_wkt() if crs else None,
        "transform": transform,
        "nodata": nodata if np.issubdtype(array.dtype, np.floating) or nodata is None else nodata,
        "compress": "deflate",
    }
    if not cog:
        tiled = array.shape[1] >= 256 and array.shape[2] >= 256
        profile.update(tiled=tiled, **({"blockxsize": 256, "blockysize": 256} if tiled else {}))
    with atomic_path(path, suffix=".tif") as tmp:
        if cog:
            # The COG driver only writes through CreateCopy: write to memory first.
            with rasterio.MemoryFile() as mem:
                gtiff = {**profile, "driver": "GTiff"}
                with mem.open(**gtiff) as dst:
                    _fill(dst, array, band_names, tags)
                with mem.open() as src:
                    rasterio.shutil.copy(src, tmp, driver="COG", compress="deflate")
        else:
            with rasterio.open(tmp, "w", **profile) as dst:
                _fill(dst, array, band_names, tags)
    return path


def _fill(dst, array, band_names, tags) -> None:
    dst.write(array)
    for i, name in enumerate(band_names, start=1):
        dst.set_band_description(i, name)
    if tags:
        dst.update_tags(**{k: str(v) for k, v in tags.items()})

