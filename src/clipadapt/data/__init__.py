"""Data sources: resolve a ``--dataset`` spec to images, labels, class names and prompts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipadapt.data.classes import warn_absent_classes
from clipadapt.data.prompts import (
    DEFAULT_TEMPLATES,
    Prompts,
    bundled_metadata,
    expand_prompts,
    read_classnames,
    read_prompts,
)
from clipadapt.data.sources import ImageSource, UnreadableImage, csv_source, folder_source, open_image
from clipadapt.data.torchvision_source import TORCHVISION_DATASETS, TorchvisionSource
from clipadapt.data.webdataset_source import WebDatasetSource, is_shard_spec, shard_templates
from clipadapt.errors import ClipAdaptError, unknown_name

HF_PREFIX = "hf:"


def list_datasets() -> list[str]:
    """Dataset names known by name (torchvision), plus the other kinds of ``--dataset`` value."""
    return [*sorted(TORCHVISION_DATASETS), "hf:<name-or-folder>", "<folder of class sub-folders>", "<manifest.csv>",
            "<shards-{000000..000099}.tar>"]  # fmt: skip


def open_source(
    spec: str,
    root: str | None = None,
    split: str = "test",
    classnames_file: str | None = None,
    download: bool = False,
) -> ImageSource:
    """Resolve ``spec`` (a folder, a CSV manifest, WebDataset tar shards, ``hf:<name>``, or a torchvision name) to
    a checked source.

    ``classnames_file`` gives the class names. Folders, CSV manifests with named labels and shards whose
    ``cls`` members hold names are matched to them by name (:mod:`clipadapt.data.classes`); index labels
    (torchvision, integer CSV labels or ``cls`` indices) take them in order, and their count must cover
    the labels.
    """
    override = read_classnames(classnames_file) if classnames_file else None
    path = Path(spec)
    if spec.startswith(HF_PREFIX):
        from clipadapt.data.hf_source import HFDatasetSource

        source: ImageSource = HFDatasetSource(spec.removeprefix(HF_PREFIX), split)
    elif is_shard_spec(spec):
        source = WebDatasetSource(spec, override)
    elif path.is_dir():
        source = folder_source(path, override)
    elif path.suffix.lower() == ".csv":
        if not path.is_file():
            raise ClipAdaptError(f"CSV manifest {spec!r} does not exist")
        source = csv_source(path, override)
    elif spec in TORCHVISION_DATASETS:
        source = TorchvisionSource(spec, root, split, download)
    elif path.exists():
        raise ClipAdaptError(f"{spec!r} is neither a folder of images nor a .csv manifest")
    else:
        raise unknown_name("dataset", spec, TORCHVISION_DATASETS)
    # CLIP's curated names follow torchvision's label order, so they only apply to torchvision sources
    # (a local folder that happens to be called "dtd" keeps its own sub-folder names).
    bundled = bundled_metadata().get(spec, {}).get("classnames") if isinstance(source, TorchvisionSource) else None
    if override is not None:
        source.classnames = override
    elif bundled is not None and (source.classnames is None or len(bundled) == len(source.classnames)):
        source.classnames = list(bundled)
    check_source(source)
    return source


def check_source(source: ImageSource) -> None:
    """Class names must exist, be at least two, and cover every label; names that no labelled image has
    are listed in one warning."""
    where = f"dataset {source.name!r}"
    if len(source) == 0:
        raise ClipAdaptError(f"{where} has no images")
    if source.classnames is None:
        raise ClipAdaptError(f"{where} has no class names: pass --classnames FILE")
    if len(source.classnames) < 2:
        raise ClipAdaptError(
            f"{where} has one class ({source.classnames[0]!r}): classification needs at least two, and an "
            "accuracy over one class means nothing; pass every candidate class with --classnames FILE"
        )
    if source.labels is not None and len(source.labels):
        n_classes = len(source.classnames)
        lo, hi = int(np.min(source.labels)), int(np.max(source.labels))
        if lo < 0 or hi >= n_classes:
            raise ClipAdaptError(
                f"{where} has labels {lo}..{hi} but {n_classes} class names; the class-name count must match the labels"
            )
        warn_absent_classes(source.labels, source.classnames, where)


def default_prompts(spec: str, templates_file: str | None = None) -> Prompts:
    """The user's templates/descriptions file, else the dataset's bundled templates (or those beside WebDataset
    shards), else a generic set."""
    if templates_file:
        return read_prompts(templates_file)
    if is_shard_spec(spec) and (beside := shard_templates(spec)) is not None:
        return beside
    entry = bundled_metadata().get(spec)
    return list(entry["templates"]) if entry else list(DEFAULT_TEMPLATES)


__all__ = [
    "DEFAULT_TEMPLATES",
    "ImageSource",
    "Prompts",
    "UnreadableImage",
    "check_source",
    "default_prompts",
    "expand_prompts",
    "list_datasets",
    "open_image",
    "open_source",
]
