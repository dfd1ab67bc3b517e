"""Timed calls of runners, each in a process of its own when one process would time them wrong.

OpenVINO's CPU plugin sets the denormal mode (FTZ/DAZ) of a thread once, when a compiled model
builds its graph on its stream thread, and compiled models with the same thread configuration
share those threads: in one process, two models compiled with different modes both run in
whichever mode was set last. Measured on IAT's FP32 graph at 400x600 (2 threads, Intel Xeon with
AMX, 2026-12-03): 110 ms without and 87 ms with flushing, each in a process of its own; 102 and
102 ms interleaved in one process, so the quantize stage's option search called flushing a tie.

``timers`` gives each runner a timed call (frame index -> ms of one run). When the runners'
``thread_state`` differ, each runs in a child process (``python -m runtimes.isolation``) that
loads it from ``Runner.portable`` and times the call itself, so no pipe is on the timed path;
otherwise the calls run here.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lowlight_edge.errors import MissingRequirement
from lowlight_edge.memory import peak_rss_mb
from runtimes import get_backend


def needs_isolation(runners: Mapping[str, Any]) -> bool:
    """Whether running these runners in one process would let one's thread state leak into another's
    timing (a runner whose state is None sets none: ONNX Runtime runs on threads of its own)."""
    states = {runner.thread_state() for runner in runners.values()}
    return len(states - {None}) > 1


def time_call(runner: Any, frame: np.ndarray) -> float:
    """ms of one run of ``runner`` on ``frame``, here."""
    start = time.perf_counter()
    runner(frame)
    return (time.perf_counter() - start) * 1e3


class ChildRunner:
    """One runner loaded in a child process that holds the frames and times each call itself.

    Started here; ``ready`` waits until it has loaded (children start side by side: each reads
    and compiles its graph, seconds for a 12 MP one)."""

    def __init__(self, spec: dict[str, Any], frames_file: Path, label: str) -> None:
        self.label = label
        self.peak_rss_mb: float | None = None
        self._log = Path(spec["path"]).with_name("stderr.txt")  # a file: a full pipe would block the child
        command = [sys.executable, "-m", "runtimes.isolation", json.dumps({**spec, "frames": str(frames_file)})]
        with self._log.open("w") as log:
            self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                          text=True, bufsize=1)

    def ready(self) -> ChildRunner:
        """Wait until the child has loaded its runner (MissingRequirement, with its last error line, if it failed)."""
        self._expect("ready")
        return self

    def _expect(self, what: str) -> str:
        line = self._proc.stdout.readline() if self._proc.stdout else ""
        if not line.startswith(what):
            self.close()
            err = self._log.read_text(errors="replace").strip().splitlines() if self._log.is_file() else []
            msg = f"the timing process of {self.label} failed: {err[-1] if err else line.strip() or 'no answer'}"
            raise MissingRequirement(msg)
        return line[len(what):].strip()

    def __call__(self, index: int) -> float:
        self._proc.stdin.write(f"time {index}\n")
        return float(self._expect("ms"))

    def max_abs(self, index: int) -> float:
        """The largest |output| of frame ``index`` run in the child: what it computes, not only how fast."""
        self._proc.stdin.write(f"max {index}\n")
        return float(self._expect("max"))

    @property
    def pid(self) -> int:
        return self._proc.pid

    def close(self) -> None:
        """Stop the child; its peak RSS (MB) is then in ``peak_rss_mb`` (None if it did not say)."""
        if self._proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self._proc.stdin.write("quit\n")
                self._proc.stdin.flush()
                line = self._proc.stdout.readline()
                if line.startswith("peak"):
                    self.peak_rss_mb = float(line.split()[1])
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


@contextlib.contextmanager
def timers(runners: Mapping[str, Any], frames: list[np.ndarray]) -> Iterator[dict[str, Callable[[int], float]]]:
    """{name: timed call}: call(i) runs frames[i % len(frames)] once and returns its ms.

    In this process, unless ``needs_isolation``: then each runner in a child process of its own
    (the runners here stay open and unused meanwhile), loaded from ``Runner.portable``.
    """
    if not needs_isolation(runners):
        yield {name: (lambda i, r=runner: time_call(r, frames[i % len(frames)])) for name, runner in runners.items()}
        return
    children: list[ChildRunner] = []
    with tempfile.TemporaryDirectory(prefix="lowlight-timing-") as tmp:
        folder = Path(tmp)
        frames_file = folder / "frames.npy"
        np.save(frames_file, np.stack([np.ascontiguousarray(f, dtype=np.float32) for f in frames]))
        try:
            for n, (name, runner) in enumerate(runners.items()):
                (folder / str(n)).mkdir()
                children.append(ChildRunner(runner.portable(folder / str(n)), frames_file, name))
            yield dict(zip(runners, [child.ready() for child in children], strict=True))
        finally:
            for child in children:
                child.close()


def serve(spec: dict[str, Any]) -> int:
    """The child: load the runner, answer "ready", then "ms <time>" for each "time <index>" line
    ("max <value>" for "max <index>"), until "quit"."""
    frames = np.load(spec["frames"], mmap_mode="r")  # shared pages: two children of 12 MP frames hold them once
    runner = get_backend(spec["backend"]).load(spec["path"], device=spec["device"], options=spec["options"])
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        frame = np.array(frames[int(words[1]) % len(frames)])  # a private copy, made before the clock starts
        if words[0] == "max":
            print(f"max {float(np.max(np.abs(runner(frame))))!r}", flush=True)
        else:
            print(f"ms {time_call(runner, frame)!r}", flush=True)
    runner.close()
    print(f"peak {peak_rss_mb():.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(serve(json.loads(sys.argv[1])))
