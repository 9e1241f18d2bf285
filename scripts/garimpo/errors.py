"""Domain errors: each says what went wrong, where, and what to do about it."""

import os


class GarimpoError(Exception):
    """Base class for errors a user can meet and fix."""


class InputDataError(GarimpoError, ValueError):
    """A user-supplied file (points, polygons, images) cannot be used."""


class CoordinateError(InputDataError):
    """A coordinate text that is not a usable number; ``str()`` is the reason, for the rejected-rows table."""


class NoImageryError(GarimpoError, LookupError):
    """No usable (clear enough) scene covers a requested area and period."""


class EmptyRegionError(GarimpoError, ValueError):
    """A region or sampling area has no room for what was asked."""


class ModelLoadError(GarimpoError, FileNotFoundError):
    """Model weights or configuration cannot be found or loaded."""


class DownloadError(GarimpoError, OSError):
    """A pinned input could not be downloaded, or what came back is not the pinned file."""


class ChecksumError(DownloadError):
    """A downloaded file's sha256 is not the pinned one."""


class ContractError(GarimpoError, ValueError):
    """A model and the imagery or config it is applied to disagree (footprint, pixel size or units)."""


class ImageryAccessError(GarimpoError, ConnectionError):
    """A STAC API or an asset could not be reached after the configured retries.

    Deliberately not a :class:`NoImageryError`: an outage must fail the run, not be
    recorded as "no imagery here" and skipped.
    """


class MissingAssetError(InputDataError):
    """An item has no asset for a band the request needs."""


class FolderInTheWayError(GarimpoError, IsADirectoryError):
    """A folder where a cache writes a file: refused, never removed (it may hold anything)."""

    def __init__(self, path: str | os.PathLike, cache: str):
        super().__init__(
            f"{cache} path {path}: a folder sits where a cache file goes; remove it (rm -r {path}) and run again"
        )
