# Two-stage detection per region: scene -> candidate zones -> classifier verdict -> GeoJSON + overview.


rule region_scene:
    input:
        region=region_file,
        catalog=imagery_inputs,
    output:
        scene="results/scenes/{region}.tif",
        meta="results/scenes/{region}.json",
    log:
        "logs/region_scene_{region}.log",
    benchmark:
        "benchmarks/region_scene_{region}.tsv"
    conda:
        "../envs/geo.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=240,
    params:
        imagery=config["imagery"],
        region=lambda w: config["regions"][w.region],
    script:
        "../scripts/region_scene.py"


rule propose_candidates:
    input:
        scene="results/scenes/{region}.tif",
        meta="results/scenes/{region}.json",
        region=region_file,
        segformer=segformer_inputs,
    output:
        mask="results/candidates/{region}_mask.tif",
        zones="results/candidates/{region}.geojson",
    log:
        "logs/propose_candidates_{region}.log",
    benchmark:
        "benchmarks/propose_candidates_{region}.tsv"
    conda:
        "../envs/ml.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=120,
        gpu=1,
    params:
        proposer=config["proposer"],
        region=lambda w: config["regions"][w.region],
    script:
        "../scripts/propose_candidates.py"


rule classify_candidates:
    input:
        scene="results/scenes/{region}.tif",
        meta="results/scenes/{region}.json",
        zones="results/candidates/{region}.geojson",
        model="results/models/classifier/best_model.pth",
        stats="results/stats/positive.json",
    output:
        detections="results/detections/{region}.geojson",
        scored="results/candidates/{region}_scored.geojson",
    log:
        "logs/classify_candidates_{region}.log",
    benchmark:
        "benchmarks/classify_candidates_{region}.tsv"
    conda:
        "../envs/ml.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=120,
        gpu=1,
    params:
        detection=config["detection"],
        tile_size_m=config["tiles"]["size_m"],
    script:
        "../scripts/classify_candidates.py"


rule overview_map:
    input:
        scene="results/scenes/{region}.tif",
        scored="results/candidates/{region}_scored.geojson",
        region=region_file,
    output:
        "results/detections/{region}_overview.png",
    log:
        "logs/overview_map_{region}.log",
    benchmark:
        "benchmarks/overview_map_{region}.tsv"
    conda:
        "../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=1500,
        runtime=10,
    params:
        region=lambda w: config["regions"][w.region],
        attribution=config["publishing"]["attribution"],
    script:
        "../scripts/plot_overview.py"
