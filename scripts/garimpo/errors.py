"""Domain errors: each says what went wrong, where, and what to do about it."""


class GarimpoError(Exception):
    """Base class for errors a user can meet and fix."""


class InputDataError(GarimpoError, ValueError):
    """A user-supplied file (points, polygons, images) cannot be used."""


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
