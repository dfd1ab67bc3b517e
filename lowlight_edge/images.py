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
    """HxWx3 float32 RGB in [0, 1] at the file's full precision (alpha dropped, greyscale expanded).

    8-bit images (RGB, greyscale, palette, RGBA, bilevel, JPEG's YCbCr) are divided by 255;
    16-bit PNGs (RGB, RGBA, greyscale, greyscale+alpha) by 65535, with every bit kept. Anything
    else that Pillow opens but cannot give exactly (CMYK, float or 32-bit integer images, 16-bit
    colour outside PNG) is a DataError naming the file, never a silent conversion.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if _is_16bit_png(image):
                return _read_16bit_png(path, image)
            mode = image.mode
            if mode.startswith("I;16"):
                rgb = np.asarray(image).astype(np.float32) / 65535.0
                return np.ascontiguousarray(np.repeat(rgb[..., None], 3, axis=2))
            if mode not in _EXACT_8BIT_MODES:
                msg = (
                    f"cannot read image {path} faithfully: Pillow gives it as mode {mode!r}, which has no exact "
                    "RGB [0, 1] reading; save it as an 8- or 16-bit RGB or greyscale PNG"
                )
                raise DataError(msg)
            if any(";16" in _rawmode(tile) for tile in image.tile):
                msg = (
                    f"cannot read image {path} faithfully: its 16-bit {image.format} colour would be cut to 8 bits; "
                    "save it as a 16-bit PNG"
                )
                raise DataError(msg)
            rgb = image.convert("RGB")
            return np.asarray(rgb, dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        msg = f"cannot read image {path}: {err}; pass a valid PNG/JPEG file"
        raise DataError(msg) from err


# Pillow modes whose convert("RGB") is exact: 8 bits per channel, greyscale expanded, palette looked up.
_EXACT_8BIT_MODES = ("RGB", "RGBA", "RGBX", "L", "LA", "P", "PA", "1", "YCbCr")
# 16-bit PNG rawmodes -> the channels that hold colour, read as 8-bit high and low bytes below.
_PNG16 = {"RGB;16B": ("RGB;16L", 3), "RGBA;16B": ("RGBA;16L", 3), "I;16B": (None, 1), "LA;16B": ("RGBA", 1)}


def _rawmode(tile: object) -> str:
    args = getattr(tile, "args", None)
    if args is None and isinstance(tile, tuple) and len(tile) > 3:  # Pillow < 11: plain tuples
        args = tile[3]
    if isinstance(args, tuple):
        args = args[0] if args else ""
    return args if isinstance(args, str) else ""


def _is_16bit_png(image: object) -> bool:
    return getattr(image, "format", None) == "PNG" and any(_rawmode(t) in _PNG16 for t in image.tile)


def _decode_as(path: str | Path, rawmode: str) -> np.ndarray:
    """The PNG's pixels decoded (unfiltered) by Pillow with another raw mode of the same bit width."""
    from PIL import Image

    with Image.open(path) as image:
        tiles = []
        for tile in image.tile:
            if hasattr(tile, "_replace"):
                tiles.append(tile._replace(args=rawmode))
            else:  # Pillow < 11
                tiles.append((*tile[:3], rawmode, *tile[4:]))
        image.tile = tiles
        image.load()
        return np.asarray(image)


def _read_16bit_png(path: str | Path, image: object) -> np.ndarray:
    """HxWx3 float32 of a 16-bit PNG with all 16 bits.

    Pillow keeps only the high byte of 16-bit colour (RGB;16B -> RGB), and clips greyscale when
    converting it; so the file is decoded twice with raw modes of the same pixel width (which keeps
    the PNG filters right): once for the high bytes, once for the low bytes (RGB;16L reads the
    second byte of each big-endian sample). 16-bit greyscale+alpha is decoded as 8-bit RGBA,
    whose four bytes are the grey and alpha samples' high and low bytes.
    """
    rawmode = next(_rawmode(t) for t in image.tile if _rawmode(t) in _PNG16)
    low_mode, colour = _PNG16[rawmode]
    if low_mode is None:  # 16-bit greyscale: Pillow's I;16 is exact
        grey = np.asarray(image).astype(np.float32) / 65535.0
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
    if rawmode == "LA;16B":
        both = _decode_as(path, low_mode).astype(np.uint16)
        grey = (both[..., 0] << 8 | both[..., 1]).astype(np.float32) / 65535.0
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
    high = _decode_as(path, rawmode).astype(np.uint16)[..., :colour]
    low = _decode_as(path, low_mode).astype(np.uint16)[..., :colour]
    return np.ascontiguousarray(((high << 8) | low).astype(np.float32) / 65535.0)


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image file from its header; DataError if it cannot be opened."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        msg = f"cannot read image {path}: {err}; pass a valid PNG/JPEG file"
        raise DataError(msg) from err
    return height, width


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
