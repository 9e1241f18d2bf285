# The stage-two classifier: ResNet fine-tuned on the matched, augmented training images.


rule train_classifier:
    input:
        split="results/split.csv",
        stats="results/stats/positive.json",
        pos_aug="results/training_images/pos_augmented",
        neg_aug="results/training_images/neg_augmented",
        weights=imagenet_weights,
    output:
        best="results/models/classifier/best_model.pth",
        final="results/models/classifier/final_model.pth",
        history="results/models/classifier/training_history.json",
        config="results/models/classifier/config.json",
        curves=report(
            "results/models/classifier/training_curves.png",
            caption="../report/training_curves.rst",
            category="Classifier",
            labels={"result": "training curves"},
        ),
    log:
        "logs/train_classifier.log",
    benchmark:
        "benchmarks/train_classifier.tsv"
    conda:
        "../envs/ml.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=720,
        gpu=1,
    params:
        classifier=config["classifier"],
        matching=config["matching"],
    script:
        "../scripts/train_classifier.py"
