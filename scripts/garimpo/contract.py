"""The footprint and radiometric contract between training images, the checkpoint and detection.

A classifier learns what mining looks like on ground of one size seen at one pixel size, in one kind of
values. Every training image therefore carries (as GeoTIFF tags and index columns) its footprint (side of
the square chip, metres), its pixel size (metres), its units (``surface_reflectance`` of L2A,
``toa_reflectance`` of L1C) and, when it was decoded from an 8-bit rendering, that encoding. Training
refuses images that disagree and records the contract in the checkpoint; detection and evaluation
refuse a model whose contract the imagery or the config does not meet, before scanning anything.
No conversion between surface and top-of-atmosphere reflectance is documented here (it needs an
atmospheric correction), so a model is never applied to the other kind.

Pure functions and small records; the only I/O is reading a GeoTIFF's header in ``read_training_image_contract``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np

from garimpo.errors import ContractError, InputDataError

SURFACE_REFLECTANCE = "surface_reflectance"
TOA_REFLECTANCE = "toa_reflectance"
UNITS = (SURFACE_REFLECTANCE, TOA_REFLECTANCE)


class Resize(TypedDict):
    """Arguments of torch.nn.functional.interpolate: ``mode`` (as "method"), ``antialias``, ``align_corners``."""

    method: str
    antialias: bool
    align_corners: bool


# How classifier.data.preprocess brings every chip to the network's input_size (one source for the
# code and for what the checkpoint records).
RESIZE: Resize = {"method": "bilinear", "antialias": True, "align_corners": False}

# Keys a checkpoint needs before detection or evaluation may use it.
CONTRACT_META = ("footprint_m", "pixel_size_m", "chip_px", "units", "encoding", "resize")


@dataclass(frozen=True)
class Encoding:
    """An 8-bit rendering of reflectance: ``reflectance = value * scale`` (values of 255 are saturated)."""

    name: str
    units: str
    bands: tuple[str, ...]
    scale: float
    formula: str
    source: str

    def decode(self, values: np.ndarray) -> np.ndarray:
        """8-bit values (any shape, 0..255) -> float32 reflectance (0..255 * scale)."""
        return np.asarray(values, dtype=np.float32) * np.float32(self.scale)

    def record(self) -> dict:
        return {"name": self.name, "formula": self.formula, "source": self.source}


# Known 8-bit encodings. Add one only with its source: a guessed scale is worse than a refusal.
ENCODINGS: dict[str, Encoding] = {
    "amw_l1c_rgb": Encoding(
        name="amw_l1c_rgb",
        units=TOA_REFLECTANCE,
        bands=("B04", "B03", "B02"),
        scale=0.3 / 255,
        formula="reflectance = value / 255 * 0.3 (255 means >= 0.3, clipped)",
        # Their DN is L1C reflectance x 10000, so DN / 3000 = reflectance / 0.3. Whether the +1000 DN
        # offset of processing baseline 04.00 was removed first, the chips do not say.
        source="Earth Genome mining-detector (Amazon Mining Watch): Sentinel-2 L1C B04, B03, B02 digital "
        "numbers divided by 3000, clipped to 1, times 255",
    ),
}


def encoding(name: str, key: str = "encoding") -> Encoding:
    """The known encoding ``name``; raises InputDataError naming ``key`` and the known ones."""
    try:
        return ENCODINGS[name]
    except KeyError:
        raise InputDataError(f"{key}: encoding {name!r} is unknown; known: {sorted(ENCODINGS)}") from None


def collection_units(collection: str) -> str:
    """Units of a Sentinel-2 STAC collection's pixels: L2A -> surface_reflectance, L1C -> toa_reflectance.

    Raises:
        InputDataError: the collection name says neither L2A nor L1C.
    """
    name = str(collection).lower()
    if "l2a" in name:
        return SURFACE_REFLECTANCE
    if "l1c" in name:
        return TOA_REFLECTANCE
    raise InputDataError(
        f"imagery.source.collection {collection!r}: cannot tell whether it holds surface (L2A) "
        "or top-of-atmosphere (L1C) reflectance; use a sentinel-2 L2A collection"
    )


# ---------------------------------------------------------------- local folders


@dataclass(frozen=True)
class ImageFolder:
    """A folder of images from config (``positives.local_dirs`` items, ``evaluation.chip_sets`` values).

    ``encoding``: name in ENCODINGS, needed for 8-bit images; ``pixel_size_m``: needed for images without a
    projected georeferencing in metres; ``units``: of GeoTIFFs without a ``units`` tag (default
    surface_reflectance); ``key``: the config key, for messages.
    """

    path: Path
    encoding: str | None = None
    pixel_size_m: float | None = None
    units: str | None = None
    key: str = "local_dirs"

    @property
    def spec(self) -> str:
        """The mapping a user would write for this folder, with an 8-bit encoding as the example."""
        enc, px = self.encoding or "amw_l1c_rgb", self.pixel_size_m or 10
        return f"{{path: {self.path}, encoding: {enc}, pixel_size_m: {px:g}}}"


def image_folder(spec: str | os.PathLike | Mapping | ImageFolder, key: str = "local_dirs") -> ImageFolder:
    """An ImageFolder from a plain path or a mapping ``{path, encoding, pixel_size_m, units}``.

    Raises InputDataError (naming ``key``) for an unknown encoding or units, or a pixel size <= 0.
    """
    if isinstance(spec, ImageFolder):
        return spec
    if not isinstance(spec, Mapping):
        return ImageFolder(Path(spec), key=key)
    if "path" not in spec:
        raise InputDataError(f"{key}: {dict(spec)} has no path")
    unknown = set(spec) - {"path", "encoding", "pixel_size_m", "units"}
    if unknown:
        raise InputDataError(f"{key}: unknown keys {sorted(unknown)} (allowed: path, encoding, pixel_size_m, units)")
    enc, px, units = spec.get("encoding"), spec.get("pixel_size_m"), spec.get("units")
    if enc is not None:
        encoding(enc, key)
    if px is not None and not float(px) > 0:
        raise InputDataError(f"{key}: pixel_size_m must be > 0, got {px!r}")
    if units is not None and units not in UNITS:
        raise InputDataError(f"{key}: units {units!r}; use one of {list(UNITS)}")
    return ImageFolder(Path(spec["path"]), enc, None if px is None else float(px), units, key)


# ---------------------------------------------------------------- the contract of one image


@dataclass(frozen=True)
class ImageContract:
    """What a square image shows: ``footprint_m`` of ground per side at ``pixel_size_m``, in ``units``."""

    footprint_m: float
    pixel_size_m: float
    units: str
    encoding: str | None = None

    @property
    def chip_px(self) -> int:
        return int(round(self.footprint_m / self.pixel_size_m))

    def tags(self) -> dict[str, str]:
        """GeoTIFF tags (and index columns) recording the contract; ``encoding`` only when decoded from one."""
        tags = {"footprint_m": f"{self.footprint_m:g}", "pixel_size_m": f"{self.pixel_size_m:g}", "units": self.units}
        return {**tags, "encoding": self.encoding} if self.encoding else tags

    def describe(self) -> str:
        kind = self.units + (f" decoded from 8-bit {self.encoding}" if self.encoding else "")
        return f"{self.footprint_m:g} m chips at {self.pixel_size_m:g} m ({self.chip_px} px, {kind})"

    def same_ground(self, other: ImageContract) -> bool:
        """Footprints, and pixel sizes summed over the chip, within half a pixel."""
        half = 0.5 * min(self.pixel_size_m, other.pixel_size_m)
        px_drift = abs(self.pixel_size_m - other.pixel_size_m) * max(self.chip_px, other.chip_px)
        return abs(self.footprint_m - other.footprint_m) <= half and px_drift <= half

    def agrees(self, other: ImageContract) -> bool:
        """The same ground, units and encoding: images one model can learn from together."""
        return self.same_ground(other) and (self.units, self.encoding) == (other.units, other.encoding)


def projected_pixel_size(crs, transform) -> float | None:
    """Pixel size in metres of a north-up grid in a projected CRS with metre units; None otherwise."""
    if not crs:
        return None
    from pyproj import CRS

    crs = CRS.from_user_input(crs)
    unit = crs.axis_info[0].unit_name if crs.axis_info else ""
    if not crs.is_projected or unit not in ("metre", "meter"):
        return None
    a, e = abs(transform.a), abs(transform.e)
    if transform.b or transform.d or not math.isclose(a, e, rel_tol=1e-6):
        return None
    return float(a)


def image_contract(path, shape: tuple[int, int], crs, transform, tags: Mapping, folder: ImageFolder) -> ImageContract:
    """The contract of one local image (rows, cols ``shape``) of ``folder``.

    Pixel size: the projected georeferencing in metres, else the file's ``pixel_size_m`` tag, else the
    folder's ``pixel_size_m`` (a declaration that contradicts the file is refused). Units: the
    folder's encoding, else the file's ``units`` tag, else the folder's ``units``, else
    surface_reflectance. Raises InputDataError naming the file, the folder and the key to set.
    """
    rows, cols = shape
    found = projected_pixel_size(crs, transform) or (float(tags["pixel_size_m"]) if tags.get("pixel_size_m") else None)
    declared = folder.pixel_size_m
    if found is None and declared is None:
        raise InputDataError(_no_metres(path, shape, crs, transform, folder))
    if found is not None and declared is not None and abs(found - declared) * cols > 0.5 * found:
        raise InputDataError(
            f"{path} has {found:g} m pixels but {folder.key} declares pixel_size_m {declared:g} "
            f"for {folder.path}; fix or drop the declaration"
        )
    px = found or declared
    if rows != cols:
        raise InputDataError(
            f"{path} (from {folder.key}) is {rows} x {cols} px: training and detection use square chips; "
            f"crop the images of {folder.path} to squares"
        )
    if folder.encoding:
        units = encoding(folder.encoding, folder.key).units
    else:
        tagged = tags.get("units") or None
        if tagged and folder.units and tagged != folder.units:
            raise InputDataError(
                f"{path} is tagged units={tagged} but {folder.key} declares {folder.units} "
                f"for {folder.path}; fix or drop the declaration"
            )
        units = tagged or folder.units or SURFACE_REFLECTANCE
    assert px is not None  # found and declared cannot both be None (refused above)
    return ImageContract(cols * px, px, units, folder.encoding or (tags.get("encoding") or None))


def _no_metres(path, shape: tuple[int, int], crs, transform, folder: ImageFolder) -> str:
    """Why an image has no known pixel size, and what to do: declare it with its folder (the folder's encoding
    in the example only when it has one: a GeoTIFF of reflectance takes none), or reproject it to metres."""
    example = f"{{path: {folder.path}{f', encoding: {folder.encoding}' if folder.encoding else ''}, pixel_size_m: 10}}"
    declare = f"for folder {folder.path} in {folder.key}, e.g. {example}"
    found = None
    if crs:
        from pyproj import CRS

        found = CRS.from_user_input(crs)
    if found is None or not found.is_geographic:
        return f"{path} has no georeferencing in metres: declare its pixel size on the ground, in metres, {declare}"
    from pyproj.aoi import AreaOfInterest
    from pyproj.database import query_utm_crs_info

    rows, cols = shape
    lon, lat = transform @ (cols / 2, rows / 2)
    # WGS 84 / UTM zone of the image's centre (pyproj's CRS database), for the example command.
    zones = query_utm_crs_info("WGS 84", AreaOfInterest(lon, lat, lon, lat))
    zone = f"EPSG:{zones[0].code}" if zones else "EPSG:<its UTM zone>"
    name = ":".join(found.to_authority() or ()) or found.name
    return (
        f"{path} is georeferenced in degrees ({name}), not metres, so its pixel size on the ground is unknown (its "
        f"{abs(transform.e):g} degree pixels are about {abs(transform.e) * 111_320:.3g} m north-south): declare "
        f"it in metres {declare}, or reproject the image to metres in its UTM zone (e.g. rio warp {path} OUT.tif "
        f"--dst-crs {zone} --res 10, then crop it to a square and name its bands again)"
    )


def contract_from_tags(tags: Mapping) -> ImageContract | None:
    """The contract a training image's tags record (None when they record none)."""
    if not all(tags.get(k) for k in ("footprint_m", "pixel_size_m", "units")):
        return None
    return ImageContract(
        float(tags["footprint_m"]), float(tags["pixel_size_m"]), str(tags["units"]), tags.get("encoding") or None
    )


def read_training_image_contract(path: str | os.PathLike) -> ImageContract:
    """The contract recorded in a training image's GeoTIFF tags; raises InputDataError for an image that has none."""
    import rasterio

    with rasterio.open(path) as src:
        found = contract_from_tags(src.tags())
    if found is None:
        raise InputDataError(
            f"training image {path} records no footprint_m / pixel_size_m / units tags: it was made "
            "before the footprint contract; rebuild the training images (snakemake -R fetch_training_images)"
        )
    return found


def common_contract(contracts: Iterable[tuple[object, ImageContract]], what: str) -> ImageContract:
    """The one contract all ``(path, contract)`` pairs share; raises InputDataError naming examples of each kind.

    ``path`` is only shown (as ``str(path)``): a str, a PathLike, or whatever a table row holds.
    ``what`` names the images in the message (e.g. "the training images of results/split.csv").
    """
    kinds: list[tuple[ImageContract, list[str]]] = []
    for path, c in contracts:
        for ref, paths in kinds:
            if ref.agrees(c):
                paths.append(str(path))
                break
        else:
            kinds.append((c, [str(path)]))
    if not kinds:
        raise InputDataError(f"{what}: no image")
    if len(kinds) > 1:
        lines = "; ".join(f"{len(p)} x {c.describe()}, e.g. {p[:2]}" for c, p in kinds)
        raise InputDataError(
            f"{what} are of {len(kinds)} kinds: {lines}. A model learns one footprint, pixel size "
            "and kind of values: use images of one kind (chips.size_m, local_dirs pixel_size_m "
            "and encoding)"
        )
    return kinds[0][0]


def index_contract(rows: Iterable[Mapping], what: str) -> ImageContract:
    """The one contract of training-image index rows (``results/training_images/*_index.csv``: path, footprint_m,
    pixel_size_m, units, encoding; rows whose ``status`` is not ``ok`` are ignored).

    Checked where the training images are made and where both classes meet, so images of two kinds stop the run before
    statistics are computed over both and before an existing model is replaced. Raises InputDataError as
    :func:`common_contract` does, or naming an image whose row records no contract.
    """
    pairs = []
    for row in rows:
        if row.get("status", "ok") != "ok":
            continue
        # Empty CSV cells come back as NaN (a float, and truthy): only real values become tags.
        tags = {
            k: str(v)
            for k in ("footprint_m", "pixel_size_m", "units", "encoding")
            if (v := row.get(k)) is not None and not (isinstance(v, float) and math.isnan(v))
        }
        found = contract_from_tags(tags)
        if found is None:
            raise InputDataError(
                f"{what}: training image {row.get('path')} records no footprint_m / pixel_size_m / units: "
                "it was made before the footprint contract; rebuild the training images "
                "(snakemake -R fetch_training_images)"
            )
        pairs.append((row.get("path"), found))
    return common_contract(pairs, what)


# ---------------------------------------------------------------- the checkpoint and what it is applied to


def checkpoint_record(contract: ImageContract) -> dict:
    """Checkpoint keys of a training contract (CONTRACT_META)."""
    enc = ENCODINGS[contract.encoding].record() if contract.encoding else None
    return {
        "footprint_m": contract.footprint_m,
        "pixel_size_m": contract.pixel_size_m,
        "chip_px": contract.chip_px,
        "units": contract.units,
        "encoding": enc,
        "resize": dict(RESIZE),
    }


def per_chip_matching(meta: Mapping) -> bool:
    """Whether a checkpoint's training images were stretched one by one onto the positives' P2/P98
    (``matching.per_chip``); checkpoints written before the rename say ``per_tile``, and older ones nothing
    (they were matched per image)."""
    matching = meta.get("matching") or {}
    return bool(matching.get("per_chip", matching.get("per_tile", True)))


def model_contract(meta: Mapping) -> ImageContract:
    """The training contract a checkpoint records; raises ContractError for a checkpoint without one."""
    missing = [k for k in CONTRACT_META if k not in meta]
    if missing:
        raise ContractError(
            f"model {meta.get('model_id', '?')} records no {missing}: it was trained before the "
            "footprint and units contract, so what ground and values it expects is unknown; "
            "retrain it (snakemake -R train_classifier)"
        )
    enc = meta["encoding"]
    return ImageContract(
        float(meta["footprint_m"]),
        float(meta["pixel_size_m"]),
        str(meta["units"]),
        enc["name"] if isinstance(enc, Mapping) else enc or None,
    )


def _units_problem(model: ImageContract, units: str, where: str) -> list[str]:
    if units == model.units:
        return []
    return [
        f"model expects {model.units}{' (decoded from ' + model.encoding + ')' if model.encoding else ''} "
        f"but {where} is {units}; no conversion between them is documented: train on images of the same "
        "kind (training images fetched from this collection for surface_reflectance) or apply the model to imagery "
        "of its own kind"
    ]


def _resize_problem(meta: Mapping) -> list[str]:
    if dict(meta["resize"]) == RESIZE:
        return []
    return [f"model chips were resized with {meta['resize']}, this code resizes with {RESIZE}; retrain"]


def check_composite(
    meta: Mapping, chip_size_m: float, resolution_m: float, units: str, composite: str = "the composite"
) -> int:
    """Chip size (composite pixels) that gives the model the ground it was trained on; refuses a mismatch.

    ``chip_size_m``: config chips.size_m; ``resolution_m``: the composite's pixel size; ``units``: the
    composite's; ``composite``: how messages name it.
    Raises ContractError listing every disagreement and the key to change.
    """
    model = model_contract(meta)
    half = 0.5 * model.pixel_size_m
    problems = []
    if abs(float(chip_size_m) - model.footprint_m) > half:
        problems.append(
            f"model trained on {model.footprint_m:g} m chips at {model.pixel_size_m:g} m; config "
            f"chips.size_m is {float(chip_size_m):g}: set chips.size_m: {model.footprint_m:g} or retrain"
        )
    if abs(resolution_m - model.pixel_size_m) * model.chip_px > half:
        problems.append(
            f"model trained on {model.pixel_size_m:g} m pixels; {composite} has {resolution_m:g} m pixels: "
            "detection composites at 10 m, so retrain on 10 m images (local_dirs pixel_size_m)"
        )
    problems += _units_problem(model, units, composite) + _resize_problem(meta)
    if problems:
        raise ContractError(f"model {meta.get('model_id', '?')} does not fit {composite}: " + "; ".join(problems))
    return int(round(model.footprint_m / resolution_m))


def check_chips(meta: Mapping, chips: ImageContract, name: str) -> None:
    """Refuse to score chips of another footprint, pixel size or units than the model's.

    ``name``: what the chips are (e.g. "chip set heldout (evaluation.chip_sets.heldout)"). An 8-bit
    encoding only says how the values were obtained: chips decoded to the model's units are its kind.
    Raises ContractError naming the keys.
    """
    model = model_contract(meta)
    problems = []
    if not model.same_ground(chips):
        problems.append(
            f"model trained on {model.describe()}; {name} holds {chips.describe()}: use chips of the "
            "model's footprint and pixel size (or declare pixel_size_m with the folder if it is wrong)"
        )
    problems += _units_problem(model, chips.units, name) + _resize_problem(meta)
    if problems:
        raise ContractError(f"model {meta.get('model_id', '?')} does not fit {name}: " + "; ".join(problems))
