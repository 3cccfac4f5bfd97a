"""One exception hierarchy for the whole workbench.

Every error raised on bad input is a :class:`WorkbenchError` (or a subclass)
whose message names the input and says what was expected.
"""

from __future__ import annotations

__all__ = [
    "WorkbenchError",
    "ConfigError",
    "StorageError",
    "CatalogError",
    "PipelineError",
    "ClusterError",
    "DataError",
    "FeatureStoreError",
    "ArgumentError",
]


class WorkbenchError(Exception):
    """Base class of every error the workbench raises on purpose."""


class ConfigError(WorkbenchError, ValueError):
    """A setting is unknown, of the wrong type, or has an invalid value."""


class StorageError(WorkbenchError, OSError):
    """A read or write on local disk or an object store failed."""


class CatalogError(WorkbenchError, ValueError):
    """A catalogue query is invalid or a catalogue service answered badly."""


class PipelineError(WorkbenchError):
    """A pipeline file is invalid or one of its stages failed."""


class ClusterError(WorkbenchError):
    """A Dask cluster could not be reached or started."""


class DataError(WorkbenchError, ValueError):
    """An input file or array is malformed (truncated, wrong shape, missing band...)."""


class FeatureStoreError(DataError):
    """A feature-store call got bad input, or the stored state does not allow it."""


class ArgumentError(DataError, TypeError):
    """A function was called with a keyword it does not take (the message lists the ones it does).

    A :class:`DataError` (bad input, named) and a ``TypeError`` (what Python raises for an unknown keyword),
    so either ``except`` catches it.
    """
