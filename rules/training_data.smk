# Training data: positive and negative points -> training images -> statistics -> matching -> split +
# augmentation.


rule positive_points:
    input:
        point_files(config["positives"]["points"]),
    output:
        points="results/points/positive.csv",
        rejected="results/points/positive_rejected.csv",
    log:
        "logs/positive_points.log",
    benchmark:
        "benchmarks/positive_points.tsv"
    conda:
        "../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        inputs=config["positives"]["points"],
        bounds=config["study_bounds"],
    script:
        "../scripts/positive_points.py"


rule negative_points:
    input:
        mines="results/points/positive.csv",
        protected=vector_file(config["negatives"]["protected_areas"]),
        urban=vector_file(config["negatives"]["urban_mask"]),
        hard=point_files(config["negatives"]["hard_negative_points"]),
    output:
        points="results/points/negative.csv",
        rejected="results/points/negative_rejected.csv",
    log:
        "logs/negative_points.log",
    benchmark:
        "benchmarks/negative_points.tsv"
    conda:
        "../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        bounds=config["study_bounds"],
        ratio=config["negatives"]["ratio"],
        min_distance_m=config["negatives"]["min_distance_m"],
        hard_points=config["negatives"]["hard_negative_points"],
        protected_layer=vector_layer(config["negatives"]["protected_areas"]),
        urban_layer=vector_layer(config["negatives"]["urban_mask"]),
        protected_encoding=vector_encoding(config["negatives"]["protected_areas"]),
        urban_encoding=vector_encoding(config["negatives"]["urban_mask"]),
        seed=config["negatives"]["seed"],
    script:
        "../scripts/negative_points.py"


rule fetch_training_images:
    input:
        points="results/points/{cls}.csv",
        catalog=imagery_inputs,
    output:
        images=directory("results/training_images/{cls}"),
        index="results/training_images/{cls}_index.csv",
    log:
        "logs/fetch_training_images_{cls}.log",
    benchmark:
        "benchmarks/fetch_training_images_{cls}.tsv"
    conda:
        "../envs/geo.yaml"
    threads: 2
    resources:
        mem_mb=1500,
        runtime=240,
    params:
        imagery=config["imagery"],
        chip_size_m=config["chips"]["size_m"],
        local_dirs=lambda w: config[f"{w.cls}s"]["local_dirs"],
        bands=config["classifier"]["bands"],
        cache_dir="results/cache/training_images",
    script:
        "../scripts/fetch_training_images.py"


rule positive_stats:
    input:
        index="results/training_images/positive_index.csv",
        images="results/training_images/positive",
    output:
        "results/stats/positive.json",
    log:
        "logs/positive_stats.log",
    benchmark:
        "benchmarks/positive_stats.tsv"
    conda:
        "../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        statistics=config["statistics"],
        test_sources=config["split"]["test_sources"],
    script:
        "../scripts/positive_stats.py"


rule match_training_images:
    input:
        index="results/training_images/{cls}_index.csv",
        images="results/training_images/{cls}",
        stats="results/stats/positive.json",
    output:
        images=directory("results/training_images/matched/{cls}"),
        index="results/training_images/matched/{cls}_index.csv",
    log:
        "logs/match_training_images_{cls}.log",
    benchmark:
        "benchmarks/match_training_images_{cls}.tsv"
    conda:
        "../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=60,
    params:
        matching=config["matching"],
    script:
        "../scripts/match_training_images.py"


rule split_and_augment:
    input:
        positive="results/training_images/matched/positive_index.csv",
        negative="results/training_images/matched/negative_index.csv",
        pos_images="results/training_images/matched/positive",
        neg_images="results/training_images/matched/negative",
        stats="results/stats/positive.json",
    output:
        split="results/split.csv",
        pos_aug=directory("results/training_images/pos_augmented"),
        neg_aug=directory("results/training_images/neg_augmented"),
        heldout="results/heldout/manifest.csv",
    log:
        "logs/split_and_augment.log",
    benchmark:
        "benchmarks/split_and_augment.tsv"
    conda:
        "../envs/geo.yaml"
    threads: 4  # GeoTIFF writers of the augmented copies
    resources:
        mem_mb=1500,
        runtime=60,
    params:
        split=config["split"],
        augmentation=config["augmentation"],
    script:
        "../scripts/split_and_augment.py"
