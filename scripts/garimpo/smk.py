"""Glue for the rule scripts: logging to the rule's log file, atomic JSON/CSV writes, and
:func:`mock_snakemake`, which lets a rule script run on its own for debugging."""

from __future__ import annotations

import difflib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from garimpo.atomic import atomic_path, sweep_for
from garimpo.imagery.redact import install_redaction


def setup_logging(snakemake=None, level: int = logging.INFO) -> logging.Logger:
    """Send log records (and uncaught exceptions) to ``snakemake.log[0]`` and stderr, signed URLs redacted
    (:mod:`garimpo.imagery.redact`); then remove what
    killed writers left beside the rule's outputs (:func:`garimpo.atomic.sweep_temps`, a warning each)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if snakemake is not None and len(snakemake.log):
        Path(snakemake.log[0]).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(snakemake.log[0], mode="w"))
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    install_redaction(handlers)  # on the handlers: they see every logger's records, tracebacks included
    logging.captureWarnings(True)  # Python warnings go through the same (redacting) handlers
    log = logging.getLogger("garimpo")

    def _excepthook(exc_type, exc, tb):
        log.error("%s: %s", exc_type.__name__, exc, exc_info=(exc_type, exc, tb))

    sys.excepthook = _excepthook
    if snakemake is not None:
        # A killed earlier attempt may have left temporary files (gigabytes for a composite) beside the outputs.
        sweep_for(getattr(snakemake, "output", ()))
    return log


def write_json(path: str | Path, doc) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        json.dump(doc, fh, indent=2, default=str)
    return path


def write_csv(path: str | Path, frame) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def rule_region(snakemake):
    """The polygon (lon/lat) of the rule's ``{region}``: ``snakemake.input.region`` read with the entry
    ``regions.NAME`` of the config (``snakemake.params.region``: field/value selection, layer, encoding).
    Raises InputDataError naming the file and ``regions.NAME`` (see :func:`garimpo.geo.vector.read_region`)."""
    from garimpo.geo.vector import read_region  # here: rules of the ml environment (no pyogrio) import smk too

    reg = snakemake.params.region
    return read_region(
        snakemake.input.region,
        reg.get("field"),
        reg.get("value"),
        reg.get("layer"),
        f"regions.{snakemake.wildcards.region}",
        reg.get("encoding"),
    )


# The repository holding this package (scripts/garimpo/smk.py -> the folder of the Snakefile).
REPO_ROOT = Path(__file__).resolve().parents[2]


def _workflow_root(root: str | os.PathLike | None) -> Path:
    """``root``; else the current directory when it holds a Snakefile (a copy of the workflow), else this
    package's repository."""
    if root is not None:
        return Path(root).resolve()
    here = Path.cwd()
    return here if (here / "Snakefile").is_file() else REPO_ROOT


def mock_snakemake(
    rule: str,
    configfiles: str | os.PathLike | Sequence[str | os.PathLike] = (),
    root: str | os.PathLike | None = None,
    require_inputs: bool = False,
    **wildcards: str,
):
    """The ``snakemake`` object Snakemake would hand the script of ``rule`` for these ``wildcards``, so a rule
    script runs without Snakemake: ``python scripts/detect_cell.py region=demo cell=E0001S0001``.

    The workflow is loaded from ``root`` (default: see :func:`_workflow_root`) through Snakemake's Python API,
    with ``config/config.yaml`` and then each of ``configfiles`` (as ``--configfile``; validated as in a run),
    and one job of ``rule`` is built from its wildcards: input, output, params, wildcards, threads,
    resources, log and config are those of the real job, paths relative to ``root``, which becomes the
    current directory (as a job's is). Input functions that read a checkpoint's output (a region's cells)
    need that output on disk. Nothing is run or checked for freshness; the folders of the log and outputs
    are created.

    ``configfiles`` are taken from the current directory of the caller. With ``require_inputs`` every input
    must exist (as :func:`standalone` asks).

    Raises:
        ValueError: naming the rule when it does not exist (with the nearest names), when a wildcard is
            missing or unknown, or a value breaks the wildcard's constraint, when a config file is absent,
            when a checkpoint the input depends on has not run, and (``require_inputs``) when an input is
            missing, with the snakemake command that makes it.
    """
    from snakemake.api import SnakemakeApi
    from snakemake.dag import DAG
    from snakemake.exceptions import UnknownRuleException
    from snakemake.io import is_flagged
    from snakemake.iocontainers import Snakemake
    from snakemake.jobs import Job
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

    base = _workflow_root(root)
    given = [configfiles] if isinstance(configfiles, (str, os.PathLike)) else list(configfiles)
    # Config files are named from where the command was typed, before the workflow folder becomes current.
    files = [Path(f).resolve() for f in given]
    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        raise ValueError(f"config file(s) {absent} not found (paths are taken from {Path.cwd()})")
    os.chdir(base)
    output = OutputSettings(quiet={Quietness.ALL}, enable_file_logging=False)
    with SnakemakeApi(output) as api:
        wf_api = api.workflow(
            resource_settings=ResourceSettings(cores=os.cpu_count() or 1),  # threads as the rule asks, up to the CPUs
            config_settings=ConfigSettings(configfiles=files),
            snakefile=base / "Snakefile",
            workdir=base,
        )
        wf_api.dag(DAGSettings())  # sets the DAG settings a job's params and resources read
        workflow = wf_api._workflow
        try:
            job_rule = workflow.get_rule(rule)
        except UnknownRuleException:
            names = sorted(r.name for r in workflow.rules)
            near = difflib.get_close_matches(rule, names, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(f"no rule {rule!r} in {base / 'Snakefile'}{hint}; the rules are {names}") from None
        _check_wildcards(workflow, job_rule, wildcards)
        # A checkpoint whose output exists counts as done, as in a run (Snakemake checks which are).
        for checkpoint in workflow.rules:
            if checkpoint.is_checkpoint and checkpoint.wildcard_names <= set(wildcards):
                done, _ = checkpoint.expand_output({k: wildcards[k] for k in checkpoint.wildcard_names})
                workflow.checkpoints.created_output.update(f for f in done if os.path.exists(f))
        dag = DAG(workflow, rules=[job_rule], targetrules={job_rule})
        job = Job(job_rule, dag, dict(wildcards))
        pending = [str(f) for f in job.input if is_flagged(f, "checkpoint_target")]
        if pending:
            raise ValueError(
                f"rule {rule}: its input depends on checkpoint output {pending} that does not exist yet; "
                f"make it first (snakemake {' '.join(pending)} --cores 1), then run the script again"
            )
        if require_inputs:
            missing = [str(f) for f in job.input if not os.path.exists(f)]
            if missing:
                shown = " ".join(missing[:3])
                cfg = " ".join(f"--configfile {f}" for f in files)
                raise ValueError(
                    f"rule {rule}: input {missing[:10]} does not exist"
                    f"{' (' + str(len(missing)) + ' in all)' if len(missing) > 10 else ''}; make it first "
                    f"(snakemake {shown} --cores 2 {cfg}), then run the script again"
                    + (
                        " (wildcard values must be those the workflow makes, e.g. a cell of the region's cells.json)"
                        if wildcards
                        else ""
                    )
                )
        smk = Snakemake(
            job.input,
            job.output,
            job.params,
            job.wildcards,
            job.threads,
            job.resources,
            job.log,
            workflow.config,
            job_rule.name,
            None,
            scriptdir=str(base / "scripts"),
        )
    for path in [*smk.log, *smk.output]:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return smk


def _check_wildcards(workflow, rule, wildcards: dict[str, str]) -> None:
    """Refuse missing or unknown wildcards, and values their constraints (the rule's, else the
    workflow's) do not match, naming them and the command line that would work."""
    import re

    needed, given = set(rule.wildcard_names), set(wildcards)
    if needed != given:
        example = "".join(f" {w}=..." for w in sorted(needed))
        problems = []
        if needed - given:
            problems.append(f"missing wildcard(s) {sorted(needed - given)}")
        if given - needed:
            problems.append(f"unknown wildcard(s) {sorted(given - needed)}")
        raise ValueError(
            f"rule {rule.name}: {' and '.join(problems)}; it takes {sorted(needed)}: "
            f"python scripts/{rule.name}.py{example}"
        )
    constraints = {**workflow.wildcard_constraints, **rule.wildcard_constraints}
    for name, value in wildcards.items():
        pattern = constraints.get(name)
        if pattern is not None and not re.fullmatch(pattern, str(value)):
            raise ValueError(f"rule {rule.name}: wildcard {name}={value!r} does not match its constraint {pattern!r}")


def standalone(rule: str):
    """The ``snakemake`` object of a rule script run on its own (``python scripts/RULE.py NAME=VALUE ...``):
    :func:`mock_snakemake` with the command line's wildcards and config files, every input required.

    A usage error (unknown rule, wrong wildcard, missing input or config file, invalid config) ends the
    script with its message and exit status 1, without a traceback.
    """
    try:
        return mock_snakemake(rule, require_inputs=True, **script_args())
    except ValueError as err:
        raise SystemExit(f"{rule}: {err}") from None


def script_args(argv: Sequence[str] | None = None) -> dict:
    """:func:`mock_snakemake`'s keywords from a rule script's command line: ``NAME=VALUE`` wildcards and
    ``--configfile FILE`` (repeatable), e.g. ``--configfile config/demo.yaml region=demo cell=E0001S0001``."""
    args = list(sys.argv[1:] if argv is None else argv)
    configfiles: list[str] = []
    wildcards: dict[str, str] = {}
    while args:
        arg = args.pop(0)
        if arg == "--configfile" and args:
            configfiles.append(args.pop(0))
        elif arg.startswith("--configfile="):
            configfiles.append(arg.split("=", 1)[1])
        elif "=" in arg and not arg.startswith("-"):
            name, value = arg.split("=", 1)
            wildcards[name] = value
        else:
            raise SystemExit(
                f"unexpected argument {arg!r}: a rule script takes wildcards as NAME=VALUE and "
                "--configfile FILE (repeated for each file), e.g. --configfile config/demo.yaml region=demo"
            )
    return {"configfiles": configfiles, **wildcards}
