"""Atomic file writes: a temporary file beside the target, renamed over it only once complete.

``tempfile.mkstemp`` creates its file with mode 0600, and ``os.replace`` keeps that mode, so without
care every output would be unreadable by the user's group and others whatever their umask. The
temporary file is therefore given the mode a plain ``open(path, "w")`` would have given it
(0666 less the umask) before it is renamed.

A writer killed by SIGKILL (or by a SIGTERM that Python does not turn into an exception) cannot remove
its temporary file, and for the composite of a 100 km cell that is gigabytes. Temporary names therefore say who
writes them, ``.{target}.{host}-{pid}.{random}{suffix}``, and the next writer in the same folder removes
those whose writer is gone (:func:`sweep_temps`): on this host, when that process no longer runs (or
its PID now belongs to a process started after the file was last written); from another host (a shared
file system) or without a writer in the name (temporary files of older versions), only once nobody has
written to it for :data:`TEMP_MAX_AGE_S`. A temporary file of a live process is never touched, so jobs
that share a folder (the STAC search cache) can run at once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

_UMASK_LOCK = threading.Lock()

# A temporary file that no process on this host owns and nobody has written to for a day is litter: a
# writer on another host updates its file's mtime at every write, and no single write of this workflow
# pauses that long.
TEMP_MAX_AGE_S = 24 * 3600.0


def _host_tag() -> str:
    """This machine in temporary names: the host name (only [A-Za-z0-9_-], so names parse) and a hash of
    the boot id and PID namespace, so that two machines or containers of one name, whose PIDs mean
    different processes, never judge each other's temporary files by PID."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:32] or "host"
    ids = []
    for read in (
        lambda: Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
        lambda: os.readlink("/proc/self/ns/pid"),
    ):
        try:
            ids.append(read())
        except OSError:
            ids.append("")
    return f"{name}_{hashlib.sha256(' '.join(ids).encode()).hexdigest()[:8]}"


HOST = _host_tag()

# .{target}.{host}-{pid}.{8 random characters of mkstemp}{suffix, e.g. .part, .tif or GDAL's .tif.ovr.tmp}
_OWNED = re.compile(
    r"^\.(?P<target>.+)\.(?P<host>[A-Za-z0-9_-]+)-(?P<pid>[0-9]+)\.[a-z0-9_]{8}"
    r"(?P<suffix>(?:\.[^./]+)*)$"
)
# .{target}.{8 random characters}{suffix}: temporary names before the writer was in them.
_LEGACY = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}(?P<suffix>\.[^./]+)$")
_LEGACY_SUFFIXES = frozenset({".part", ".tmp", ".tif"})

_SWEPT: set[str] = set()  # folders this process has already swept (one sweep per folder per process)


def current_umask() -> int:
    """The process's file-mode creation mask, read without changing it where the system allows.

    Linux (4.7 and later) shows it as the ``Umask:`` line of /proc/self/status (proc(5)). Elsewhere
    ``os.umask`` is the only way: it sets a mask and returns the old one, so the old one is put back at
    once, under a lock (the umask is process-wide, so a file created by another thread in between could
    get the temporary 0o077).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The permission bits ``open(path, "w")`` gives a new file under the current umask (0o644 under 022)."""
    return 0o666 & ~current_umask()


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Give ``tmp`` the mode of a plain ``open()``, then rename it over ``path`` (atomic on one filesystem).

    Raises OSError when the file cannot be changed or renamed (``tmp`` is then left for the caller).
    """
    os.chmod(tmp, default_file_mode())
    os.replace(tmp, path)


def temp_prefix(path: str | os.PathLike) -> str:
    """Start of the name of this process's temporary files for ``path``: ``.{name}.{host}-{pid}.``."""
    return f".{Path(path).name}.{HOST}-{os.getpid()}."


def _process_start(pid: int) -> tuple[float, bool] | None:
    """(start time in epoch seconds, is a zombie) of ``pid`` from Linux's /proc; None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        with open("/proc/stat") as fh:
            boot = next(float(line.split()[1]) for line in fh if line.startswith("btime"))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK"), fields[0] == "Z"
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _writer_alive(pid: int, last_written: float) -> bool:
    """Whether process ``pid`` of this host may still be writing a file last written at ``last_written``."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    except OSError:
        return True
    started = _process_start(pid)
    if started is None:
        return True  # cannot tell (no /proc): keep it until that PID is free
    start, zombie = started
    # A writer is older than its file; a process started after the file's last write (2 s: btime is whole
    # seconds) only inherited the PID.
    return not zombie and start <= last_written + 2.0


def _last_written(path: Path) -> float:
    """Latest mtime of ``path`` and, for a folder, of everything in it."""
    latest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                try:
                    latest = max(latest, os.lstat(os.path.join(root, name)).st_mtime)
                except OSError:
                    pass
    return latest


def _size(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        return sum(os.lstat(os.path.join(root, f)).st_size for root, _, files in os.walk(path) for f in files)
    return path.lstat().st_size


def stale_reason(path: Path, now: float | None = None, max_age_s: float = TEMP_MAX_AGE_S) -> str | None:
    """Why the temporary file (or folder) ``path`` is litter, or None when it is not one of ours or may be
    in use. Raises OSError when ``path`` cannot be read."""
    now = time.time() if now is None else now
    owned = _OWNED.match(path.name)
    legacy = None if owned else _LEGACY.match(path.name)
    if legacy and legacy["suffix"] not in _LEGACY_SUFFIXES | {Path(legacy["target"]).suffix}:
        legacy = None
    if not owned and not legacy:
        return None
    last = _last_written(path)
    if owned and owned["host"] == HOST:
        pid = int(owned["pid"])
        return None if _writer_alive(pid, last) else f"its writer, process {pid} on this host, is gone"
    age = now - last
    if age < max_age_s:
        return None
    who = f"written from host {owned['host']}" if owned else "of an older version (no writer in its name)"
    return f"{who}, untouched for {age / 3600:.0f} h (more than {max_age_s / 3600:g} h)"


def human_size(n: float) -> str:
    """``n`` bytes for people: '512 B', '3.0 MiB', '2.1 GiB'."""
    units = ("B", "KiB", "MiB", "GiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{n:.0f} B" if i == 0 else f"{n:.1f} {units[i]}"


def sweep_temps(folder: str | os.PathLike, max_age_s: float = TEMP_MAX_AGE_S) -> list[tuple[Path, int]]:
    """Remove the temporary files (and folders) of killed writers in ``folder`` (not below it).

    Returns ``(path, bytes)`` of each one removed, each also logged as a warning. What another live
    process is writing is kept (see the module's docstring). A missing folder, or an entry another
    process removed first, is no error; one that cannot be removed is logged and skipped.
    """
    folder = Path(folder)
    _SWEPT.add(os.path.abspath(folder))
    removed: list[tuple[Path, int]] = []
    try:
        entries = [Path(e.path) for e in os.scandir(folder) if e.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return removed
    now = time.time()
    for path in entries:
        try:
            reason = stale_reason(path, now, max_age_s)
            if reason is None:
                continue
            size = _size(path)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue  # finished, or swept by another job, in the meantime
        except OSError as err:
            log.warning("could not remove the stale temporary file %s (%s); delete it by hand", path, err)
            continue
        log.warning(
            "removed %s (%s), a temporary file left by an interrupted write: %s", path, human_size(size), reason
        )
        removed.append((path, size))
    return removed


def sweep_for(paths: Iterable[str | os.PathLike], max_age_s: float = TEMP_MAX_AGE_S) -> list[tuple[Path, int]]:
    """:func:`sweep_temps` on the folder of each of ``paths`` (a job's outputs), each folder once, and only
    folders inside the working directory (a job sweeps its own project, never a folder a path leads out to)."""
    removed: list[tuple[Path, int]] = []
    here = os.path.abspath(os.curdir)
    for folder in dict.fromkeys(os.path.dirname(os.path.abspath(p)) for p in paths):
        if os.path.commonpath([here, folder]) == here:
            removed += sweep_temps(folder, max_age_s)
    return removed


def _sweep_once(folder: Path) -> None:
    if os.path.abspath(folder) not in _SWEPT:
        sweep_temps(folder)


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[str]:
    """Yield the path of an empty temporary file beside ``path``; write it in the ``with`` block.

    When the block ends normally the file gets the mode a plain ``open()`` would give it and replaces
    ``path``, so readers never see a half-written output, nor one only its owner can read. When the
    block raises, the temporary file is removed and the exception propagates; ``path`` is untouched.
    ``suffix`` (default: ``path``'s own) matters to writers that infer a format from the name.
    The first use in a folder (per process) first removes what killed writers left there (:func:`sweep_temps`).
    Raises OSError when the folder cannot be created or written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_once(path.parent)
    fd, tmp = tempfile.mkstemp(
        prefix=temp_prefix(path), suffix=path.suffix if suffix is None else suffix, dir=path.parent
    )
    os.close(fd)
    try:
        yield tmp
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def scratch_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path`` (for a download a library writes in several files),
    removed with everything in it when the block ends; named like :func:`atomic_path`'s temporary files,
    so what a killed writer leaves is swept the same way. Raises OSError when the folder cannot be made.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_once(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(path), suffix=".d", dir=path.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
