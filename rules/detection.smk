# Detection per region, fanned out over the cells of a fixed grid and over the detection periods: cell list
# (checkpoint) -> per (cell, period) a composite and a scan (proposer + classifier, or brute force) -> per period
# merged detections -> change over the periods (the region's latest detections with their status, new mining per
# period, the cumulative footprint) -> overview map and encroachment stats.


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
        composite="results/regions/{region}/{period}/composites/{cell}.tif",
        meta="results/regions/{region}/{period}/composites/{cell}.json",
    log:
        "logs/composite_cell_{region}_{period}_{cell}.log",
    benchmark:
        "benchmarks/composite_cell_{region}_{period}_{cell}.tsv"
    conda:
        "../envs/geo.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=240,
    params:
        imagery=composite_imagery,
        region=lambda w: config["regions"][w.region],
        detection={
            k: config["detection"][k] for k in ("cell_size_m", "margin_m", "block_px")
        },
    script:
        "../scripts/composite_cell.py"


rule detect_cell:
    input:
        composite="results/regions/{region}/{period}/composites/{cell}.tif",
        meta="results/regions/{region}/{period}/composites/{cell}.json",
        model="results/models/classifier/best_model.pth",
        stats="results/stats/positive.json",
        segformer=segformer_inputs,
        reference=earlier_composite,
    output:
        "results/regions/{region}/{period}/chip_scores/{cell}.npz",
    log:
        "logs/detect_cell_{region}_{period}_{cell}.log",
    benchmark:
        "benchmarks/detect_cell_{region}_{period}_{cell}.tsv"
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
        "results/detections/{region}/{period}.geojson",
    log:
        "logs/merge_detections_{region}_{period}.log",
    benchmark:
        "benchmarks/merge_detections_{region}_{period}.tsv"
    conda:
        "../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        detection=merge_params(),
        region=lambda w: config["regions"][w.region],
        period=period_entry,
        latest=lambda w: w.period == PERIOD_NAMES[-1],
        attribution=config["publishing"]["attribution"],
    script:
        "../scripts/merge_detections.py"


rule track_changes:
    input:
        cells="results/regions/{region}/cells.json",
        detections=expand(
            "results/detections/{{region}}/{period}.geojson", period=PERIOD_NAMES
        ),
        chip_scores=all_periods_chip_scores,
        region=region_file,
    output:
        latest=report(
            "results/detections/{region}.geojson",
            caption="../report/detections_geojson.rst",
            category="Detections",
            subcategory="{region}",
            labels={"region": "{region}", "result": "detections (GeoJSON)"},
        ),
        changes=expand(
            "results/change/{{region}}/{period}.geojson", period=PERIOD_NAMES
        ),
        footprint="results/change/{region}/footprint.geojson",
    log:
        "logs/track_changes_{region}.log",
    benchmark:
        "benchmarks/track_changes_{region}.tsv"
    conda:
        "../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        periods=[p.as_dict() for p in PERIODS],
        change=config["change"],
        region=lambda w: config["regions"][w.region],
        attribution=config["publishing"]["attribution"],
    script:
        "../scripts/track_changes.py"


rule overview_map:
    input:
        detections="results/detections/{region}.geojson",
        composites=region_composites,
        region=region_file,
    output:
        report(
            "results/detections/{region}_overview.png",
            caption="../report/overview_map.rst",
            category="Detections",
            subcategory="{region}",
            labels={"region": "{region}", "result": "overview map"},
        ),
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
        csv=report(
            "results/stats/{region}_protected_areas.csv",
            caption="../report/protected_areas_table.rst",
            category="Protected areas",
            subcategory="{region}",
            labels={"region": "{region}", "result": "table per area (CSV)"},
        ),
        png=report(
            "results/stats/{region}_protected_areas.png",
            caption="../report/protected_areas_map.rst",
            category="Protected areas",
            subcategory="{region}",
            labels={"region": "{region}", "result": "map"},
        ),
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


rule stats_over_time:
    input:
        detections=expand(
            "results/detections/{{region}}/{period}.geojson", period=PERIOD_NAMES
        ),
        changes=expand(
            "results/change/{{region}}/{period}.geojson", period=PERIOD_NAMES
        ),
        areas=encroachment_areas,
        region=region_file,
    output:
        csv=report(
            "results/stats/{region}_over_time.csv",
            caption="../report/over_time_table.rst",
            category="Change over time",
            subcategory="{region}",
            labels={"region": "{region}", "result": "table per area and period (CSV)"},
        ),
        png=report(
            "results/stats/{region}_over_time.png",
            caption="../report/over_time_plot.rst",
            category="Change over time",
            subcategory="{region}",
            labels={"region": "{region}", "result": "mined area per period (plot)"},
        ),
    log:
        "logs/stats_over_time_{region}.log",
    benchmark:
        "benchmarks/stats_over_time_{region}.tsv"
    conda:
        "../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        periods=PERIOD_NAMES,
        encroachment=config["encroachment"],
        region=lambda w: config["regions"][w.region],
        attribution=config["publishing"]["attribution"],
    script:
        "../scripts/stats_over_time.py"
