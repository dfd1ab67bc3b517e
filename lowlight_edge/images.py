"""Reading, fitting and writing RGB images as float32 arrays in [0, 1].

Every stage feeds models through these functions so that calibration, verification, the bench
and the enhance command all see the same pixels for the same file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lowlight_edge.atomic import atomic_path
from lowlight_edge.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def list_images(folder: str | Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files of a folder, sorted by name; a clear error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        msg = f"image folder {folder} does not exist; pass a folder of PNG/JPEG images"
        raise DataError(msg)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes and p.is_file())
    if not files:
        msg = f"no images ({', '.join(suffixes)}) in {folder}; pass a folder of PNG/JPEG images"
        raise DataError(msg)
    return files


def read_rgb(path: str | Path) -> np.ndarray:
    """HxWx3 float32 RGB in [0, 1] (alpha dropped, greyscale expanded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            return np.asarray(rgb, dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError) as err:
        msg = f"cannot read image {path}: {err}; pass a valid PNG/JPEG file"
        raise DataError(msg) from err


def fit(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize to cover HxW keeping the aspect ratio, then centre-crop to exactly HxW."""
    from PIL import Image

    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    scale = max(height / h, width / w)
    new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
    channels = [
        np.asarray(Image.fromarray(image[..., c]).resize((new_w, new_h), Image.Resampling.BILINEAR))
        for c in range(image.shape[2])
    ]
    resized = np.stack(channels, axis=-1)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return np.ascontiguousarray(resized[top : top + height, left : left + width])


def to_nchw(image: np.ndarray) -> np.ndarray:
    """HxWxC -> 1xCxHxW float32 (HxW -> 1x1xHxW)."""
    if image.ndim == 2:
        image = image[..., None]
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)


def from_nchw(batch: np.ndarray) -> np.ndarray:
    """1xCxHxW -> HxWxC."""
    return np.ascontiguousarray(batch[0].transpose(1, 2, 0))


def quantize_8bit(image: np.ndarray) -> np.ndarray:
    """Float [0,1] -> uint8 the way torchvision's save_image does (x*255 + 0.5, clamp, floor)."""
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write an HxWx3 float image in [0,1] as an 8-bit PNG, atomically."""
    from PIL import Image


    with atomic_path(path) as tmp:
        Image.fromarray(quantize_8bit(image)).save(tmp, format="PNG")
