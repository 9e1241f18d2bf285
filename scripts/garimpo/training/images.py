"""Building the training images: fetch around points, import local folders, match, split, augment."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from garimpo.contract import ENCODINGS, ImageContract, ImageFolder, collection_units, image_contract, image_folder
from garimpo.errors import FolderInTheWayError, InputDataError, NoImageryError
from garimpo.geo.raster import (
    EIGHT_BIT_SUFFIXES,
    IMAGE_SUFFIXES,
    Grid,
    band_names,
    image_bands,
    image_georeferencing,
    point_grid,
    read_error_text,
    read_header,
    read_image,
    read_raster,
    write_raster,
)
from garimpo.imagery.composite import fetch_composite
from garimpo.imagery.provenance import provenance, radiometry_record
from garimpo.imagery.stac import ImageryRequest, Source, with_fresh_search
from garimpo.pixels.matching import reference_bounds, stretch_to_reference
from garimpo.training.augment import AugmentParams, augment
from garimpo.training.split import assign_split

log = logging.getLogger(__name__)

# The last four are the image's contract (garimpo.contract): ground per side, pixel size, units, 8-bit encoding.
CONTRACT_COLUMNS = ["footprint_m", "pixel_size_m", "units", "encoding"]
INDEX_COLUMNS = [
    "image_id",
    "path",
    "lon",
    "lat",
    "source",
    "scene_ids",
    "dates",
    "cloud_cover",
    "status",
    *CONTRACT_COLUMNS,
]


def _item_version(item) -> str:
    """What changes when an item's pixels can change: its ``updated`` stamp, or a local file's mtime."""
    updated = item.properties.get("updated", "")
    href = item.get_self_href()
    if href and os.path.exists(href):
        updated += f"@{os.stat(href).st_mtime_ns}"
    return f"{item.id}:{updated}"


def _cache_key(source: Source, request: ImageryRequest, grid, items) -> str:
    """Everything that shapes a training image's pixels, including which scene versions were found and the
    radiometry rule each one's metadata implies for the requested bands.

    Keying on the scenes (not only the place) means a regenerated or reprocessed catalog
    is never served from a stale cache; keying on the rule, that an image made under an older
    reading of the offset is made again.
    """
    scenes = sorted(
        f"{_item_version(i)}:{json.dumps(_radiometry_or_fault(i, request.bands, source.sensor), sort_keys=True)}"
        for i in items
    )
    blob = json.dumps(
        [
            source.kind,
            source.url,
            source.collection,
            list(request.bands),
            request.composite,
            request.max_scenes,
            request.cloud_buffer_m,
            grid.crs,
            list(grid.transform)[:6],
            grid.width,
            grid.height,
            scenes,
        ]
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _radiometry_or_fault(item, bands, sensor) -> dict:
    """The item's radiometry record, or its metadata fault (an item skipped at read time)."""
    try:
        return radiometry_record(item, bands, sensor)
    except InputDataError as err:
        return {"item": item.id, "fault": str(err)}


def fetch_training_images(
    points: pd.DataFrame,
    source: Source,
    request: ImageryRequest,
    size_m: float,
    out_dir: str | Path,
    cache_dir: str | Path,
    skip_missing: bool = True,
) -> pd.DataFrame:
    """One training image (a composite of ``size_m`` ground) around each point; returns the index.

    Each finished image is kept in ``cache_dir`` under a key of everything that shapes
    it, so a killed run resumes where it stopped and reruns fetch nothing twice.
    A point without a clear scene is logged and listed with status ``no_imagery``. Items from the
    STAC search cache that cannot be read are searched again once
    (:func:`garimpo.imagery.stac.with_fresh_search`); a folder where an image's cache file goes is refused.
    Images are tagged (and indexed) with their contract: ``size_m`` of ground at 10 m, in the
    units of the source's collection (surface_reflectance for L2A).

    Raises:
        NoImageryError: no point got a training image (a point without one is raised unless ``skip_missing``).
        FolderInTheWayError: a folder sits where an image's cache file goes.
        ImageryAccessError: the STAC API or an asset stays unreachable after the retries.
    """
    out_dir, cache_dir = Path(out_dir), Path(cache_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    units = collection_units(source.collection)
    rows = []
    for rec in points.itertuples(index=False):
        row = {"image_id": rec.point_id, "lon": rec.lon, "lat": rec.lat, "source": rec.source}
        grid = point_grid(rec.lon, rec.lat, size_m)
        contract = ImageContract(grid.width * grid.resolution, grid.resolution, units).tags()
        try:
            cached, tags = with_fresh_search(
                source,
                grid.bbox_lonlat(),
                request,
                partial(_point_image, source, request, grid, cache_dir=cache_dir, contract=contract),
            )
        except NoImageryError as exc:
            if not skip_missing:
                raise
            log.warning("point %s (%.5f, %.5f): %s", rec.point_id, rec.lon, rec.lat, exc)
            rows.append({**row, "path": "", "scene_ids": "", "dates": "", "cloud_cover": "", "status": "no_imagery"})
            continue
        dest = out_dir / f"{rec.point_id}.tif"
        _link_or_copy(cached, dest)
        rows.append(
            {
                **row,
                "path": str(dest),
                "scene_ids": tags.get("scene_ids", ""),
                "dates": tags.get("dates", ""),
                "cloud_cover": tags.get("cloud_cover", ""),
                "status": "ok",
                **contract,
            }
        )
    index = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    n_ok = int((index["status"] == "ok").sum())
    log.info("%d of %d points have a training image in %s", n_ok, len(index), out_dir)
    if n_ok == 0 and len(index):
        raise NoImageryError(f"no point got a training image; see the log for each point. Output folder: {out_dir}")
    return index


def _point_image(
    source: Source, request: ImageryRequest, grid: Grid, items: list, cache_dir: Path, contract: Mapping[str, str]
) -> tuple[Path, dict]:
    """(cache file, its tags) of one point's composite of ``items``: the cached image, or a new one.

    Raises NoImageryError when no item is usable or clear, ImageryAccessError when one cannot be read.
    """
    cached = cache_dir / f"{_cache_key(source, request, grid, items)}.tif"
    if cached.is_dir():  # never deleted here: it may hold anything
        raise FolderInTheWayError(cached, "training image cache")
    tags = _cached_image_tags(cached, grid, request.bands, contract) if cached.exists() else None
    if tags is None:
        image, used = fetch_composite(source, request, grid, items)
        prov = provenance(used, request.bands, source.sensor)
        tags = {
            "scene_ids": ";".join(prov["scene_ids"]),
            "dates": ";".join(prov["dates"]),
            "cloud_cover": ";".join(str(c) for c in prov["cloud_cover"]),
            "radiometry": json.dumps(prov["radiometry"]),
            **contract,
        }
        write_raster(cached, image, grid.crs, grid.transform, request.bands, tags=tags)
    if any(tags.get(k) != v for k, v in contract.items()):  # cached before images carried their contract
        _update_tags(cached, contract)
    return cached, tags


def _cached_image_tags(path: Path, grid: Grid, bands: Sequence[str], contract: Mapping[str, str]) -> dict | None:
    """The tags of a cached training image, or None when it cannot be used: then it is deleted (with a warning)
    and rebuilt.

    A cache entry is only trusted when it reads in full (a truncated file fails here, not in every rerun) and
    has the grid, bands and contract its key stands for; contract tags it lacks (images cached before images
    carried their contract) are not a fault, the caller adds them.
    """
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as src:
            tags = dict(src.tags())
            problem = _cached_image_problem(src, tags, grid, bands, contract)
            if problem is None:
                src.read()  # every block: a cut-short file fails now
                return tags
    except (RasterioError, OSError) as err:
        problem = read_error_text(err)
    log.warning("cached training image %s cannot be used (%s): deleted, fetching the image again", path, problem)
    path.unlink(missing_ok=True)
    return None


def _cached_image_problem(src, tags: Mapping, grid: Grid, bands: Sequence[str], contract: Mapping) -> str | None:
    from rasterio.crs import CRS

    names = list(band_names(src))
    if names != list(bands):
        return f"bands {names}, expected {list(bands)}"
    if (src.height, src.width) != (grid.height, grid.width):
        return f"{src.height} x {src.width} px, expected {grid.height} x {grid.width}"
    if src.crs != CRS.from_user_input(grid.crs) or not src.transform.almost_equals(grid.transform):
        return f"grid {src.crs} {tuple(src.transform)[:6]}, expected {grid.crs} {tuple(grid.transform)[:6]}"
    wrong = {k: tags[k] for k, v in contract.items() if k in tags and tags[k] != v}
    if wrong:
        return f"tags {wrong}, expected {dict(contract)}"
    return None


def _update_tags(path: Path, tags: Mapping[str, str]) -> None:
    import rasterio

    with rasterio.open(path, "r+") as dst:
        dst.update_tags(**tags)


def _link_or_copy(src: Path, dest: Path) -> None:
    if dest.exists():
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def manifest_sources(folder: Path) -> dict[Path, str]:
    """Source list of each image, from a ``manifest.csv`` (columns path, source) in the folder or its parent.

    Chips of one source list share places and scenes, so the split keeps them together.
    """
    for manifest in (folder / "manifest.csv", folder.parent / "manifest.csv"):
        if manifest.is_file():
            df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
            if {"path", "source"} <= set(df.columns):
                return {(manifest.parent / p).resolve(): src for p, src in zip(df["path"], df["source"])}
    return {}


def local_image_id(prefix: str, folder: Path, path: Path) -> str:
    """A local image's id: ``{prefix}-{folder name}-{path in the folder, without suffix}``, subfolders
    joined by ``__`` (``local-chips-a__x`` for ``chips/a/x.tif``; ``local-chips-x`` for ``chips/x.tif``)."""
    return f"{prefix}-{folder.name}-{'__'.join(path.relative_to(folder).with_suffix('').parts)}"


def import_local_images(
    folders: Sequence[str | Path | Mapping | ImageFolder],
    out_dir: str | Path,
    source_prefix: str = "local",
    key: str = "local_dirs",
    bands: Sequence[str] = (),
) -> pd.DataFrame:
    """Copy images from local folders in as float training images (the method's "copy local images" path).

    ``folders``: plain paths or mappings ``{path, encoding, pixel_size_m, units}`` (``key`` names them in
    errors, e.g. positives.local_dirs). GeoTIFFs keep their bands and georeferencing; 8-bit images
    (PNG/JPEG chips) are decoded to reflectance by their folder's encoding (AMW chips: B04, B03, B02 in
    TOA reflectance = value / 255 * 0.3). Which kinds of image are read, converted (alpha -> NaN) or
    refused is :func:`garimpo.geo.raster.read_image`'s. ``bands``: the bands every image must carry (config
    classifier.bands). Each image is tagged and indexed with its contract: footprint and pixel size (from
    a projected georeferencing in metres, else the folder's pixel_size_m), units and encoding. The
    source of each image is its manifest's source list when there is one, else the folder name. Raises
    InputDataError for a missing or empty folder, 8-bit images without an encoding, and for images of a
    kind that is refused or that cannot be read, images without ``bands`` or without a known pixel size,
    and two files that would make one training image (:func:`local_image_id`): all such images at once, the first 10
    named. An image's kind, size, bands and contract are checked from its header, before its pixels are read.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, problems = [], []
    taken: dict[str, Path] = {}  # image id -> the file it is made of
    for spec in folders:
        folder = image_folder(spec, key)
        if not folder.path.is_dir():
            raise InputDataError(f"local image folder {folder.path} not found; fix {key}")
        files = sorted(p for p in folder.path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputDataError(f"local image folder {folder.path} holds no {'/'.join(IMAGE_SUFFIXES)} file")
        # PNG/JPEG are 8-bit renderings unless their header says otherwise (a 16-bit PNG is refused below).
        rendered = (
            None
            if folder.encoding
            else next(
                (p for p in files if p.suffix.lower() in EIGHT_BIT_SUFFIXES and read_header(p, key).eight_bit), None
            )
        )
        if rendered:
            raise InputDataError(
                f"local image folder {folder.path} holds 8-bit images (e.g. {rendered.name}): a rendering, not "
                f"reflectance. Declare their encoding in {key}, e.g. {folder.spec} (known encodings: "
                f"{sorted(ENCODINGS)})"
            )
        sources = manifest_sources(folder.path)
        for path in files:
            image_id = local_image_id(source_prefix, folder.path, path)
            dest = out_dir / f"{image_id}.tif"
            if image_id in taken:  # two files, one image: one would overwrite the other
                problems.append(
                    f"{path} and {taken[image_id]} (from {key}) would both become training image {image_id} "
                    f"({dest}), one overwriting the other: rename one of them (a local training image is named by "
                    "its folder's name and its path in that folder, without the suffix)"
                )
                continue
            taken[image_id] = path
            try:  # every unusable image is listed at the end, not one per run
                # Its kind, size, bands and contract from its header, before any pixel is decoded.
                head = read_header(path, key)
                _, names = image_bands(path, head, folder.encoding, key)
                missing = [b for b in bands if b not in names]
                if missing:
                    raise InputDataError(
                        f"{path} (from {key}) has bands {list(names)}, without {missing} that the classifier "
                        f"reads (classifier.bands {list(bands)}): give the image those bands, or leave it out"
                    )
                contract = image_contract(path, head.shape, *image_georeferencing(path, head), folder).tags()
                r = read_image(path, folder.encoding, key)
            except InputDataError as err:
                problems.append(str(err))
                continue
            write_raster(dest, r.array, r.crs, r.transform, r.band_names, tags=contract)
            source = sources.get(path.resolve(), folder.path.name)
            rows.append(
                {
                    "image_id": image_id,
                    "path": str(dest),
                    "lon": np.nan,
                    "lat": np.nan,
                    "source": source,
                    "scene_ids": "",
                    "dates": "",
                    "cloud_cover": "",
                    "status": "ok",
                    **contract,
                }
            )
    if len(problems) == 1:
        raise InputDataError(problems[0])
    if problems:
        more = f"\n... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise InputDataError(
            f"{len(problems)} images of {key} cannot be used; fix or remove each:\n" + "\n".join(problems[:10]) + more
        )
    return pd.DataFrame(rows, columns=INDEX_COLUMNS)


def iter_training_images(index: pd.DataFrame):
    """(array, band names) of every usable training image in an index, one at a time."""
    for path in index.loc[index["status"] == "ok", "path"]:
        r = read_raster(path)
        yield r.array, r.band_names


def match_training_images(
    index: pd.DataFrame, stats: Mapping, out_dir: str | Path, p_low=2.0, p_high=98.0, per_chip: bool = True
) -> pd.DataFrame:
    """Stretch every training image onto the positives' P2/P98; returns the index of matched images.

    With ``per_chip`` false the images are linked in unchanged (see config ``matching.per_chip``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for rec in index[index["status"] == "ok"].to_dict("records"):
        if not per_chip:
            dest = out_dir / Path(rec["path"]).name
            _link_or_copy(Path(rec["path"]), dest)
            rows.append({**rec, "path": str(dest)})
            continue
        r = read_raster(rec["path"])
        low, high = reference_bounds(stats, r.band_names)
        matched = stretch_to_reference(r.array, low, high, p_low, p_high)
        dest = out_dir / Path(rec["path"]).name
        write_raster(dest, matched, r.crs, r.transform, r.band_names, tags=r.tags)
        rows.append({**rec, "path": str(dest)})
    return pd.DataFrame(rows, columns=INDEX_COLUMNS)


def split_and_augment(
    positives: pd.DataFrame,
    negatives: pd.DataFrame,
    stats: Mapping,
    pos_aug_dir: str | Path,
    neg_aug_dir: str | Path,
    val_fraction: float,
    block_m: float,
    params: AugmentParams,
    seed: int = 0,
    test_sources: Sequence[str] = (),
    run_length: int | None = None,
    threads: int = 1,
) -> pd.DataFrame:
    """Split matched training images by spatial block (and held-out sources), then augment only the training rows.

    Returns the split table: path, label, split, group, source, augmented.  The copies are drawn in
    one thread, in table order (the same files for any ``threads``); ``threads`` writers save them,
    since writing the GeoTIFFs takes most of the time.
    """
    both = pd.concat([positives.assign(label=1), negatives.assign(label=0)], ignore_index=True)
    split, groups = assign_split(both, val_fraction, block_m, seed, test_sources, run_length)
    table = pd.DataFrame(
        {
            "path": both["path"],
            "label": both["label"],
            "split": split,
            "group": groups,
            "source": both["source"],
            "augmented": False,
        }
    )
    rng = np.random.default_rng(seed)
    extra = []
    with ThreadPoolExecutor(max(1, int(threads))) as pool:
        pending: deque[Future] = deque()
        for rec in table[table["split"] == "train"].to_dict("records"):
            r = read_raster(rec["path"])
            low, high = reference_bounds(stats, r.band_names)
            out_dir = Path(pos_aug_dir if rec["label"] == 1 else neg_aug_dir)
            for k in range(params.copies):
                dest = out_dir / f"{Path(rec['path']).stem}_aug{k}.tif"
                pending.append(
                    pool.submit(
                        write_raster,
                        dest,
                        augment(r.array, rng, params, low, high),
                        r.crs,
                        r.transform,
                        r.band_names,
                        tags=r.tags,
                    )
                )
                extra.append({**rec, "path": str(dest), "augmented": True})
            while len(pending) > 64:  # bounded memory; result() re-raises a failed write here
                pending.popleft().result()
        for fut in pending:
            fut.result()
    Path(pos_aug_dir).mkdir(parents=True, exist_ok=True)
    Path(neg_aug_dir).mkdir(parents=True, exist_ok=True)
    return pd.concat([table, pd.DataFrame(extra, columns=table.columns)], ignore_index=True)


def write_chip_manifest(table: pd.DataFrame, split: str, folder: str | Path) -> Path:
    """``folder/manifest.csv`` (path,label,source) of one split's un-augmented training images: a chip set for
    evaluation.

    Paths are relative to the manifest's folder, as chip-set manifests are read.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = table[(table["split"] == split) & ~table["augmented"].astype(bool)]
    out = pd.DataFrame(
        {
            "path": [os.path.relpath(Path(p).resolve(), folder.resolve()) for p in rows["path"]],
            "label": np.where(rows["label"].astype(int) == 1, "positive", "negative"),
            "source": rows["source"].to_numpy(),
        }
    )
    path = folder / "manifest.csv"
    out.to_csv(path, index=False)
    return path
