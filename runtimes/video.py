"""Night video for ``python -m runtimes enhance``: decode, enhance each frame, encode.

Built on PyAV (the ``av`` package) rather than OpenCV's VideoCapture/VideoWriter or piping raw
frames through an ``ffmpeg`` process, because:

* it streams: frames are decoded and encoded one at a time, so a long clip never sits in memory;
* it is exact: the encoder gets the input's own frame rate (a Fraction, e.g. 30000/1001) as its
  time base and one pts per frame, so the output has the input's frame count and rate (OpenCV
  rounds the rate to a float and its reported frame counts are estimates);
* its wheel ships FFmpeg's libraries (H.264 via libx264 included), so ``pip install`` is all it
  needs: no system ffmpeg binary, no codec hunt.

This module knows nothing of models: ``enhance_video`` takes the per-frame function that
``runtimes.enhance`` uses for photos (the same resizing/cropping, tiling rules and non-finite
check), so a video is not a second code path for the model. The output is written under a
temporary name beside ``DIR/<stem>.mp4`` and renamed only when complete (lowlight_edge.atomic):
Ctrl-C or an error leaves no partial output file. The temporal flicker of the result
(lowlight_edge.metrics.FlickerMeter) is measured as it streams.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from lowlight_edge.atomic import atomic_path
from lowlight_edge.errors import DataError, MissingRequirement
from lowlight_edge.metrics import FlickerMeter

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
CODEC = "libx264"
CRF = "18"  # visually lossless H.264; the enhanced frames are what is being judged


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _av() -> Any:
    try:
        import av
    except ImportError as err:
        msg = f"reading videos needs PyAV ({err}); pip install av"
        raise MissingRequirement(msg) from err
    return av


@dataclass(frozen=True)
class VideoInfo:
    height: int
    width: int
    rate: Fraction  # frames per second
    frames: int | None  # None: the container does not say


def _open(path: Path) -> Any:
    av = _av()
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as err:
        msg = f"{path} is not a readable video ({err}); pass an .mp4/.mov/.mkv file"
        raise DataError(msg) from err
    if not container.streams.video:
        container.close()
        msg = f"{path} holds no video stream; pass a video file"
        raise DataError(msg)
    return container


def _info(stream: Any, path: Path) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate
    if not rate:
        msg = f"{path} does not say its frame rate; re-mux it with a constant frame rate"
        raise DataError(msg)
    return VideoInfo(stream.height, stream.width, Fraction(rate), stream.frames or None)


def probe(path: Path) -> VideoInfo:
    """Size, frame rate and (when the container says) frame count of ``path``'s first video stream."""
    container = _open(path)
    try:
        return _info(container.streams.video[0], path)
    finally:
        container.close()


@dataclass(frozen=True)
class VideoResult:
    path: Path
    frames: int
    rate: Fraction
    height: int
    width: int
    flicker: float | None  # output/input mean frame-to-frame change; None for a single frame

    def line(self) -> str:
        flicker = "n/a (one frame)" if self.flicker is None else f"{self.flicker:.3f}"
        return (
            f"wrote {self.path} ({self.height}x{self.width}, {self.frames} frames at {float(self.rate):.3f} fps); "
            f"flicker ratio {flicker} (output/input mean frame-to-frame change, 1.0 = none added)"
        )


class VideoWriter:
    """H.264 MP4 at ``rate``, one pts per frame, written under a temporary name and renamed on close.

    The stream is opened on the first frame (its size decides it); a frame of another size is a
    DataError. Leaving the ``with`` block on an error or Ctrl-C leaves no file at ``dest``.
    """

    def __init__(self, dest: Path, rate: Fraction, source: Path | None = None) -> None:
        self.dest, self.rate, self.source = dest, Fraction(rate), source or dest
        self.count = 0
        self.size: tuple[int, int] | None = None
        self._stream = None

    def __enter__(self) -> VideoWriter:
        av = _av()
        self._atomic = atomic_path(self.dest)
        tmp = self._atomic.__enter__()
        try:
            self._sink = av.open(str(tmp), "w", format="mp4")
        except BaseException as err:
            self._atomic.__exit__(type(err), err, err.__traceback__)
            raise
        return self

    def write(self, rgb: np.ndarray) -> None:
        """Encode one HxWx3 frame in [0, 1] (clipped, rounded to 8 bits)."""
        av = _av()
        if self._stream is None:
            self.size = rgb.shape[:2]
            stream = self._sink.add_stream(CODEC, rate=self.rate, options={"crf": CRF})
            stream.height, stream.width = self.size
            stream.pix_fmt = "yuv420p" if self.size[0] % 2 == 0 and self.size[1] % 2 == 0 else "yuv444p"
            stream.time_base = 1 / self.rate
            self._stream = stream
        elif rgb.shape[:2] != self.size:
            msg = f"{self.source} changes frame size at frame {self.count} ({self.size} to {rgb.shape[:2]}); split it into constant-size clips"
            raise DataError(msg)
        pixels = np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
        frame.pts = self.count
        for packet in self._stream.encode(frame):
            self._sink.mux(packet)
        self.count += 1

    def __exit__(self, kind: Any, err: BaseException | None, tb: Any) -> None:
        try:
            if err is None:
                if self._stream is None:
                    msg = f"{self.source} holds no decodable frames; pass another video"
                    raise DataError(msg)
                for packet in self._stream.encode(None):
                    self._sink.mux(packet)
        except BaseException as failure:
            self._sink.close()
            self._atomic.__exit__(type(failure), failure, failure.__traceback__)
            raise
        self._sink.close()
        self._atomic.__exit__(kind, err, tb)


def iter_frames(path: Path) -> Any:
    """(VideoInfo, generator of HxWx3 float32 frames in [0, 1]) for ``path``'s first video stream.

    Decoding errors become one DataError line; the container closes when the generator ends.
    """
    av = _av()
    source = _open(path)
    stream = source.streams.video[0]
    try:
        info = _info(stream, path)
    except BaseException:
        source.close()
        raise
    stream.thread_type = "AUTO"

    def frames() -> Any:
        try:
            for frame in source.decode(stream):
                yield frame.to_ndarray(format="rgb24").astype(np.float32) / 255.0
        except av.error.FFmpegError as err:
            msg = f"{path} could not be decoded to the end ({err}); nothing was written for it: re-encode or pass another video"
            raise DataError(msg) from err
        finally:
            source.close()

    return info, frames()


def write_video(dest: Path, frames: Any, rate: Fraction) -> int:
    """Encode an iterable of HxWx3 frames in [0, 1] to ``dest`` atomically; returns the frame count."""
    with VideoWriter(dest, rate) as writer:
        for rgb in frames:
            writer.write(rgb)
    return writer.count


def enhance_video(
    path: Path,
    dest: Path,
    per_frame: Callable[[np.ndarray, Callable[[str], None] | None], tuple[np.ndarray, np.ndarray]],
    say: Callable[[str], None] = print,
    progress: bool | None = None,
) -> VideoResult:
    """Stream ``path`` through ``per_frame`` into ``dest`` (H.264 MP4) at the input's rate.

    ``per_frame(rgb, say)`` takes an HxWx3 float32 frame in [0, 1] and returns (the frame the
    model saw, after any crop to the size multiple; its HxWx3 output in [0, 1]). Only the first
    frame gets ``say`` (its crop/tiling messages and seam check); later ones get None, since every
    frame of a stream is fitted the same way. ``progress``: tqdm bar with fps (None: only on a terminal).
    """
    from tqdm import tqdm

    meter = FlickerMeter()
    start = time.perf_counter()
    info, frames = iter_frames(path)
    bar = tqdm(total=info.frames, unit="frame", desc=path.name, disable=None if progress is None else not progress)
    try:
        with VideoWriter(dest, info.rate, source=path) as writer:
            for rgb in frames:
                seen, out = per_frame(rgb, say if writer.count == 0 else None)
                meter.update(seen, out)
                writer.write(out)
                bar.update(1)
    finally:
        bar.close()
        frames.close()
    elapsed = time.perf_counter() - start
    assert writer.size is not None  # set by the first frame, and an empty stream raised above
    result = VideoResult(dest, writer.count, info.rate, writer.size[0], writer.size[1], meter.ratio())
    say(f"{path.name}: {writer.count} frames in {elapsed:.1f} s ({writer.count / elapsed if elapsed > 0 else 0.0:.1f} fps)")
    return result
