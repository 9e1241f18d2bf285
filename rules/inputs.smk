# Pinned public inputs (config downloads.files): fetched once into resources/downloads/, sha256-checked.
# They need internet, so they are localrules: they run where snakemake runs, and compute nodes need none.


localrules:
    download_input,


rule download_input:
    output:
        "resources/downloads/{name}",
    log:
        "logs/download_input_{name}.log",
    benchmark:
        "benchmarks/download_input_{name}.tsv"
    wildcard_constraints:
        name=download_names(),
    conda:
        "../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=int(config["downloads"]["deadline_s"] // 60) + 5,  # the deadline, and a margin
    params:
        url=lambda w: config["downloads"]["files"][w.name]["url"],
        sha256=lambda w: config["downloads"]["files"][w.name]["sha256"],
        size=lambda w: config["downloads"]["files"][w.name].get("size"),
        max_size_mb=config["downloads"]["max_size_mb"],
        deadline_s=config["downloads"]["deadline_s"],
    script:
        "../scripts/download_input.py"
