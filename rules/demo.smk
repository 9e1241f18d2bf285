# The offline demo world: a synthetic Sentinel-2 L2A scene set published as a local STAC catalog.


rule make_demo_world:
    output:
        catalog="results/demo_world/catalog/catalog.json",
        mines="results/demo_world/truth/mines.geojson",
        mining_by_period="results/demo_world/truth/mining_by_period.geojson",
        new_mining="results/demo_world/truth/new_mining.geojson",
        known_mines="results/demo_world/truth/known_mines.csv",
        protected="results/demo_world/truth/protected_areas.geojson",
        urban="results/demo_world/truth/urban.geojson",
        regions="results/demo_world/truth/regions.geojson",
        hard_negatives="results/demo_world/truth/hard_negatives.csv",
    log:
        "logs/make_demo_world.log",
    benchmark:
        "benchmarks/make_demo_world.tsv"
    conda:
        "../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=1500,
        runtime=10,
    params:
        out_dir=lambda w, output: os.path.dirname(os.path.dirname(output.catalog)),
        seed=config["demo_world"]["seed"],
    script:
        "../scripts/make_demo_world.py"


rule evaluate_demo:
    input:
        detections="results/detections/demo.geojson",
        changes=expand("results/change/demo/{period}.geojson", period=PERIOD_NAMES),
        mines="results/demo_world/truth/mines.geojson",
        new_mining="results/demo_world/truth/new_mining.geojson",
        mining_by_period="results/demo_world/truth/mining_by_period.geojson",
        regions="results/demo_world/truth/regions.geojson",
    output:
        report(
            "results/eval/demo.json",
            caption="../report/demo_eval.rst",
            category="Evaluation",
            subcategory="demo",
            labels={
                "chip set": "demo world (object level)",
                "result": "scores (JSON)",
            },
        ),
    log:
        "logs/evaluate_demo.log",
    benchmark:
        "benchmarks/evaluate_demo.tsv"
    conda:
        "../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        control=config["demo_world"]["control_region"],
        periods=PERIOD_NAMES,
    script:
        "../scripts/evaluate_demo.py"
