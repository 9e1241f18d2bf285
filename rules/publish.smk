# Publishing a region: evidence thumbnails, GIS formats (GeoPackage, KML, CSV), an offline web map and a release
# bundle (model card, config, pinned inputs, STAC items, software, attribution, manifest) in results/publish/{region}/.
# `make publish REGION=...` adds the Snakemake report (built after the run) and rewrites the manifest.


rule evidence_thumbnails:
    input:
        detections="results/detections/{region}.geojson",
        composites=all_periods_composites,
    output:
        index="results/publish/{region}/evidence.json",
        folder=directory("results/publish/{region}/evidence"),
    log:
        "logs/evidence_thumbnails_{region}.log",
    benchmark:
        "benchmarks/evidence_thumbnails_{region}.tsv"
    conda:
        "../envs/publish.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=60,
    params:
        periods=PERIOD_NAMES,
        evidence=config["publishing"]["evidence"],
    script:
        "../scripts/evidence_thumbnails.py"


rule gis_layers:
    input:
        latest="results/detections/{region}.geojson",
        detections=expand(
            "results/detections/{{region}}/{period}.geojson", period=PERIOD_NAMES
        ),
        changes=expand(
            "results/change/{{region}}/{period}.geojson", period=PERIOD_NAMES
        ),
        footprint="results/change/{region}/footprint.geojson",
        evidence="results/publish/{region}/evidence.json",
        areas=optional_areas,
        region=region_file,
    output:
        gpkg="results/publish/{region}/{region}.gpkg",
        kml="results/publish/{region}/{region}.kml",
        csv=report(
            "results/publish/{region}/{region}_detections.csv",
            caption="../report/publish_table.rst",
            category="Publishing",
            subcategory="{region}",
            labels={"region": "{region}", "product": "detections table"},
        ),
    log:
        "logs/gis_layers_{region}.log",
    benchmark:
        "benchmarks/gis_layers_{region}.tsv"
    conda:
        "../envs/publish.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        periods=PERIOD_NAMES,
        encroachment=config["encroachment"],
        region=lambda w: config["regions"][w.region],
    script:
        "../scripts/gis_layers.py"


rule web_map:
    input:
        latest="results/detections/{region}.geojson",
        detections=expand(
            "results/detections/{{region}}/{period}.geojson", period=PERIOD_NAMES
        ),
        changes=expand(
            "results/change/{{region}}/{period}.geojson", period=PERIOD_NAMES
        ),
        footprint="results/change/{region}/footprint.geojson",
        evidence="results/publish/{region}/evidence.json",
        evidence_folder="results/publish/{region}/evidence",
        composites=region_composites,
        areas=optional_areas,
        region=region_file,
    output:
        report(
            "results/publish/{region}/{region}_map.html",
            caption="../report/webmap.rst",
            category="Publishing",
            subcategory="{region}",
            labels={"region": "{region}", "product": "web map"},
        ),
    log:
        "logs/web_map_{region}.log",
    benchmark:
        "benchmarks/web_map_{region}.tsv"
    conda:
        "../envs/publish.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        periods=PERIOD_NAMES,
        webmap=config["publishing"]["webmap"],
        encroachment=config["encroachment"],
        region=lambda w: config["regions"][w.region],
        attribution=config["publishing"]["attribution"],
    script:
        "../scripts/web_map.py"


rule release_bundle:
    input:
        unpack(pinned_inputs),
        latest="results/detections/{region}.geojson",
        gpkg="results/publish/{region}/{region}.gpkg",
        kml="results/publish/{region}/{region}.kml",
        csv="results/publish/{region}/{region}_detections.csv",
        webmap="results/publish/{region}/{region}_map.html",
        evidence="results/publish/{region}/evidence.json",
        model="results/models/classifier/best_model.pth",
        summary="results/models/classifier/config.json",
        stats="results/stats/positive.json",
        composite_metas=all_periods_composite_metas,
        chip_set_reports=chip_set_reports,
        figures=region_figures,
        region_eval=region_evaluation,
    output:
        geojson="results/publish/{region}/{region}.geojson",
        model_card="results/publish/{region}/MODEL_CARD.md",
        config="results/publish/{region}/config.yaml",
        inputs="results/publish/{region}/inputs.csv",
        stac_items="results/publish/{region}/stac_items.csv",
        software="results/publish/{region}/software.json",
        attribution="results/publish/{region}/ATTRIBUTION.md",
        readme="results/publish/{region}/README.md",
        manifest="results/publish/{region}/MANIFEST.sha256",
    log:
        "logs/release_bundle_{region}.log",
    benchmark:
        "benchmarks/release_bundle_{region}.tsv"
    conda:
        "../envs/publish.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        # The bundle records the whole configuration the run used, so it reads every key.
        config=config,
        periods=[p.as_dict() for p in PERIODS],
        input_keys=lambda w: sorted(pinned_inputs(w)),
        chip_sets=list(config["evaluation"]["chip_sets"]),
        # The demo world's catalog holds no Copernicus data: its bundle does not claim it.
        synthetic=config["imagery"]["source"]["url"].startswith("results/demo_world/"),
    script:
        "../scripts/release_bundle.py"
