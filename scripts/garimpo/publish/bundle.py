"""The release bundle's documents: STAC items per cell and period, pinned inputs, software versions, model card,
attribution and a sha256 manifest of every file.

A bundle (``results/publish/{region}/``) is what a user hands on with a published map: with it a reader can
check which scenes, inputs, model and software made each detection, and that no file changed since.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd
from scipy.stats import binomtest

from garimpo.atomic import atomic_path
from garimpo.errors import InputDataError
from garimpo.publish.manifest import sha256_of

# Distributions whose versions decide the numbers of a run (reading, warping, geometry, the model, the
# workflow engine); each is reported as installed, or "not installed" in the environment that wrote the bundle.
PACKAGES = (
    "numpy",
    "scipy",
    "pandas",
    "rasterio",
    "pyogrio",
    "shapely",
    "pyproj",
    "pystac",
    "pystac-client",
    "planetary-computer",
    "scikit-image",
    "torch",
    "torchvision",
    "snakemake",
    "XStatic-Leaflet",
)

# Attribution the data's licences require of anything published from them.
COPERNICUS = (
    "Contains modified Copernicus Sentinel data [{years}], processed with garimpo. Sentinel-2 L2A data: free, full "
    "and open access under the Legal Notice on the use of Copernicus Sentinel Data and Service Information "
    "(Commission Delegated Regulation (EU) No 1159/2013)."
)
LEAFLET = "Web map drawn with Leaflet 1.9.3 (BSD-2-Clause, (c) Volodymyr Agafonkin and contributors), bundled."


def stac_items_table(metas: Iterable[tuple[str, str, str | os.PathLike]]) -> pd.DataFrame:
    """One row per STAC item a composite was made of: ``period, cell, item_id, date, cloud_cover`` (percent,
    empty when the provider gave none), ``scale``, ``offset`` and ``radiometry_rule`` (how digital numbers became
    reflectance, ``garimpo.imagery.provenance.radiometry_record``; empty when bands differ or none applied) and
    ``source`` (the STAC service kind and collection).

    ``metas``: (period, cell, path of the composite's JSON sidecar, as ``composite_cell`` writes it). A cell
    with no usable scene in a period gives one row with an empty ``item_id``, so every (cell, period) is listed.
    Raises :class:`~garimpo.errors.InputDataError` when a sidecar is not JSON or lacks ``scene_ids``.
    """
    rows: list[dict] = []
    for period, cell, path in metas:
        try:
            meta = json.loads(Path(path).read_text())
            ids = list(meta["scene_ids"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputDataError(
                f"{path}: not a composite's metadata ({type(err).__name__}: {err}); delete it and rerun, "
                "Snakemake rebuilds the composite"
            ) from err
        dates = list(meta.get("dates") or [None] * len(ids))
        clouds = list(meta.get("cloud_cover") or [None] * len(ids))
        radiometry = list(meta.get("radiometry") or [{}] * len(ids))
        src = meta.get("source") or {}
        source = "/".join(str(src[k]) for k in ("kind", "collection") if src.get(k))
        if not ids:
            rows.append({"period": period, "cell": cell, "item_id": ""})
        for i, item in enumerate(ids):
            rad = radiometry[i] if i < len(radiometry) and isinstance(radiometry[i], Mapping) else {}
            rows.append(
                {
                    "period": period,
                    "cell": cell,
                    "item_id": item,
                    "date": dates[i] if i < len(dates) else None,
                    "cloud_cover": clouds[i] if i < len(clouds) else None,
                    "scale": rad.get("scale"),
                    "offset": rad.get("offset"),
                    "radiometry_rule": rad.get("rule"),
                    "source": source,
                }
            )
    columns = ["period", "cell", "item_id", "date", "cloud_cover", "scale", "offset", "radiometry_rule", "source"]
    return pd.DataFrame(rows, columns=columns)


def inputs_table(files: Iterable[tuple[str, str | os.PathLike]], downloads: Mapping[str, Mapping]) -> pd.DataFrame:
    """The input files of a run, pinned: ``key, path, bytes, sha256, url, licence, attribution``.

    ``files``: (config key, path) pairs; a file under ``resources/downloads/NAME`` takes its URL, licence and
    attribution from ``downloads[NAME]`` (config ``downloads.files``). A folder is listed file by file (sorted).
    The sha256 is of the bytes used now, so a file edited after its download shows a different hash from the
    pin. Raises :class:`~garimpo.errors.InputDataError` naming the key when a path does not exist.
    """
    rows = []
    seen = set()
    for key, path in files:
        p = Path(path)
        if not p.exists():
            raise InputDataError(f"{key}: {path} does not exist; the bundle pins the inputs the run used")
        members = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for q in members:
            if (key, str(q)) in seen:
                continue
            seen.add((key, str(q)))
            pin = downloads.get(q.name, {}) if q.parent.as_posix().endswith("resources/downloads") else {}
            rows.append(
                {
                    "key": key,
                    "path": str(q),
                    "bytes": q.stat().st_size,
                    "sha256": sha256_of(q),
                    "url": pin.get("url", ""),
                    "licence": pin.get("licence", ""),
                    "attribution": pin.get("attribution", ""),
                }
            )
    return pd.DataFrame(rows, columns=["key", "path", "bytes", "sha256", "url", "licence", "attribution"])


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def software_versions(root: str | os.PathLike, packages: Sequence[str] = PACKAGES) -> dict:
    """The software that wrote a bundle: Python and platform, each of ``packages`` (installed version, or
    ``"not installed"``), the GDAL libraries rasterio and pyogrio use and the PROJ library of pyproj, and the
    workflow's git commit (``dirty``: uncommitted changes) when ``root`` is a git checkout, else ``None``.

    The environment is the publishing job's own (``envs/publish.yaml``); the model's training software is in
    the model card (from the checkpoint's summary).
    """
    out: dict = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {},
    }
    for name in packages:
        try:
            out["packages"][name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out["packages"][name] = "not installed"
    try:
        import rasterio

        out["gdal"] = rasterio.__gdal_version__
    except ImportError:  # pragma: no cover - rasterio is in every geo environment
        out["gdal"] = None
    try:
        import pyogrio

        out["gdal_pyogrio"] = pyogrio.__gdal_version_string__  # its wheel carries its own GDAL
    except ImportError:  # pragma: no cover
        out["gdal_pyogrio"] = None
    try:
        import pyproj

        out["proj"] = pyproj.proj_version_str
    except ImportError:  # pragma: no cover
        out["proj"] = None
    commit = _git(Path(root), "rev-parse", "HEAD")
    status = _git(Path(root), "status", "--porcelain", "--untracked-files=no") if commit else None
    out["workflow"] = {"commit": commit, "dirty": bool(status) if commit else None}
    return out


def wilson_interval(successes: int, trials: int, level: float = 0.95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (``None`` when ``trials`` is 0), from scipy's
    ``binomtest(...).proportion_ci(method="wilson")``; recommended over the normal approximation for small
    counts (Brown, Cai & DasGupta 2001, Statistical Science 16(2))."""
    if trials <= 0:
        return None
    ci = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=level, method="wilson")
    return round(float(ci.low), 4), round(float(ci.high), 4)


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _metric_rows(m: Mapping) -> list[str]:
    """Markdown rows of precision, recall, specificity and F1 with Wilson intervals from the confusion counts."""
    tp, fp, tn, fn = (int(m.get(k, 0)) for k in ("tp", "fp", "tn", "fn"))
    rows = []
    for name, k, n in (
        ("precision", tp, tp + fp),
        ("recall (sensitivity)", tp, tp + fn),
        ("specificity", tn, tn + fp),
    ):
        ci = wilson_interval(k, n)
        value = k / n if n else None
        interval = f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else "n/a"
        rows.append(f"| {name} | {_fmt(value)} | {interval} | {k} / {n} |")
    rows.append(f"| F1 | {_fmt(m.get('f1'))} | (no closed form; see chip-set bootstrap below) | |")
    return rows


def model_card(
    summary: Mapping, evaluations: Mapping[str, Mapping] | None = None, region_eval: Mapping | None = None
) -> str:
    """A model card (Mitchell et al. 2019, "Model Cards for Model Reporting", FAT* '19) in Markdown.

    ``summary``: the training summary ``results/models/classifier/config.json``; ``evaluations``: chip-set
    reports (``results/eval/NAME/metrics.json``, with block-bootstrap intervals under ``ci``);
    ``region_eval``: object-level figures against a truth, when the region has one (the demo's
    ``results/eval/demo.json``). Validation intervals are Wilson 95 % intervals of the confusion counts
    (:func:`wilson_interval`). Raises :class:`~garimpo.errors.InputDataError` when ``summary`` lacks a key.
    """
    try:
        clf = summary["classifier"]
        data = summary["data"]
        model_id = summary["model_id"]
    except KeyError as err:
        raise InputDataError(f"training summary lacks {err}: rebuild results/models/classifier") from err
    thr = summary.get("threshold")
    val = summary.get("val_metrics") or {}
    val_tta = summary.get("val_metrics_tta") or {}
    lines = [
        f"# Model card: garimpo mining classifier `{model_id}`",
        "",
        "## Model",
        f"- Architecture: {clf.get('arch')} with one logit (binary cross-entropy), dropout {clf.get('dropout')}; "
        f"starting weights: {clf.get('weights')}.",
        f"- Input: bands {', '.join(summary.get('bands_model_order') or [])} of Sentinel-2 L2A surface "
        f"reflectance, chips resized to {clf.get('input_size')} px, each band stretched to the positives' P2/P98.",
        f"- Trained {summary.get('epochs_run')} epochs ({summary.get('stop_reason')}), best epoch "
        f"{summary.get('best_epoch')}, on {summary.get('device')} with {summary.get('threads')} threads in "
        f"{summary.get('train_minutes')} min.",
        "",
        "## Training data and split",
        f"- Training chips: {data.get('n_train')} ({data.get('n_train_pos')} mining, {data.get('n_train_neg')} "
        f"not mining; {data.get('n_train_augmented')} of them augmented copies).",
        f"- Validation chips: {data.get('n_val')} ({data.get('n_val_pos')} mining, {data.get('n_val_neg')} not "
        "mining). The split is by spatial group and made before augmentation, so nearby chips and augmented "
        "copies stay on one side.",
        "- Positives: known mine locations (see inputs.csv); negatives: random points in protected forest away "
        "from towns and known mines, plus the hard negatives listed in inputs.csv.",
        "",
        "## Operating threshold",
        f"- {_fmt(thr, 4)} (single view; {summary.get('threshold_method')}), "
        f"{_fmt(summary.get('threshold_tta'), 4)} with the 8-view average. Chosen on the validation scores.",
        "",
        "## Metrics on validation chips at the threshold (Wilson 95 % intervals)",
        "",
        "| metric | value | 95 % interval | counts |",
        "| --- | --- | --- | --- |",
        *_metric_rows(val),
        "",
    ]
    if val_tta:
        lines += [
            "With the 8-view average:",
            "",
            "| metric | value | 95 % interval | counts |",
            "| --- | --- | --- | --- |",
        ]
        lines += [*_metric_rows(val_tta), ""]
    for name, rep in sorted((evaluations or {}).items()):
        ci = rep.get("ci") or {}
        lines += [f"## Held-out chip set `{name}` ({rep.get('n', '?')} chips)", ""]
        lines += ["| metric | value | interval |", "| --- | --- | --- |"]
        for key in ("precision", "recall", "f1", "specificity", "pr_auc", "roc_auc"):
            iv = ci.get(key)
            text = f"{iv[0]:.3f}–{iv[1]:.3f}" if iv else "n/a"
            lines.append(f"| {key} | {_fmt(rep.get(key))} | {text} |")
        if ci.get("level"):
            lines.append(f"\nIntervals: {100 * ci['level']:.0f} % block bootstrap ({ci.get('resamples')} draws).")
        lines.append("")
    if region_eval:
        lines += ["## Object-level figures against the region's truth", "", "```json"]
        lines += [json.dumps(region_eval, indent=2, sort_keys=True), "```", ""]
    lines += [
        "## Intended use",
        "- Screening Sentinel-2 composites of the Amazon for open-pit and alluvial gold mining, to point analysts "
        "at places to check; each detection is a lead, not a proof. Check a detection on the imagery "
        "(the evidence thumbnails) before publishing it as mining.",
        "",
        "## Known failure modes",
        "- Riverbanks, sandbars, fish farms, farm ponds, landslides, quarries and fresh clear-cuts can look like "
        "mining at 10 m; recall and specificity drop on regions unlike the training data (scores shift low on "
        "unseen places).",
        "- Clouds and haze: a period with little clear ground sees little (see observed_fraction in the change "
        "products); detections near cloud edges are less reliable.",
        "- The mined area is at the resolution of the chips: a small pit can be over-estimated by up to one chip.",
        "",
    ]
    return "\n".join(lines)


def attribution_text(
    first_year: str, last_year: str, pinned: pd.DataFrame, extra: str = "", copernicus: bool = True
) -> str:
    """ATTRIBUTION.md of a bundle: Copernicus Sentinel data (with the years of the imagery; left out with
    ``copernicus=False``, for the synthetic demo world), every pinned input's licence and attribution (CC BY 4.0
    for Amazon Mining Watch inputs), the web map's library, the workflow's licence, and ``extra`` (config
    ``publishing.attribution``)."""
    years = first_year if first_year == last_year else f"{first_year}-{last_year}"
    lines = ["# Attribution and licences", ""]
    if copernicus:
        lines.append("- " + COPERNICUS.format(years=years))
    else:
        lines.append("- Imagery: the synthetic demo world (no Copernicus Sentinel data).")
    credited = pinned[pinned["attribution"].astype(str) != ""] if len(pinned) else pinned
    for (attribution, licence), group in credited.groupby(["attribution", "licence"]) if len(credited) else []:
        names = ", ".join(sorted(Path(p).name for p in group["path"]))
        lines.append(f"- {names}: {attribution}. Licence: {licence}.")
    lines += [
        "- " + LEAFLET,
        "- garimpo: MIT licence (see the workflow's LICENSE).",
    ]
    if extra:
        lines += ["", extra]
    return "\n".join(lines) + "\n"


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
