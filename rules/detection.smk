# Detection per region, fanned out over the cells of a fixed grid: cell list (checkpoint) -> per cell a
# composite and a scan (proposer + classifier, or brute force) -> merged detections -> overview map and
# encroachment stats.


checkpoint region_cells:
    input:
        region=region_file,
    output:
        "results/regions/{region}/cells.json",
    log:
        "logs/region_cells_{region}.log",
    benchmark:
        "benchmarks/region_cells_{region}.tsv"
    conda:
        "../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        region=lambda w: config["regions"][w.region],
        cell_size_m=config["detection"]["cell_size_m"],
    script:
        "../scripts/region_cells.py"


rule composite_cell:
    input:
        region=region_file,
        cells="results/regions/{region}/cells.json",
        catalog=imagery_inputs,
    output:
        composite="results/regions/{region}/composites/{cell}.tif",
        meta="results/regions/{region}/composites/{cell}.json",
    log:
        "logs/composite_cell_{region}_{cell}.log",
    benchmark:
        "benchmarks/composite_cell_{region}_{cell}.tsv"
    conda:
        "../envs/geo.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=240,
    params:
        imagery=config["imagery"],
        region=lambda w: config["regions"][w.region],
        detection={
            k: config["detection"][k] for k in ("cell_size_m", "margin_m", "block_px")
        },
    script:
        "../scripts/composite_cell.py"


rule detect_cell:
    input:
        composite="results/regions/{region}/composites/{cell}.tif",
        meta="results/regions/{region}/composites/{cell}.json",
        model="results/models/classifier/best_model.pth",
        stats="results/stats/positive.json",
        segformer=segformer_inputs,
    output:
        "results/regions/{region}/chip_scores/{cell}.npz",
    log:
        "logs/detect_cell_{region}_{cell}.log",
    benchmark:
        "benchmarks/detect_cell_{region}_{cell}.tsv"
    conda:
        "../envs/ml.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=120,
        gpu=1,
    params:
        scan=scan_params(),
        proposer=config["proposer"],
        chip_size_m=config["chips"]["size_m"],
    script:
        "../scripts/detect_cell.py"


rule merge_detections:
    input:
        cells="results/regions/{region}/cells.json",
        chip_scores=region_chip_scores,
        region=region_file,
        model="results/models/classifier/config.json",
    output:
        "results/detections/{region}.geojson",
    log:
        "logs/merge_detections_{region}.log",
    benchmark:
        "benchmarks/merge_detections_{region}.tsv"
    conda:
        "../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        detection=merge_params(),
        region=lambda w: config["regions"][w.region],
        attribution=config["publishing"]["attribution"],
    script:
        "../scripts/merge_detections.py"


rule overview_map:
    input:
        detections="results/detections/{region}.geojson",
        composites=region_composites,
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
        mem_mb=2000,
        runtime=30,
    params:
        region=lambda w: config["regions"][w.region],
        attribution=config["publishing"]["attribution"],
    script:
        "../scripts/overview_map.py"


rule encroachment_stats:
    input:
        detections="results/detections/{region}.geojson",
        areas=encroachment_areas,
        region=region_file,
    output:
        csv="results/stats/{region}_protected_areas.csv",
        png="results/stats/{region}_protected_areas.png",
    log:
        "logs/encroachment_stats_{region}.log",
    benchmark:
        "benchmarks/encroachment_stats_{region}.tsv"
    conda:
        "../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        encroachment=config["encroachment"],
        region=lambda w: config["regions"][w.region],
        attribution=config["publishing"]["attribution"],
    script:
        "../scripts/encroachment_stats.py"
