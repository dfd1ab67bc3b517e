"""Shared plumbing for every stage: user errors, hashing, atomic writes, image I/O, targets, the zoo.

This module imports nothing: ``import lowlight_edge`` stays instant, and the version is read from
the installed distribution's metadata only when asked for.
"""

from __future__ import annotations

DISTRIBUTION = "lowlight-edge"
UNKNOWN_VERSION = "0+unknown"  # not installed (e.g. run from a bare copy of the sources)

__all__ = ["DISTRIBUTION", "__version__", "version"]


def version() -> str:
    """The installed ``lowlight-edge`` distribution's version, or UNKNOWN_VERSION when it is not installed."""
    from importlib import metadata  # stdlib, but ~10 ms: only --version and __version__ pay for it

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return UNKNOWN_VERSION


def __getattr__(name: str) -> str:
    if name == "__version__":
        return version()
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
