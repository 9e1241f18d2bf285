# Pinned public inputs (config downloads.files): fetched once into resources/downloads/, sha256-checked.
# They need internet, so they are localrules: they run where snakemake runs, and compute nodes need none.
# Snakemake prints changed params ("reason: Params have changed ... before: ... now: ...") and stores them
# in .snakemake/, so the URL is a param only redacted (no query, fragment or userinfo, where signatures
# live); the script reads the full one from the config. A rotated signature thus reruns nothing: right, as
# the sha256 pins the content.
from garimpo.imagery.redact import redact_url


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
        url=lambda w: redact_url(config["downloads"]["files"][w.name]["url"]),
        sha256=lambda w: config["downloads"]["files"][w.name]["sha256"],
        size=lambda w: config["downloads"]["files"][w.name].get("size"),
        max_size_mb=config["downloads"]["max_size_mb"],
        deadline_s=config["downloads"]["deadline_s"],
    script:
        "../scripts/download_input.py"
