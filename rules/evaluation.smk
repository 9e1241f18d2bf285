# Score the trained classifier on labelled chip folders (config evaluation.chip_sets).


rule evaluate_chip_set:
    input:
        model="results/models/classifier/best_model.pth",
        stats="results/stats/positive.json",
        chips=chip_set_inputs,
    output:
        metrics="results/eval/{name}/metrics.json",
        pr_curve=report(
            "results/eval/{name}/pr_curve.png",
            caption="../report/pr_curve.rst",
            category="Evaluation",
            subcategory="{name}",
            labels={"chip set": "{name}", "result": "precision-recall curve"},
        ),
        gallery=report(
            "results/eval/{name}/gallery.png",
            caption="../report/gallery.rst",
            category="Evaluation",
            subcategory="{name}",
            labels={"chip set": "{name}", "result": "worst errors (gallery)"},
        ),
        scores=report(
            "results/eval/{name}/scores.csv",
            caption="../report/scores.rst",
            category="Evaluation",
            subcategory="{name}",
            labels={"chip set": "{name}", "result": "score per chip (CSV)"},
        ),
    log:
        "logs/evaluate_chip_set_{name}.log",
    benchmark:
        "benchmarks/evaluate_chip_set_{name}.tsv"
    wildcard_constraints:
        name="[A-Za-z0-9_.-]+",
    conda:
        "../envs/ml.yaml"
    threads: 2
    resources:
        mem_mb=3000,
        runtime=60,
        gpu=1,
    params:
        chip_set=chip_set,
        sources=lambda w: config["evaluation"]["sources"].get(w.name, []),
        threshold=config["detection"]["threshold"],
        batch_size=config["detection"]["batch_size"],
        tta=config["detection"]["tta"],
        matching=config["matching"],
        bootstrap=config["evaluation"]["bootstrap"],
    script:
        "../scripts/evaluate_chip_set.py"
