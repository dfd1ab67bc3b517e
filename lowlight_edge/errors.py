"""Every error a user can cause, in one place.

Each carries the CLI exit code it maps to (brief: 1 = a check failed, 2 = bad usage or a missing
requirement). Messages are one line: what is wrong, then how to fix it. Internal bugs are
ordinary exceptions and keep their traceback.
"""

from __future__ import annotations


class LowlightError(Exception):
    """Base of all user-facing errors; never raised directly."""

    exit_code = 2


class UsageError(LowlightError):
    """Bad arguments: unknown model or target, impossible resolution, conflicting options."""


class ConfigError(UsageError):
    """A config file (targets.yaml, a precision plan) is malformed."""


class WeightsError(LowlightError):
    """A checkpoint is missing, corrupt, mismatched or unsafe."""


class DataError(LowlightError):
    """Input images or RAW files are missing, unreadable or unusable."""


class MissingRequirement(LowlightError):
    """A package, runtime or piece of hardware the request needs is not here."""


class CheckFailed(LowlightError):
    """A measured check failed, e.g. a fidelity budget. Exit code 1."""

    exit_code = 1
