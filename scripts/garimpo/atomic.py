"""Atomic file writes: a temporary file beside the target, renamed over it only once complete.

``tempfile.mkstemp`` creates its file with mode 0600, and ``os.replace`` keeps that mode, so without
care every output would be unreadable by the user's group and others whatever their umask. The
temporary file is therefore given the mode a plain ``open(path, "w")`` would have given it
(0666 less the umask) before it is renamed.
"""

from __future__ import annotations

import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_UMASK_LOCK = threading.Lock()


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


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[str]:
    """Yield the path of an empty temporary file beside ``path``; write it in the ``with`` block.

    When the block ends normally the file gets the mode a plain ``open()`` would give it and replaces
    ``path``, so readers never see a half-written output, nor one only its owner can read. When the
    block raises, the temporary file is removed and the exception propagates; ``path`` is untouched.
    ``suffix`` (default: ``path``'s own) matters to writers that infer a format from the name.
    Raises OSError when the folder cannot be created or written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix if suffix is None else suffix,
                               dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
