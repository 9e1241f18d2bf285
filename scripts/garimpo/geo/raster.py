"""GeoTIFF I/O and target grids: the georeferenced edge of the package.

Readers return arrays plus CRS and transform; everything in between works on
plain arrays. Writers are atomic (temporary file, then rename) so a killed job
never leaves a half-written GeoTIFF that looks finished.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeGuard

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from garimpo.atomic import atomic_path
from garimpo.errors import InputDataError

log = logging.getLogger(__name__)


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


def point_grid(lon: float, lat: float, size_m: float, resolution: float = 10.0) -> Grid:
    """A square grid of ``size_m`` centred on a point, in the point's UTM zone.

    The origin snaps to the resolution so training images of neighbouring points share pixel edges.
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


@dataclass(frozen=True)
class CoarseGrid:
    """A grid of ``factor`` x ``factor`` times bigger pixels around a fine grid (:func:`coarse_grid`): the grid a
    band or mask that is native at the bigger pixel is read and processed on before it meets the fine one.

    ``grid``: the coarse grid; ``fine``: the fine grid it covers; ``row``, ``col``: where the fine grid's
    top-left corner lies in it, in fine pixels (0 <= row, col).
    """

    grid: Grid
    fine: Grid
    factor: int
    row: int
    col: int

    def to_fine(self, coarse: np.ndarray) -> np.ndarray:
        """``coarse`` (..., h, w) on the fine grid (..., H, W), each fine pixel the value of the coarse pixel
        that holds it: nearest resampling, exact because the pixel edges are aligned."""
        rows = (np.arange(self.fine.height) + self.row) // self.factor
        cols = (np.arange(self.fine.width) + self.col) // self.factor
        return coarse[..., rows[:, None], cols[None, :]]

    def upsample(self, coarse: np.ndarray) -> np.ndarray:
        """``coarse`` (bands, h, w) float32 (NaN: no data) bilinearly resampled onto the fine grid (bands, H, W)
        by GDAL's warper (rasterio.warp.reproject), NaN only where no coarse neighbour has data."""
        from rasterio.warp import Resampling, reproject

        out = np.full((coarse.shape[0], self.fine.height, self.fine.width), np.nan, dtype=np.float32)
        if len(coarse):
            reproject(
                np.ascontiguousarray(coarse, dtype=np.float32),
                out,
                src_transform=self.grid.transform,
                src_crs=self.grid.crs,
                src_nodata=np.nan,
                dst_transform=self.fine.transform,
                dst_crs=self.fine.crs,
                dst_nodata=np.nan,
                resampling=Resampling.bilinear,
            )
        return out


def coarse_grid(fine: Grid, factor: int, pad: int = 1) -> CoarseGrid | None:
    """The grid of pixels ``factor`` times the size of ``fine``'s (``factor`` >= 2) that covers ``fine``, its
    pixel edges on multiples of its own pixel size in ``fine``'s CRS (as Sentinel-2's 20 m pixels are, MGRS
    tiles having their corners on multiples of 60 m), grown by ``pad`` coarse pixels on every side so that a
    bilinear resampling back onto ``fine`` has neighbours all round. None when ``fine`` is north-up with
    edges off multiples of its own pixel (then no coarse pixel edge falls on fine pixel edges).
    """
    res = fine.resolution
    t = fine.transform
    if t.b or t.d or t.e != -res:
        return None
    if abs(t.c / res - round(t.c / res)) > 1e-6 or abs(t.f / res - round(t.f / res)) > 1e-6:
        return None
    size = res * factor
    left, bottom, right, top = fine.bounds
    c_left = (math.floor(round(left / res) / factor) - pad) * size
    c_top = (math.ceil(round(top / res) / factor) + pad) * size
    c_right = (math.ceil(round(right / res) / factor) + pad) * size
    c_bottom = (math.floor(round(bottom / res) / factor) - pad) * size
    grid = Grid(
        fine.crs,
        Affine(size, 0, c_left, 0, -size, c_top),
        int(round((c_right - c_left) / size)),
        int(round((c_top - c_bottom) / size)),
    )
    return CoarseGrid(grid, fine, factor, int(round((c_top - top) / res)), int(round((left - c_left) / res)))


# Band order of 8-bit true-colour images (PNG/JPEG chips): red, green, blue.
RGB_BANDS = ("B04", "B03", "B02")
GEOTIFF_SUFFIXES = (".tif", ".tiff")
EIGHT_BIT_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_SUFFIXES = (*GEOTIFF_SUFFIXES, *EIGHT_BIT_SUFFIXES)
# The most memory one user image may take once read as float32 reflectance. Training and evaluation images
# are chips (an Amazon Mining Watch chip is 48 x 48 px, 27 KiB as float32) and each is read whole, so an
# image a thousand times bigger than any chip is refused from its header, before its pixels are decoded.
MAX_IMAGE_BYTES = 1 << 30


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


def band_names(src) -> tuple[str | None, ...]:
    """The band descriptions of an open rasterio dataset, stripped; ``None`` for a band without one."""
    return tuple(d.strip() or None if d else None for d in src.descriptions)


def band_indexes(src, names: Sequence[str]) -> list[int]:
    """1-based indexes of the bands called ``names`` (band descriptions), in that order.

    The one way the package finds bands: by name, never by position, because providers and local
    files order bands differently.

    Raises:
        InputDataError: a name is not among the band descriptions; the message names the file, the
            missing bands and the names it has.
    """
    have = band_names(src)
    missing = [n for n in names if n not in have]
    if missing:
        raise InputDataError(
            f"{src.name} lacks bands {missing}; its band descriptions are {list(have)}. "
            "Write the band names into the GeoTIFF's band descriptions "
            "(gdal_edit.py or rasterio's set_band_description)."
        )
    return [have.index(n) + 1 for n in names]


def read_bands(src, indexes: Sequence[int], window=None) -> np.ndarray:
    """float32 (bands, rows, cols) of an open dataset: the GDAL scale/offset of integer bands applied (so
    scaled digital numbers come back as reflectance), nodata and non-finite values as NaN.

    ``window``: a rasterio ``Window`` or None for the whole raster.
    """
    arr = src.read(list(indexes), window=window)
    nodata = src.nodata
    if np.issubdtype(arr.dtype, np.integer):
        bad = arr == nodata if nodata is not None else None
        out = arr.astype(np.float32)
        for b, i in enumerate(indexes):
            scale, offset = src.scales[i - 1], src.offsets[i - 1]
            if scale != 1.0 or offset != 0.0:
                out[b] *= np.float32(scale)
                out[b] += np.float32(offset)
        if bad is not None:
            out[bad] = np.nan
        return out
    out = arr.astype(np.float32, copy=False)
    if nodata is not None and not np.isnan(nodata):
        out[out == nodata] = np.nan
    return out


def read_bands_by_name(path: str | os.PathLike[str], names: Sequence[str], window=None) -> np.ndarray:
    """float32 (len(names), rows, cols) of the GeoTIFF at ``path``, bands picked by name (``band_indexes``)
    and decoded as ``read_bands`` does.

    Raises:
        InputDataError: a band is missing (see ``band_indexes``).
        rasterio.errors.RasterioError: the file cannot be opened or read.
    """
    with rasterio.open(path) as src:
        return read_bands(src, band_indexes(src, names), window)


@dataclass(frozen=True)
class ImageHeader:
    """What an image file says about itself without reading its pixels, in GDAL's terms for every format."""

    shape: tuple[int, int]  # rows, cols
    crs: str | None
    transform: Affine
    tags: dict
    eight_bit: bool  # uint8 values (a PNG/JPEG chip, or a GeoTIFF of uint8): a rendering, not reflectance
    dtype: str = "uint8"
    colorinterp: tuple[str, ...] = ()  # per band: red, green, blue, gray, palette, alpha, undefined...
    descriptions: tuple[str | None, ...] = ()
    scales: tuple[float, ...] = ()
    offsets: tuple[float, ...] = ()
    color_space: str | None = None  # a JPEG's source colour space (RGB, YCbCr, CMYK, YCCK), as GDAL reports it


@contextmanager
def _open_image(path: Path):
    """rasterio.open without the NotGeoreferencedWarning every PNG/JPEG chip raises.

    GDAL lists a file's whole folder on every open unless told not to; in a folder of 10,000 chips that
    is 10,000 listings of 10,000 names. Sidecar files (.aux.xml, .tfw, .msk) are still found, by name.
    """
    with warnings.catch_warnings(), rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="TRUE"):
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            yield src


def _header(src) -> ImageHeader:
    return ImageHeader(
        (src.height, src.width),
        src.crs.to_string() if src.crs else None,
        src.transform,
        dict(src.tags()),
        src.dtypes[0] == "uint8",
        src.dtypes[0],
        tuple(c.name for c in src.colorinterp),
        tuple(d.strip() if d else None for d in src.descriptions),
        tuple(src.scales),
        tuple(src.offsets),
        src.tags(ns="IMAGE_STRUCTURE").get("SOURCE_COLOR_SPACE"),
    )


def _where(path: Path, key: str | None) -> str:
    return f"{path} (from {key})" if key else str(path)


_FORMATS = {".tif": "GeoTIFF", ".tiff": "GeoTIFF", ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def read_error_text(err: BaseException) -> str:
    """Why a read failed, in the library's words: GDAL's own message rather than rasterio's "Read failed. See
    previous exception for details", which names nothing."""
    if isinstance(err, RasterioError) and err.__cause__ is not None:
        return f"GDAL: {str(err.__cause__).rstrip('.')}"
    return f"{type(err).__name__}: {str(err).rstrip('.')}"


def unreadable_image(path: str | Path, err: BaseException, key: str | None = None) -> InputDataError:
    """The error for a user image that rasterio or Pillow cannot read, naming the file, ``key`` and what to do."""
    path = Path(path)
    try:
        empty = path.stat().st_size == 0
    except OSError:
        empty = False
    if empty:
        why = "the file is empty (0 bytes)"
    else:
        why = read_error_text(err)
    return InputDataError(
        f"{_where(path, key)} cannot be read as an image: {why}. It is damaged, cut short or not "
        f"a {_FORMATS.get(path.suffix.lower(), 'image')} file: remove it from its folder or "
        "replace it with a good copy"
    )


def read_header(path: str | os.PathLike[str], key: str | None = None) -> ImageHeader:
    """Size, georeferencing, tags, data type and band layout of a GeoTIFF or PNG/JPEG (no pixels read).

    ``key`` (the config key that lists the file, e.g. positives.local_dirs) is named in errors.
    Raises InputDataError for a file rasterio cannot open (empty, damaged, not an image).
    """
    path = Path(path)
    try:
        with _open_image(path) as src:
            return _header(src)
    except (RasterioError, OSError) as err:
        raise unreadable_image(path, err, key) from err


# 8-bit images keep their colours only in these JPEG colour spaces (GDAL's SOURCE_COLOR_SPACE).
_RGB_COLOR_SPACES = (None, "RGB", "YCBCR")
_TRUE_COLOUR = ("red", "green", "blue")
_ORIGINAL = "Use the chip's true-colour (8-bit RGB) original, or leave it out of the folder"


def image_bands(
    path: str | os.PathLike[str], head: ImageHeader, encoding: str | None = None, key: str | None = None
) -> tuple[list[int], tuple[str, ...]]:
    """(0-based indices, names) of the bands :func:`read_image` reads from a user image, from its header alone.

    Decides what kind of image a file is by GDAL's data type, band count, colour interpretation and
    band descriptions, never by its values; an alpha band is a mask, not a band. An image larger than
    ``MAX_IMAGE_BYTES`` as float32 is refused here, before its pixels are decoded. Raises InputDataError
    naming the file, ``key`` (the config key listing it) and what to do, for every kind that cannot be
    read as reflectance (see :func:`read_image`).
    """
    from garimpo.contract import ENCODINGS
    from garimpo.contract import encoding as known_encoding

    path = Path(path)
    where = _where(path, key)
    enc = known_encoding(encoding, key or "encoding") if encoding else None
    index = [i for i, c in enumerate(head.colorinterp) if c != "alpha"]
    _check_size(where, head, len(enc.bands) if enc else len(index))
    if path.suffix.lower() not in GEOTIFF_SUFFIXES and not head.eight_bit:
        why = (
            f"the folder's encoding {enc.name} decodes 8-bit values as {enc.formula}; read that way these would "
            "be wrong"
            if enc
            else "no known encoding says how they map to reflectance"
        )
        raise InputDataError(
            f"{where} holds {np.dtype(head.dtype).itemsize * 8}-bit values ({head.dtype}), not 8-bit ones: {why}. "
            "Convert it to a GeoTIFF of float32 reflectance with its bands named (e.g. B04, B03, B02), or save it "
            "as 8-bit RGB in an encoding its folder declares"
        )
    if not head.eight_bit:
        return index, _reflectance_bands(path, where, head, index, enc)
    if enc is None:
        raise InputDataError(
            f"{where} is an 8-bit rendering, not reflectance: declare its encoding with its folder "
            f"(e.g. {{path: {path.parent}, encoding: amw_l1c_rgb, pixel_size_m: 10}}); known "
            f"encodings: {sorted(ENCODINGS)}"
        )
    return index, _rendered_bands(path, where, head, index, enc)


def _check_size(where: str, head: ImageHeader, bands: int) -> None:
    """Refuse, from its header, an image whose ``bands`` would take more than MAX_IMAGE_BYTES as float32."""
    rows, cols = head.shape
    size = rows * cols * max(bands, 1) * 4
    if size > MAX_IMAGE_BYTES:
        raise InputDataError(
            f"{where} is {rows} x {cols} px of {max(bands, 1)} band{'s' * (bands != 1)}: read as float32 "
            f"reflectance it would take {size / 2**30:.1f} GiB, more than the {MAX_IMAGE_BYTES / 2**30:g} GiB a "
            "training or evaluation image may take. These images are chips of the training footprint (an Amazon "
            "Mining Watch chip is 48 x 48 px), each read whole into memory: cut chips of that size out of it, "
            "or leave it out of its folder"
        )


def _reflectance_bands(path: Path, where: str, head: ImageHeader, index: list[int], enc) -> tuple[str, ...]:
    """Names of a GeoTIFF's bands of reflectance: float values, or integers with a scale the file declares."""
    if enc:
        raise InputDataError(
            f"{where} holds {head.dtype} values, not 8-bit ones: drop encoding {enc.name} for its folder"
        )
    names = tuple(head.descriptions[i] for i in index)
    if not _all_named(names):
        unnamed = ", ".join(str(i + 1) for i, n in zip(index, names) if not n)
        raise InputDataError(
            f"{where} has bands without names (band {unnamed}): images are read by band name, so name each band by "
            "its Sentinel-2 band in the GeoTIFF's band descriptions (e.g. rio edit-info --bidx 1 --description B04 "
            "FILE)"
        )
    if np.issubdtype(np.dtype(head.dtype), np.integer):
        # Every band needs its scale: one band's would otherwise pass the others' digital numbers as reflectance.
        unscaled = [name for i, name in zip(index, names) if not _scaled(head, [i])]
        advice = (
            "Write float32 reflectance (Sentinel-2 L2A: (DN - 1000) / 10000 from processing baseline 04.00, "
            "DN / 10000 before), or record the scale and offset in the file with the project's environment: "
            f"{scale_snippet(path)} (offset -0.1 from baseline 04.00, 0.0 before)"
        )
        if len(unscaled) == len(index):
            raise InputDataError(
                f"{where} holds {head.dtype} values with no scale to reflectance (scale 1, offset 0): digital "
                f"numbers, not reflectance. {advice}"
            )
        if unscaled:
            raise InputDataError(
                f"{where} holds {head.dtype} values with a scale to reflectance on some bands only: band"
                f"{'s' * (len(unscaled) != 1)} {', '.join(unscaled)} {'has' if len(unscaled) == 1 else 'have'} "
                f"none (scale 1, offset 0), so {'its' if len(unscaled) == 1 else 'their'} digital numbers would "
                f"be read as reflectance. {advice}"
            )
    return names


def scale_snippet(path: str | os.PathLike[str], scale: float = 0.0001, offset: float = -0.1) -> str:
    """A shell command that records a reflectance scale and offset in every band of a GeoTIFF, with the
    project's own environment (Python and rasterio; GDAL's command-line tools are not part of it)."""
    code = (
        f'import rasterio; ds = rasterio.open({json.dumps(str(path))}, "r+"); ds.scales = ({scale},) * ds.count; '
        f"ds.offsets = ({offset},) * ds.count; ds.close()"
    )
    return f"python -c {shlex.quote(code)}"


def _all_named(names: tuple[str | None, ...]) -> TypeGuard[tuple[str, ...]]:
    """True when every band has a name (no None, no empty description)."""
    return all(names)


def _scaled(head: ImageHeader, index: list[int]) -> bool:
    return any(head.scales[i] != 1 or head.offsets[i] != 0 for i in index)


def _rendered_bands(path: Path, where: str, head: ImageHeader, index: list[int], enc) -> tuple[str, ...]:
    """Names of an 8-bit image's colour bands, or InputDataError for a kind ``enc`` does not decode.

    Refused: palette images (indices into a colour table), greyscale ones (one band is not three bands of
    reflectance; copying it into each would make colour up), JPEGs of print colours (CMYK, YCCK), another
    number of colour bands than the encoding's, PNG/JPEG bands that are not red, green, blue, and GeoTIFF
    band names other than the encoding's (unnamed GeoTIFF bands are taken in the encoding's order).
    """
    wanted = ", ".join(enc.bands)
    if "palette" in head.colorinterp:
        raise InputDataError(
            f"{where} is a palette (indexed-colour) image: its values are indices into a colour "
            f"table, not an 8-bit rendering of {wanted}, and its colours were cut down to at most "
            f"256. {_ORIGINAL}"
        )
    space = head.color_space.upper() if head.color_space else None
    if space not in _RGB_COLOR_SPACES:
        raise InputDataError(
            f"{where} is a {head.color_space} JPEG: its colours were converted for print, and no "
            f"encoding says how they map back to the red, green and blue of {enc.name}. {_ORIGINAL}"
        )
    alpha = " and alpha" if len(index) < len(head.colorinterp) else ""
    if len(index) == 1 and len(enc.bands) > 1:
        raise InputDataError(
            f"{where} is a greyscale image (1 band{alpha}): encoding {enc.name} decodes "
            f"{len(enc.bands)} bands ({wanted}); a grey image is not {len(enc.bands)} bands of "
            f"reflectance, and copying it into each band would make colour up. {_ORIGINAL}"
        )
    if len(index) != len(enc.bands):
        raise InputDataError(
            f"{where} has {len(index)} 8-bit colour bands ({', '.join(head.colorinterp)}); "
            f"encoding {enc.name} decodes {len(enc.bands)} ({wanted}), with an alpha band besides "
            "read as a nodata mask. Put only images of that layout in this folder, or fix its "
            "encoding"
        )
    if path.suffix.lower() not in GEOTIFF_SUFFIXES:
        found = tuple(head.colorinterp[i] for i in index)
        if found != _TRUE_COLOUR or index != [0, 1, 2]:
            raise InputDataError(
                f"{where} has bands {', '.join(head.colorinterp)}, not red, green, blue (and alpha): "
                f"encoding {enc.name} decodes true colour ({wanted}). {_ORIGINAL}"
            )
        return tuple(enc.bands)
    names = tuple(head.descriptions[i] for i in index)
    if not _all_named(names):
        return tuple(enc.bands)
    if sorted(names) != sorted(enc.bands):
        raise InputDataError(
            f"{where} names its 8-bit bands {', '.join(names)}; encoding {enc.name} decodes "
            f"{wanted}: fix the band descriptions or the folder's encoding"
        )
    return names


def read_image(path: str | Path, encoding: str | None = None, key: str | None = None) -> Raster:
    """A user image as float32 reflectance: a GeoTIFF of reflectance, or an 8-bit image decoded by its encoding.

    ``encoding``: a name in ``garimpo.contract.ENCODINGS`` (e.g. amw_l1c_rgb: reflectance = value / 255 * 0.3),
    needed for 8-bit images (PNG/JPEG chips, uint8 GeoTIFFs); decoded images get tags ``units`` and
    ``encoding``, and PNG/JPEG chips the encoding's bands (B04, B03, B02) and no georeferencing. ``key``:
    the config key listing the image (e.g. positives.local_dirs), named in errors. What kind of image a
    file is comes from its header (:func:`image_bands`), never from its values:

    - 8-bit true colour (RGB PNG/JPEG, 3-band uint8 GeoTIFF): decoded by the encoding. JPEG is lossy, but
      its values are still the encoding's, give or take the compression.
    - transparency (an RGBA PNG's alpha, a PNG's transparent colour, a GeoTIFF's alpha band, nodata value
      or mask): hidden pixels become NaN (nodata, as cloud in a fetched composite: statistics, matching
      and training skip NaN), noted in the log; partly transparent pixels keep their colour (PNG alpha is
      not premultiplied). An image with no visible pixel is refused.
    - greyscale, palette and CMYK images, and other band counts: refused, as there is no honest way to
      make three bands of reflectance of them.
    - PNG/JPEG of more than 8 bits (16-bit PNG): refused; value / 255 would be wrong.
    - GeoTIFFs of other types: float values are reflectance; integer ones only through a scale and offset
      the file declares (applied), else refused (digital numbers). Every band needs a name (its
      description: B04, B08...), since images are read by band name. Values of +inf, -inf or NaN outside
      the nodata mask become NaN (nodata) too, with a warning counting them.
    - an image that would take more than ``MAX_IMAGE_BYTES`` as float32: refused from its header, before
      any pixel is decoded (these images are chips).

    PNG/JPEG pixels are decoded by Pillow, which refuses a truncated file (GDAL's PNG driver fills the
    missing rows with zeros without an error). Raises InputDataError naming the file and ``key`` for all
    of the above and for a file that cannot be read at all (empty, damaged, not an image).
    """
    from garimpo.contract import encoding as known_encoding

    path = Path(path)
    where = _where(path, key)
    enc = known_encoding(encoding, key or "encoding") if encoding else None
    geotiff = path.suffix.lower() in GEOTIFF_SUFFIXES
    try:
        with _open_image(path) as src:
            head = _header(src)
            index, names = image_bands(path, head, encoding, key)
            if geotiff:
                values, valid = src.read([i + 1 for i in index]), src.read_masks([i + 1 for i in index])
    except (RasterioError, OSError) as err:
        raise unreadable_image(path, err, key) from err
    if not geotiff:  # R, G, B and alpha (a PNG's transparent colour included)
        rgba = _decode_rendering(path, key)
        values, valid = rgba[:3], np.broadcast_to(rgba[3], (3, *rgba.shape[1:]))
    if enc is not None:
        array = enc.decode(values)
        tags = {"units": enc.units, "encoding": enc.name}
    else:
        array = values.astype(np.float32)
        tags = {}
        if _scaled(head, index):
            scale = np.array([head.scales[i] for i in index], np.float32)[:, None, None]
            offset = np.array([head.offsets[i] for i in index], np.float32)[:, None, None]
            array = array * scale + offset
            log.info(
                "%s: %s values scaled to reflectance by the file's scale %s and offset %s",
                where,
                head.dtype,
                scale.ravel().tolist(),
                offset.ravel().tolist(),
            )
    # Float values (and scaled integers) may hold +-inf or NaN outside the nodata mask: no reflectance either.
    _mask(array, valid == 0, where, None if enc else ~np.isfinite(array))
    crs, transform, file_tags = image_georeferencing(path, head)
    return Raster(array, crs, transform, names, {**file_tags, **tags})


def image_georeferencing(path: str | os.PathLike[str], head: ImageHeader) -> tuple[str | None, Affine, dict]:
    """CRS, transform and tags :func:`read_image` gives an image: a GeoTIFF's own, none for a PNG/JPEG chip
    (a world file or .aux.xml beside it is not read), so its contract can be checked before its pixels are read."""
    if Path(path).suffix.lower() in GEOTIFF_SUFFIXES:
        return head.crs, head.transform, head.tags
    return None, Affine.identity(), {}


def _decode_rendering(path: Path, key: str | None) -> np.ndarray:
    """An RGB(A) PNG/JPEG as uint8 (4, rows, cols): R, G, B and alpha (255 where the file has none)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()  # decodes now: a truncated file raises here
            mode = img.mode
            rgba = img.convert("RGBA") if mode in ("RGB", "RGBA") else None
    except (OSError, SyntaxError, EOFError, ValueError, Image.DecompressionBombError) as err:  # Pillow's ways of
        raise unreadable_image(path, err, key) from err  # saying "cannot decode this file"
    if rgba is None:  # GDAL saw red, green, blue; Pillow disagrees
        raise InputDataError(f"{_where(path, key)} opens as Pillow mode {mode}, not RGB or RGBA. {_ORIGINAL}")
    return np.asarray(rgba).transpose(2, 0, 1)


def _mask(array: np.ndarray, hidden: np.ndarray, where: str, non_finite: np.ndarray | None = None) -> None:
    """Set ``hidden`` pixels (bands, rows, cols) and ``non_finite`` values to NaN in place, each noted in the
    log with its count; refuse an image where every pixel is either."""
    odd = non_finite & ~hidden if non_finite is not None else np.zeros_like(hidden)
    if not hidden.any() and not odd.any():
        return
    if (hidden | odd).all():
        raise InputDataError(
            f"{where} has no visible pixel (each is hidden by its alpha, nodata or mask"
            f"{', or holds +inf, -inf or NaN' if odd.any() else ''}): nothing "
            "to learn from or score; remove it from its folder"
        )
    pixels = hidden.shape[1] * hidden.shape[2]
    if hidden.any():
        array[hidden] = np.nan
        log.info(
            "%s: %d of %d pixels transparent or nodata (alpha, nodata value or mask): read as NaN (nodata)",
            where,
            int(hidden.any(axis=0).sum()),
            pixels,
        )
    if odd.any():
        array[odd] = np.nan
        log.warning(
            "%s: %d of %d pixels hold +inf, -inf or NaN outside the file's nodata mask: read as NaN (nodata); "
            "if they should be reflectance, fix the file",
            where,
            int(odd.any(axis=0).sum()),
            pixels,
        )


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
