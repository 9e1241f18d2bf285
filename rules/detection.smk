# Detection per region, fanned out over fixed-grid tiles: tile list (checkpoint) -> per tile a scene and a
# scan (proposer + classifier, or brute force) -> merged detections -> overview map and encroachment stats.


checkpoint region_tiles:
    input:
        region=region_file,
    output:
        "results/regions/{region}/tiles.json",
    log:
        "logs/region_tiles_{region}.log",
    benchmark:
        "benchmarks/region_tiles_{region}.tsv"
    conda:
        "../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        region=lambda w: config["regions"][w.region],
        tile_size_m=config["detection"]["tile_size_m"],
    script:
        "../scripts/region_tiles.py"


rule tile_scene:
    input:
        region=region_file,
        tiles="results/regions/{region}/tiles.json",
        catalog=imagery_inputs,
    output:
        scene="results/regions/{region}/scenes/{tile}.tif",
        meta="results/regions/{region}/scenes/{tile}.json",
    log:
        "logs/tile_scene_{region}_{tile}.log",
    benchmark:
        "benchmarks/tile_scene_{region}_{tile}.tsv"
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
            k: config["detection"][k] for k in ("tile_size_m", "margin_m", "block_px")
        },
    script:
        "../scripts/tile_scene.py"


rule detect_tile:
    input:
        scene="results/regions/{region}/scenes/{tile}.tif",
        meta="results/regions/{region}/scenes/{tile}.json",
        model="results/models/classifier/best_model.pth",
        stats="results/stats/positive.json",
        segformer=segformer_inputs,
    output:
        "results/regions/{region}/chips/{tile}.npz",
    log:
        "logs/detect_tile_{region}_{tile}.log",
    benchmark:
        "benchmarks/detect_tile_{region}_{tile}.tsv"
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
        tile_size_m=config["tiles"]["size_m"],
    script:
        "../scripts/detect_tile.py"


rule merge_detections:
    input:
        tiles="results/regions/{region}/tiles.json",
        chips=region_tile_chips,
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
        scenes=region_tile_scenes,
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
