"""Image sources: where images (and, when known, their labels) come from.

Every source is a list of N items that can each be opened as a PIL image, with optional integer labels,
class names, per-item split names, and a fingerprint that changes when the items do.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_jpeg

from clipadapt.data.classes import folder_name_to_class, listing, match_labels
from clipadapt.errors import ClipAdaptError, plural

log = logging.getLogger("clipadapt")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


class UnreadableImage(Exception):
    """One image could not be read; extraction skips it and counts it."""


JPEG_MAGIC = b"\xff\xd8\xff"
MAGIC = {JPEG_MAGIC: "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"GIF8": "GIF", b"BM": "BMP", b"II*\x00": "TIFF",
         b"MM\x00*": "TIFF", b"RIFF": "WebP"}  # fmt: skip


def exception_detail(exc: BaseException) -> str:
    """The first line of an exception's message, without object reprs that carry memory addresses."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return re.sub(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>", "", text).strip() or type(exc).__name__


def open_image(path: str | os.PathLike | io.BytesIO) -> Image.Image:
    """Open and fully decode one image (a file, or its bytes) as RGB, raising :class:`UnreadableImage` with
    a stable, specific reason: ``file not found``, ``empty file``, ``not an image …``, ``truncated or
    corrupt <FORMAT> file (…)``, ``image too large …``.

    JPEGs are decoded by torchvision's libjpeg-turbo decoder, which gives the very pixels Pillow gives
    (tested on baseline, progressive, 4:2:0/4:2:2/4:4:4, grayscale and CMYK files) in about half the time;
    anything else, or a JPEG torchvision refuses, goes through Pillow.
    """
    try:
        data = path.getvalue() if isinstance(path, io.BytesIO) else Path(path).read_bytes()
    except FileNotFoundError:
        raise UnreadableImage("file not found") from None
    except OSError as exc:
        raise UnreadableImage(f"cannot read the file ({exception_detail(exc)})") from None
    if not data:
        raise UnreadableImage("empty file (0 bytes)")
    if data.startswith(JPEG_MAGIC):
        try:
            pixels = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
            return Image.fromarray(pixels.permute(1, 2, 0).numpy())
        except RuntimeError:
            pass  # Pillow decides (and words the error)
    image_format = next((name for magic, name in MAGIC.items() if data.startswith(magic)), None)
    try:
        with Image.open(io.BytesIO(data)) as img:
            image_format = img.format or image_format
            img.load()
            return img.convert("RGB")
    except UnidentifiedImageError:
        if image_format is None:
            raise UnreadableImage("not an image (no known image format; another kind of file?)") from None
        raise UnreadableImage(f"truncated or corrupt {image_format} file") from None
    except Image.DecompressionBombError as exc:
        raise UnreadableImage(f"image too large ({exception_detail(exc)})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        what = image_format or "image"
        raise UnreadableImage(f"truncated or corrupt {what} file ({exception_detail(exc)})") from None


class ImageSource(ABC):
    """N images with optional labels (N,), class names (C,) and split names (N,)."""

    name: str
    classnames: list[str] | None
    labels: np.ndarray | None
    splits: np.ndarray | None = None

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def load(self, index: int) -> Image.Image:
        """The image at ``index`` as RGB; raises :class:`UnreadableImage`."""

    @abstractmethod
    def describe(self, index: int) -> str:
        """A human-readable name for item ``index`` (its path, or dataset and index)."""

    @abstractmethod
    def fingerprint(self) -> str:
        """Changes whenever the items or labels change; part of the feature cache key."""

    def paths(self) -> list[str] | None:
        return None


def _hash(parts: Sequence[object]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(repr(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


class FileListSource(ImageSource):
    """Images given as file paths (a folder tree or a CSV manifest)."""

    def __init__(
        self,
        name: str,
        files: Sequence[str],
        labels: np.ndarray | None,
        classnames: list[str] | None,
        splits: np.ndarray | None = None,
    ) -> None:
        self.name = name
        self.files = list(files)
        self.labels = labels
        self.classnames = classnames
        self.splits = splits

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> Image.Image:
        return open_image(self.files[index])

    def describe(self, index: int) -> str:
        return self.files[index]

    def paths(self) -> list[str]:
        return self.files

    def fingerprint(self) -> str:
        stats = []
        for f in self.files:
            try:
                st = os.stat(f)
                stats.append((f, st.st_size, st.st_mtime_ns))
            except OSError:
                stats.append((f, -1, -1))
        labels = None if self.labels is None else self.labels.tolist()
        splits = None if self.splits is None else self.splits.tolist()
        return _hash([stats, labels, splits])


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def folder_source(root: str | os.PathLike, classnames: list[str] | None = None) -> FileListSource:
    """A folder with one sub-folder per class (labelled), or a flat folder of images (unlabelled).

    Without ``classnames``, the class names are the sub-folder names with ``_`` read as a space, sorted.
    With them, each sub-folder is matched to its class **by name** (:mod:`clipadapt.data.classes`); a
    sub-folder that matches no name is an error. Images lying beside the class folders are left out with
    a warning, and so are class folders that hold no image.
    """
    root = Path(root)
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    per_class = [sorted(str(p) for p in d.rglob("*") if p.is_file() and is_image_file(p)) for d in class_dirs]
    flat = sorted(str(p) for p in root.iterdir() if p.is_file() and is_image_file(p))
    if any(per_class):
        kept = [(d, files) for d, files in zip(class_dirs, per_class, strict=True) if files]
        empty = [d.name for d, files in zip(class_dirs, per_class, strict=True) if not files]
        where = f"{str(root)!r}"
        if flat:
            log.warning("%s: left out %s lying beside the class folders (first: %s); put each in its class folder",
                        where, plural(len(flat), "image"), Path(flat[0]).name)  # fmt: skip
        if empty:
            log.warning("%s: left out %s with no image: %s", where, plural(len(empty), "class folder"), listing(empty))
        folder_classes = [folder_name_to_class(d.name) for d, _ in kept]
        if classnames is None:
            classnames, indices = folder_classes, list(range(len(kept)))
        else:
            indices = match_labels([d.name for d, _ in kept], classnames, where, kind="class folder")
        files = [f for _, fs in kept for f in fs]
        labels = np.concatenate([np.full(len(fs), i, dtype=np.int64) for i, (_, fs) in zip(indices, kept, strict=True)])
        return FileListSource(root.name, files, labels, classnames)
    if not flat:
        raise ClipAdaptError(
            f"no images found in {str(root)!r} (expected one sub-folder of images per class, or images directly; "
            f"extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    return FileListSource(root.name, flat, None, classnames)


def read_manifest(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of a CSV manifest, which must have a ``path`` column."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ClipAdaptError(f"cannot read CSV manifest {str(path)!r}: {exc}") from None
    if "path" not in header:
        raise ClipAdaptError(f"CSV manifest {str(path)!r} needs a 'path' column (found: {', '.join(header) or 'none'})")
    return header, rows


def manifest_files(path: Path, rows: list[dict[str, str]]) -> list[str]:
    """Each row's ``path``, resolved against the manifest's folder ('' where empty)."""
    return [str((path.parent / r["path"]).resolve()) if r["path"] else "" for r in rows]


def csv_source(path: str | os.PathLike, classnames: list[str] | None = None) -> FileListSource:
    """A CSV manifest with a header: ``path`` (relative to the CSV's folder), optional ``label`` and ``split``.

    Labels may be class names or integer indices (indices need ``classnames``). Names are matched to
    ``classnames`` by name (:mod:`clipadapt.data.classes`); a label that matches none is an error.
    """
    path = Path(path)
    header, rows = read_manifest(path)
    if not rows:
        raise ClipAdaptError(f"CSV manifest {str(path)!r} lists no images")
    files = manifest_files(path, rows)
    splits = np.array([r["split"].strip() for r in rows]) if "split" in header else None
    labels = None
    if "label" in header:
        raw = [(r["label"] or "").strip() for r in rows]
        if all(v.lstrip("-").isdigit() for v in raw):
            labels = np.array([int(v) for v in raw], dtype=np.int64)
            if classnames is None:
                raise ClipAdaptError(f"{str(path)!r} has integer labels: pass --classnames FILE to name them")
        else:
            if classnames is None:
                classnames = sorted(set(raw))
            labels = np.array(match_labels(raw, classnames, f"{str(path)!r}"), dtype=np.int64)
    return FileListSource(path.stem, files, labels, classnames, splits)
