"""Rule evaluate_chip_set: score the trained classifier on a labelled folder of chips."""

import json

import torch

from garimpo.classifier.evaluation import (
    chip_set_contract,
    evaluate_chip_set,
    load_chip_set,
    plot_gallery,
    plot_pr_curve,
    select_sources,
)
from garimpo.classifier.model import load_classifier
from garimpo.contract import check_chips, image_folder
from garimpo.smk import setup_logging, write_csv, write_json


def main(smk):
    log = setup_logging(smk)
    torch.set_num_threads(max(1, int(smk.threads)))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, meta = load_classifier(smk.input.model, device=device)
    with open(smk.input.stats) as fh:
        stats = json.load(fh)
    name = smk.wildcards.get("name", "")
    folder = image_folder(smk.params.chip_set, f"evaluation.chip_sets.{name}")
    chip_dir = folder.path
    matching = smk.params.get("matching") or {}
    sources = list(smk.params.get("sources") or [])
    chips = select_sources(load_chip_set(chip_dir), sources, name)
    # Chips of another footprint, pixel size or units than the model learnt are refused before any is scored.
    check_chips(meta, chip_set_contract(chips["path"], folder, meta["bands"]), f"chip set {name} ({folder.key})")
    log.info(
        "evaluating model %s on %d chips from %s (%d positive) on %s",
        meta.get("model_id"),
        len(chips),
        chip_dir,
        int(chips["label"].sum()),
        device,
    )
    report = evaluate_chip_set(
        model,
        meta,
        chips,
        stats,
        threshold=smk.params.threshold,
        batch_size=int(smk.params.batch_size),
        device=device,
        tta=bool(smk.params.get("tta", False)),
        p_low=float(matching.get("p_low", 2.0)),
        p_high=float(matching.get("p_high", 98.0)),
        bootstrap=dict(smk.params.bootstrap),
        encoding=folder.encoding,
        key=folder.key,
    )
    report = {
        "chip_set": name,
        "chip_dir": str(chip_dir),
        "encoding": folder.encoding,
        "model_id": meta.get("model_id"),
        "tta": bool(smk.params.get("tta", False)),
        "sources": sources,
        **report,
    }
    log.info(
        "precision %.3f recall %.3f f1 %.3f pr_auc %s roc_auc %s at threshold %.3f",
        report["precision"],
        report["recall"],
        report["f1"],
        report["pr_auc"],
        report["roc_auc"],
        report["threshold"],
    )
    ci = report["ci"]
    if ci.get("f1") is not None:
        log.info(
            "%.0f %% intervals (%d block-bootstrap draws, blocks of %d): f1 %.3f-%.3f, specificity %.3f-%.3f, "
            "pr_auc %.3f-%.3f",
            100 * ci["level"],
            ci["resamples"],
            ci["block"],
            *ci["f1"],
            *ci["specificity"],
            *ci["pr_auc"],
        )
    write_json(smk.output.metrics, report)
    # Every chip's score, so that any figure (another threshold, another grouping) can be redone.
    chips["predicted"] = (chips["score"] >= report["threshold"]).astype(int)
    write_csv(smk.output.scores, chips)
    plot_pr_curve(chips["label"], chips["score"], report["threshold"], smk.output.pr_curve)
    plot_gallery(chips, smk.output.gallery, n=16, threshold=report["threshold"])


if "snakemake" not in globals():  # standalone: python scripts/evaluate_chip_set.py name=NAME
    from garimpo.smk import standalone

    snakemake = standalone("evaluate_chip_set")
main(snakemake)
