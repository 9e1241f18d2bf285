"""Rule evidence_thumbnails: a before | after true-colour thumbnail of each of the region's latest detections, cut
from the composites (the earliest clear period without the detection, and the first period with it), and their
index (id -> path, before, after) that the GIS exports and the web map reference."""

from collections import defaultdict
from pathlib import Path

from garimpo.publish.evidence import write_evidence
from garimpo.smk import setup_logging, write_json


def main(smk):
    log = setup_logging(smk)
    composites: dict[str, dict[str, str]] = defaultdict(dict)
    for path in smk.input.composites:  # results/regions/{region}/{period}/composites/{cell}.tif
        p = Path(path)
        composites[p.parent.parent.name][p.stem] = str(p)
    cfg = smk.params.evidence
    out_dir = Path(smk.output.folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    index = write_evidence(
        smk.input.detections,
        composites,
        list(smk.params.periods),
        out_dir,
        min_clear=float(cfg["min_clear"]),
        min_size_m=float(cfg["min_size_m"]),
        pad_m=float(cfg["pad_m"]),
        size_px=int(cfg["size_px"]),
        relative_to=Path(smk.output.index).parent,
    )
    write_json(smk.output.index, index)
    log.info(
        "%d thumbnails in %s; %d without an earlier clear view",
        len(index),
        out_dir,
        sum(1 for e in index.values() if e["before"] is None),
    )


if "snakemake" not in globals():  # standalone: python scripts/evidence_thumbnails.py region=NAME
    from garimpo.smk import standalone

    snakemake = standalone("evidence_thumbnails")
main(snakemake)
