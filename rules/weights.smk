# Pre-fetch model weights once (needs internet) so cluster compute nodes need none.


localrules:
    fetch_imagenet_weights,
    fetch_segformer,


rule fetch_imagenet_weights:
    output:
        "resources/weights/{arch}-imagenet.pth",
    log:
        "logs/fetch_imagenet_weights_{arch}.log",
    benchmark:
        "benchmarks/fetch_imagenet_weights_{arch}.tsv"
    conda:
        "../envs/ml.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=15,
    params:
        arch=lambda w: w.arch,
    script:
        "../scripts/fetch_imagenet_weights.py"


rule fetch_segformer:
    output:
        directory("resources/models/segformer"),
    log:
        "logs/fetch_segformer.log",
    benchmark:
        "benchmarks/fetch_segformer.tsv"
    conda:
        "../envs/ml.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=15,
    params:
        model_id=config["proposer"]["segformer"]["hub_id"],
        suspicious_classes=config["proposer"]["segformer"]["suspicious_classes"],
    script:
        "../scripts/fetch_segformer.py"
