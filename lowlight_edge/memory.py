"""The process's peak resident memory, and resetting it so one stage's peak can be read alone."""

from __future__ import annotations

import resource
import sys


def peak_rss_mb() -> float:
    """Peak resident set size of this process (since start or the last reset), in MB.

    Read from VmHWM in /proc/self/status: ru_maxrss is not usable in a subprocess, because Linux
    carries the high-water mark across fork and exec, so a worker started by a parent holding
    torch and a model would report at least the parent's size (measured: 341 MB for an 8 MB
    child). ru_maxrss is the fallback where /proc is absent (KB on Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def reset_peak_rss() -> bool:
    """Set the peak back to the current RSS (Linux: write 5 to /proc/self/clear_refs).

    Returns False where that is not possible; the next peak_rss_mb() is then the peak since start.
    """
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True
