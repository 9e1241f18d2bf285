"""Rule detect_cell: scan one grid cell's composite (two-stage or brute force) -> the scores of every chip
classified."""

import json
import os

# Before torch loads OpenMP: idle classifier threads sleep instead of spinning, leaving the core to the
# thread that reads and proposes the next block (measured in the bench: faster in both modes).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from garimpo.detection.chip_scores import config_hash, save_chip_scores  # noqa: E402 (after the OMP setting)
from garimpo.detection.chips import composite_chip_px  # noqa: E402
from garimpo.detection.coverage import clear_pixel_counts, unit_px  # noqa: E402
from garimpo.smk import setup_logging  # noqa: E402


def main(smk):
    log = setup_logging(smk)
    import torch

    from garimpo.classifier.model import load_classifier
    from garimpo.detection.scan import brute_force_scan, two_stage_scan

    torch.set_num_threads(max(1, int(smk.threads)))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, meta = load_classifier(smk.input.model, device)
    scan, proposer = smk.params.scan, smk.params.proposer
    with open(smk.input.stats) as fh:
        stats = json.load(fh)
    with open(smk.input.meta) as fh:
        composite_meta = json.load(fh)
    # The model must see the ground it learnt (footprint, pixel size, units): refused here, before any scan.
    chip_px = composite_chip_px(meta, smk.input.composite, composite_meta, float(smk.params.chip_size_m))
    log.info(
        "model %s: %s chips of %d px, resized to %d px",
        meta["model_id"],
        meta["units"],
        chip_px,
        int(meta["input_size"]),
    )
    common = dict(
        chip_px=chip_px,
        stride=scan["stride_px"],
        block_px=int(scan["block_px"]),
        batch_size=int(scan["batch_size"]),
        precision=scan["precision"],
        tta=bool(scan["tta"]),
        stats=stats,
        device=device,
        threads=max(1, int(smk.threads)),
    )
    # The previous period's composite (proposer.earlier_reference): absent for the first period, and for
    # scans that would not read it (the input function decides): an empty named input comes as [], not a path.
    earlier = smk.input.get("reference")
    reference = str(earlier) if isinstance(earlier, str) and earlier else None
    if proposer.get("earlier_reference") and scan["mode"] == "two_stage":
        log.info("earlier reference: %s", reference or "none (first period, or a proposer without a use for it)")
    if scan["mode"] == "brute_force":
        result = brute_force_scan(smk.input.composite, model, meta, **common)
    else:
        from garimpo.detection.proposers import get as get_proposer

        segformer = None
        if get_proposer(proposer["method"]).needs_model:  # segformer, union: the SegFormer they run
            from garimpo.detection.segformer import SegformerProposer

            seg = proposer["segformer"]
            segformer = SegformerProposer.from_pretrained(
                seg["local_dir"], suspicious_classes=seg["suspicious_classes"]
            )
        result = two_stage_scan(
            smk.input.composite,
            model,
            meta,
            proposer=proposer,
            proposer_model=segformer,
            decimate=int(scan["proposer_decimate"]),
            select=scan["select"],
            reference=reference,
            **common,
        )
    # What the composite saw, per unit square of the lattice: the change products tell "not detected" from
    # "not seen" with it (garimpo.detection.coverage).
    result.unit_px = unit_px(result.chip_px, result.stride)
    result.clear_px = clear_pixel_counts(smk.input.composite, result.unit_px, meta["bands"])
    log.info("cell %s: %s", smk.wildcards.cell, result.summary())
    provenance = {
        "cell": smk.wildcards.cell,  # the key garimpo.detection.merge reads the cell id from
        "period": smk.wildcards.period,
        "scene_ids": composite_meta["scene_ids"],
        "dates": composite_meta["dates"],
        "model_id": meta["model_id"],
        "config_hash": config_hash({**scan, "proposer": proposer}),
        "mode": scan["mode"],
        "reference": reference,  # the earlier composite the proposer compared with, or None
    }
    save_chip_scores(smk.output[0], result, provenance)


if "snakemake" not in globals():  # standalone: python scripts/detect_cell.py region=NAME period=P cell=E0001S0001
    from garimpo.smk import standalone

    snakemake = standalone("detect_cell")
main(snakemake)
