"""A release bundle's manifest, ``MANIFEST.sha256``: the sha256 of every file, in the format ``sha256sum -c``
checks; written, checked, and extended with files added after the run (the Snakemake report). Standard
library only, so that anyone can check a bundle with little installed."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from garimpo.atomic import atomic_path

MANIFEST = "MANIFEST.sha256"


def sha256_of(path: str | os.PathLike) -> str:
    """The sha256 of a file, 64 lower-case hex digits (read in 1 MiB chunks). Raises ``OSError``."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundle_files(folder: str | os.PathLike) -> list[str]:
    """The files of a bundle, relative POSIX paths, sorted: every file under ``folder`` but the manifest and
    hidden ones (Snakemake's ``.snakemake_timestamp`` of an output folder)."""
    root = Path(folder)
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name != MANIFEST and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def read_manifest(folder: str | os.PathLike) -> dict[str, str]:
    """relative path -> sha256 of ``folder/MANIFEST.sha256``. Raises ``FileNotFoundError`` without one."""
    listed = {}
    for line in (Path(folder) / MANIFEST).read_text(encoding="utf-8").splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    return listed


def _write(folder: Path, digests: dict[str, str]) -> Path:
    out = folder / MANIFEST
    with atomic_path(out) as tmp:
        Path(tmp).write_text("".join(f"{digests[n]}  {n}\n" for n in sorted(digests)), encoding="utf-8")
    return out


def write_manifest(folder: str | os.PathLike) -> Path:
    """Write ``folder/MANIFEST.sha256``: one ``<sha256>  <relative path>`` line per file of
    :func:`bundle_files`. Returns its path."""
    root = Path(folder)
    return _write(root, {name: sha256_of(root / name) for name in bundle_files(root)})


def verify_manifest(folder: str | os.PathLike, ignore: Sequence[str] = ()) -> list[str]:
    """The problems of a bundle against its manifest, one line each: ``changed: NAME``, ``missing: NAME``,
    ``not listed: NAME``; empty when it is intact. ``ignore``: names left out of the comparison. Raises
    ``FileNotFoundError`` when there is no manifest."""
    root = Path(folder)
    listed = {n: d for n, d in read_manifest(root).items() if n not in ignore}
    problems = []
    for name, digest in listed.items():
        if not (root / name).is_file():
            problems.append(f"missing: {name}")
        elif sha256_of(root / name) != digest:
            problems.append(f"changed: {name}")
    present = set(bundle_files(root)) - set(ignore)
    problems += [f"not listed: {name}" for name in sorted(present - set(listed))]
    return problems


def add_to_manifest(folder: str | os.PathLike, names: Sequence[str]) -> Path:
    """Add (or update) ``names`` (relative paths of files now in the bundle) in its manifest, after checking
    that every other file is as the manifest says: files added after the run (the Snakemake report) join a
    bundle whose other files are what the workflow wrote, never a bundle changed since.

    Raises ``FileNotFoundError`` (no manifest, or a name not in the folder) and ``ValueError`` listing the
    problems of the other files (:func:`verify_manifest`).
    """
    root = Path(folder)
    problems = verify_manifest(root, ignore=names)
    if problems:
        raise ValueError("; ".join(problems))
    digests = read_manifest(root)
    for name in names:
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root / name}: not in the bundle")
        digests[name] = sha256_of(root / name)
    return _write(root, digests)


def set_aside_if_changed(folder: str | os.PathLike, ignore: Sequence[str] = ()) -> tuple[list[str], Path | None]:
    """Before a bundle is built again: when ``folder`` has a manifest and files changed, missing or added since
    (``ignore`` aside), move the whole folder to ``FOLDER.changed-YYYYmmddTHHMMSS`` (nothing is deleted) so
    that the workflow writes every file again; Snakemake alone would not, as its last output, the manifest, is
    newer than its inputs. Returns (the problems, where the folder went; None when it stayed)."""
    root = Path(folder)
    if not (root / MANIFEST).is_file():
        return [], None
    problems = verify_manifest(root, ignore)
    if not problems:
        return [], None
    aside = root.with_name(f"{root.name}.changed-{time.strftime('%Y%m%dT%H%M%S')}")
    shutil.move(str(root), str(aside))
    return problems, aside
