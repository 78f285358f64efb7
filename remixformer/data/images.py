"""Safe image loading: every image becomes an 8-bit RGB ``PIL.Image`` or a :class:`BadImageError`.

- EXIF orientation is applied (phones store portrait photos rotated, with an orientation tag).
- RGBA / LA / palette images lose their alpha channel (the colour values underneath are kept);
  grayscale becomes RGB; 16-bit and 32-bit integer images are scaled to 8 bits (``v * 255 / 65535``).
- Missing, unreadable, truncated files, images above ``max_pixels`` (decompression bombs) and images
  more than ``MAX_ASPECT_RATIO`` times longer than wide raise :class:`BadImageError` naming the file
  and the case; the size and shape are read from the header, before any pixel is decoded.
- Our pixel limit replaces Pillow's process-wide one (``Image.MAX_IMAGE_PIXELS``, which refuses images
  above 2 x 89,478,485 pixels): a larger ``max_pixels`` raises Pillow's limit to match, never lowers it.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from remixformer.data.config import DEFAULT_MAX_IMAGE_PIXELS, MAX_ASPECT_RATIO

ImageInput = str | Path | bytes | Image.Image | np.ndarray | None  # what to_pil accepts

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class BadImageError(ValueError):
    """An image cannot be used; the message names the file, the case and why."""

    def __init__(self, path: str, reason: str, case_id: str | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        self.case_id = case_id
        where = f" (case {case_id!r})" if case_id is not None else ""
        super().__init__(f"{self.path}{where}: {reason}")


class ImageTooLargeError(BadImageError):
    """The image's header shows more pixels than allowed, or a shape too elongated to resize safely."""


def _describe(src: str | os.PathLike | bytes) -> str:
    if isinstance(src, (bytes, bytearray)):
        return f"<{len(src)} bytes>"
    return str(src)


def case_insensitive_match(path: str | os.PathLike) -> Path | None:
    """A file in the same folder whose name differs from ``path``'s only in letter case, if any."""
    p = Path(path)
    try:
        names = os.listdir(p.parent)
    except OSError:
        return None
    low = p.name.lower()
    for n in names:
        if n.lower() == low and n != p.name:
            return p.parent / n
    return None


def missing_file_reason(path: str | os.PathLike) -> str:
    alt = case_insensitive_match(path)
    if alt is not None:
        return f"file not found (a file differing only in letter case exists: {alt.name})"
    return "file not found"


def allow_pixels(max_pixels: int) -> None:
    """Make Pillow's own decompression-bomb limit no stricter than ``max_pixels`` (ours is checked first).

    Pillow refuses images above ``2 * Image.MAX_IMAGE_PIXELS`` inside ``Image.open``; the limit is
    process-wide, so it is only ever raised, to the largest limit in use."""
    current = Image.MAX_IMAGE_PIXELS
    if current is not None and 2 * current < max_pixels:
        Image.MAX_IMAGE_PIXELS = int(max_pixels)


def _open(src: str | os.PathLike | bytes, case_id: str | None, max_pixels: int | None = None) -> Image.Image:
    name = _describe(src)
    if max_pixels is not None:
        allow_pixels(max_pixels)
    try:
        with warnings.catch_warnings():
            # Our own pixel limit applies below; PIL's warning for large images would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if isinstance(src, (bytes, bytearray)):
                return Image.open(io.BytesIO(src))
            return Image.open(src)
    except FileNotFoundError:
        raise BadImageError(name, missing_file_reason(src), case_id) from None
    except IsADirectoryError:
        raise BadImageError(name, "is a folder, not an image file", case_id) from None
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(name, f"image too large (decompression bomb guard): {e}", case_id) from None
    except UnidentifiedImageError:
        raise BadImageError(name, "not a readable image (corrupt or unknown format)", case_id) from None
    except OSError as e:
        raise BadImageError(name, f"cannot open: {e}", case_id) from None


def check_shape(
    size: tuple[int, int],
    name: str,
    max_pixels: int,
    case_id: str | None = None,
    max_aspect_ratio: float = MAX_ASPECT_RATIO,
) -> None:
    """Refuse, before decoding or resizing, an image of ``size = (width, height)`` that is empty, has
    more than ``max_pixels`` pixels, or is more than ``max_aspect_ratio`` times longer than wide."""
    w, h = size
    if w * h > max_pixels:
        raise ImageTooLargeError(
            name,
            f"{w}x{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,} (max_image_pixels)",
            case_id,
        )
    if w <= 0 or h <= 0:
        raise BadImageError(name, f"empty image ({w}x{h})", case_id)
    if max(w, h) > max_aspect_ratio * min(w, h):
        raise ImageTooLargeError(
            name,
            f"{w}x{h} is {max(w, h) / min(w, h):,.0f} times longer than wide; images up to "
            f"{max_aspect_ratio:g}:1 are accepted (resizing a longer one to the model's square input "
            "would take memory in proportion to its length)",
            case_id,
        )


def to_rgb8(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (see the module docstring for the rules)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.int64)
        arr = np.clip(arr, 0, 65535)
        arr8 = ((arr * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(arr8).convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 if np.nanmax(arr) <= 1.0 else 1.0
        arr8 = np.clip(np.nan_to_num(arr) * scale + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8).convert("RGB")
    if mode == "P":
        return img.convert("RGBA").convert("RGB")  # palette transparency goes through RGBA, then dropped
    return img.convert("RGB")  # RGBA, LA, L, 1, CMYK, YCbCr, ...


def load_image(
    src: str | os.PathLike | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    case_id: str | None = None,
) -> Image.Image:
    """Read an image file (or its bytes) as an 8-bit RGB image with EXIF orientation applied.

    Raises :class:`BadImageError` (a ``ValueError``) naming the file and the case when the file is
    missing, corrupt or truncated; :class:`ImageTooLargeError` (a subclass) when its header shows more
    than ``max_pixels`` pixels or a shape more than ``MAX_ASPECT_RATIO`` times longer than wide.
    """
    name = _describe(src)
    with _open(src, case_id, max_pixels) as raw:
        check_shape(raw.size, name, max_pixels, case_id)
        try:
            raw.load()
        except OSError as e:
            reason = "truncated file" if "truncated" in str(e).lower() else f"cannot decode: {e}"
            raise BadImageError(name, reason, case_id) from None
        except (ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise BadImageError(name, f"cannot decode: {e}", case_id) from None
        try:
            img = ImageOps.exif_transpose(raw)  # always a new image, detached from the file
        except Exception as e:  # malformed EXIF blocks raise all sorts of errors
            raise BadImageError(name, f"unreadable EXIF orientation: {e}", case_id) from None
    return to_rgb8(img)


def verify_image(
    src: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, case_id: str | None = None
) -> tuple[int, int]:
    """Fully decode an image to prove it is usable; returns its (width, height) after EXIF rotation."""
    return load_image(src, max_pixels=max_pixels, case_id=case_id).size


def image_size(src: str | os.PathLike, *, case_id: str | None = None) -> tuple[int, int]:
    """(width, height) from the file header only (no decoding)."""
    img = _open(src, case_id)
    try:
        return img.size
    finally:
        img.close()


def to_pil(image: ImageInput, name: str, max_pixels: int) -> Image.Image:
    """Any accepted image input as 8-bit RGB (EXIF orientation applied for files and bytes). Every form
    is refused before decoding or resizing when over ``max_pixels`` or more than ``MAX_ASPECT_RATIO``
    times longer than wide (:class:`~remixformer.data.images.ImageTooLargeError`)."""
    if isinstance(image, (str, Path, bytes)):
        try:
            return load_image(image if not isinstance(image, str) else Path(image), max_pixels=max_pixels)
        except BadImageError as e:
            raise type(e)(f"{name} image {e.path}", e.reason) from None
    if isinstance(image, Image.Image):
        check_shape(image.size, f"{name} image", max_pixels)
        return to_rgb8(image)
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
            raise ValueError(f"{name}: expected an (H, W, 3) or (H, W) array, got shape {arr.shape}")
        check_shape((arr.shape[1], arr.shape[0]), f"{name} image", max_pixels)
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating) and arr.max() <= 1.0:
                arr = arr * 255.0
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        return Image.fromarray(arr[..., :3])
    raise ValueError(
        f"{name}: expected a file path, bytes, a PIL image or an array, got {type(image).__name__}"
    )
