"""Rule release_bundle: the documents of results/publish/{region}/ (model card, config used, pinned inputs,
STAC items per cell and period, software versions, attribution, a README of the bundle) and its manifest."""

import json
import shutil
from pathlib import Path

import yaml

from garimpo.atomic import atomic_path
from garimpo.publish.bundle import (
    attribution_text,
    inputs_table,
    model_card,
    software_versions,
    stac_items_table,
    write_text,
)
from garimpo.publish.manifest import write_manifest
from garimpo.smk import REPO_ROOT, setup_logging, write_csv, write_json

README = """# Published results: {region}

{banner}Mining detections of region `{region}` by garimpo, periods {periods}; the latest period is {latest}.

- `{region}.geojson`: the latest period's detections (RFC 7946, lon/lat), with status, first_detected and
  last_detected
- `{region}.gpkg`: the same, every period's detections, new mining per period, the cumulative footprint, the
  protected areas and the region, one layer each (flat fields: lists as "; "-joined text)
- `{region}.kml`: the same layers, as folders, for Google Earth
- `{region}_detections.csv`: one row per detection: id, centroid lon/lat, area_ha, score, status, first and last
  detected period, the protected areas it lies in, its evidence thumbnail
- `{region}_map.html`: an offline web map; open it in a browser, no internet needed
- `evidence/`, `evidence.json`: a before/after true-colour thumbnail of each detection, cut from the composites
- `report.zip`: the Snakemake report (maps, tables, curves, with captions), added by `make publish`
- `MODEL_CARD.md`: the classifier: training data, split, metrics with intervals, threshold, intended use,
  known failure modes
- `config.yaml`: the configuration of the run
- `inputs.csv`: every input file with its sha256 (and URL, licence and attribution of pinned downloads)
- `stac_items.csv`: the Sentinel-2 STAC items each cell's composite was made of, per period
- `software.json`: the versions of the software that wrote the bundle, and the workflow's git commit
- `ATTRIBUTION.md`: the credits and licences of the data
- `MANIFEST.sha256`: the sha256 of every file here; check with `sha256sum -c MANIFEST.sha256`

Property names and decisions (new / persisting / unknown, thresholds) are explained in the workflow's README.
"""

# Put first in the bundle's README and model card when the run read the demo world's catalog.
SYNTHETIC = (
    "> **Synthetic demo.** Everything in this bundle was made from garimpo's offline demo world: synthetic imagery\n"
    "> and synthetic truth, no Sentinel-2 data and no real place. It shows what a bundle holds, not real mining.\n\n"
)


def main(smk):
    log = setup_logging(smk)
    region = smk.wildcards.region
    out = Path(smk.output.manifest).parent
    periods = list(smk.params.periods)
    with atomic_path(smk.output.geojson) as tmp:
        shutil.copyfile(smk.input.latest, tmp)

    summary = json.loads(Path(smk.input.summary).read_text())
    evaluations = {
        name: json.loads(Path(path).read_text()) for name, path in zip(smk.params.chip_sets, smk.input.chip_set_reports)
    }
    region_eval = json.loads(Path(smk.input.region_eval[0]).read_text()) if smk.input.region_eval else None
    banner = SYNTHETIC if smk.params.synthetic else ""
    write_text(smk.output.model_card, banner + model_card(summary, evaluations, region_eval))

    with atomic_path(smk.output.config) as tmp, open(tmp, "w") as fh:
        yaml.safe_dump(dict(smk.params.config), fh, sort_keys=False, allow_unicode=True)

    cfg = smk.params.config
    files = [(key, smk.input[key]) for key in smk.params.input_keys]
    files += [("model", smk.input.model), ("positive statistics", smk.input.stats)]
    pinned = inputs_table(files, cfg["downloads"]["files"])
    write_csv(smk.output.inputs, pinned)

    metas = [Path(p) for p in smk.input.composite_metas]
    stac = stac_items_table((m.parent.parent.name, m.stem, m) for m in metas)
    write_csv(smk.output.stac_items, stac)

    write_json(smk.output.software, software_versions(REPO_ROOT))
    write_text(
        smk.output.attribution,
        attribution_text(
            periods[0]["start"][:4],
            periods[-1]["end"][:4],
            pinned,
            cfg["publishing"]["attribution"],
            copernicus=not smk.params.synthetic,
        ),
    )
    names = [p["name"] for p in periods]
    write_text(
        smk.output.readme, README.format(region=region, banner=banner, periods=", ".join(names), latest=names[-1])
    )
    write_manifest(out)
    log.info(
        "%s: bundle of %d files; %d inputs pinned, %d STAC item rows",
        out,
        sum(1 for p in out.rglob("*") if p.is_file()),
        len(pinned),
        len(stac),
    )


if "snakemake" not in globals():  # standalone: python scripts/release_bundle.py region=NAME
    from garimpo.smk import standalone

    snakemake = standalone("release_bundle")
main(snakemake)
