"""Images in records: a message's content may be a list of parts, ``{"type": "text", "text": ...}`` and
``{"type": "image", "image": REF}``, where ``REF`` is an absolute path (a path in a data file is taken
relative to that file), a ``data:image/...;base64,`` URL, raw bytes, or a PIL image (a ``datasets``
Image column arrives as ``{"bytes", "path"}`` and becomes bytes, or its path).

Every image is checked when its row is loaded: a missing file, something that is not an image, or a
truncated one is a :class:`DataError` naming the column, so a bad image is one counted reject (or one
error line), never a crash in the middle of training.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from steer.errors import DataError

DATA_URL = "data:image/"


def _pil() -> Any:
    from PIL import Image

    return Image


def is_image(value: Any) -> bool:
    """Whether ``value`` is a PIL image."""
    try:
        return isinstance(value, _pil().Image)
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        return False


def reference(value: Any, base: Path | None, column: str) -> Any:
    """The record's reference for an image value of a row: an absolute path, bytes or a PIL image,
    checked (see :func:`check`)."""
    if isinstance(value, Mapping):  # a datasets Image column: {"bytes": ..., "path": ...}
        data, path = value.get("bytes"), value.get("path")
        value = data if data else path
    if isinstance(value, (bytes, bytearray)):
        ref: Any = bytes(value)
    elif is_image(value):
        ref = value
    elif isinstance(value, str) and value.startswith(DATA_URL):
        ref = decode_data_url(value, column)
    elif isinstance(value, str) and value.strip():
        path = Path(value)
        ref = str(path if path.is_absolute() or base is None else (base / path))
    else:
        raise DataError("missing image", f"no image (got {type(value).__name__})", column=column)
    check(ref, column)
    return ref


def decode_data_url(url: str, column: str) -> bytes:
    """The bytes of a ``data:image/...;base64,`` URL."""
    head, _, body = url.partition(",")
    if not head.endswith(";base64"):
        raise DataError("bad image", "a data URL must be base64 (data:image/png;base64,...)", column=column)
    try:
        return base64.b64decode(body, validate=True)
    except ValueError:
        raise DataError("bad image", "the data URL is not valid base64", column=column) from None


# the formats decoded: common raster formats only (PIL would also run Ghostscript for EPS)
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")


def open_image(ref: Any, column: str = "image", formats: tuple[str, ...] = FORMATS) -> Any:
    """The decoded image (RGB) of a reference; a missing, unreadable or truncated one, or one in
    another format than ``formats``, is a DataError."""
    Image = _pil()  # noqa: N806
    if is_image(ref):
        try:
            return ref.convert("RGB")
        except Exception as err:  # noqa: BLE001 - a lazily loaded image decodes here
            raise DataError("bad image", f"PIL image: not readable ({type(err).__name__})", column=column) from None
    name = ref[:200] if isinstance(ref, str) else "image bytes"
    if isinstance(ref, str):
        try:
            present = Path(ref).is_file()
        except (OSError, ValueError):  # a name too long for the file system, or with a NUL
            present = False
        if not present:
            raise DataError("missing image", f"no such image file: {name}", column=column)
    try:
        with Image.open(io.BytesIO(ref) if isinstance(ref, bytes) else ref, formats=formats) as img:
            img.load()  # decodes every byte: a truncated file fails here
            return img.convert("RGB")
    except Exception as err:  # noqa: BLE001 - PIL raises many kinds (UnidentifiedImageError, DecompressionBombError...)
        what = "truncated" if "truncated" in str(err).lower() else "not a readable image"
        raise DataError("bad image", f"{name}: {what} ({type(err).__name__})", column=column) from None


def load(ref: Any, column: str = "image") -> Any:
    """The decoded image (RGB) of any reference a record, row or request holds: a path, bytes, a
    ``data:`` URL (how a prepared dataset stores bytes) or a PIL image."""
    if isinstance(ref, str) and ref.startswith(DATA_URL):
        ref = decode_data_url(ref, column)
    return open_image(ref, column)


def check(ref: Any, column: str) -> None:
    """Decode ``ref`` once (the image is not kept) so that a bad image fails at load, named."""
    open_image(ref, column)


def part(ref: Any) -> dict[str, Any]:
    """An image part of a message's content."""
    return {"type": "image", "image": ref}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def with_placeholders(text: str, refs: list[Any], token: str = "<image>", column: str = "messages") -> list[dict]:
    """Content parts from text whose ``token`` placeholders stand for ``refs`` in order (LLaMA-Factory's
    multimodal format); a count that does not match is a DataError."""
    pieces = text.split(token)
    if len(pieces) - 1 > len(refs):
        raise DataError("image count", f"{len(pieces) - 1} {token} placeholders but {len(refs)} images left",
                        column=column)
    parts: list[dict] = []
    for k, piece in enumerate(pieces):
        if k:
            parts.append(part(refs.pop(0)))
        if piece:
            parts.append(text_part(piece))
    return parts


def user_message(text: str, paths: list[str] | tuple[str, ...] = (), where: str = "--image") -> dict[str, Any]:
    """A user turn about ``paths`` (image files, checked and made absolute: a saved conversation still
    finds them): image parts, then the text; plain text content when there are none."""
    if not paths:
        return {"role": "user", "content": text}
    parts = []
    for path in paths:
        ref = str(Path(path).expanduser().resolve())
        check(ref, where)
        parts.append(part(ref))
    return {"role": "user", "content": [*parts, text_part(text)]}
