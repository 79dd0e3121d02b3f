"""Features: extraction through the cache, text prototypes, and the FeatureSet every method works on."""

from __future__ import annotations

import logging

import numpy as np
import torch

from clipadapt.backbones.base import Backbone
from clipadapt.data.prompts import Prompts, expand_prompts
from clipadapt.data.sources import ImageSource
from clipadapt.errors import ClipAdaptError
from clipadapt.features.featureset import FeatureSet, load_feature_file, save_feature_file
from clipadapt.features.images import EncoderInputs
from clipadapt.features.store import ExtractedImages, FeatureStore, default_num_workers
from clipadapt.features.text import encode_prompts
from clipadapt.features.views import check_views, extract_views

log = logging.getLogger("clipadapt")


def extract(
    backbone: Backbone,
    source: ImageSource,
    prompts: Prompts,
    store: FeatureStore | None = None,
    batch_size: int = 64,
    num_workers: int | None = None,
    views: int = 0,
    view_seed: int = 0,
    view_augment: str = "crop",
    chunk_size: int | None = None,
) -> FeatureSet:
    """Image features of ``source`` (cached) and class prototypes from ``prompts`` as one FeatureSet.

    With ``views`` > 0, also (N, V, D) ``view_features`` (:mod:`clipadapt.features.views`): seeded random
    resized crops (scale 0.6–0.8) with ``view_augment="crop"``, the mirror image with ``"flip"`` (V = 1);
    each view cached like the images. ``chunk_size``: images per cache chunk of a new cache entry (the unit
    of resumption and of the split over torchrun ranks; default about 1024).
    Unreadable images are skipped and counted (``extra["skipped"]``); it is an error only if none is readable.
    """
    if views > 0:
        check_views(views, view_augment)
    store = store or FeatureStore()
    images = store.extract(backbone, source, batch_size=batch_size, num_workers=num_workers, chunk_size=chunk_size)
    if not images.valid.any():
        raise ClipAdaptError(f"none of the {len(source)} images could be read; {images.summary(source)}")
    if images.failures:
        log.warning(images.summary(source))
    assert source.classnames is not None
    text_features, text_all = encode_prompts(backbone, source.classnames, prompts)
    keep = np.flatnonzero(images.valid)
    view_features = None
    if views > 0:
        view_features = extract_views(
            backbone, source, views, store, view_seed, batch_size=batch_size, num_workers=num_workers,
            augment=view_augment, chunk_size=chunk_size,
        )[keep]  # fmt: skip
    paths = source.paths()
    workers = default_num_workers() if num_workers is None else num_workers
    return FeatureSet(
        image_features=images.features[keep],
        view_features=view_features,
        view_augment=view_augment if views > 0 else "",
        text_features=text_features,
        labels=None if source.labels is None else torch.from_numpy(source.labels[keep]),
        text_all=text_all,
        classnames=list(source.classnames),
        prompt_names=list(prompts) if isinstance(prompts, list) else None,
        split=None if source.splits is None else source.splits[keep],
        paths=None if paths is None else [paths[i] for i in keep],
        model=backbone.name,
        pretrained=backbone.pretrained,
        dataset=source.name,
        extra={"skipped": len(images.failures)},
        encoder=EncoderInputs(backbone, source, keep, expand_prompts(source.classnames, prompts), batch_size, workers),
    )


__all__ = [
    "EncoderInputs",
    "ExtractedImages",
    "FeatureSet",
    "FeatureStore",
    "encode_prompts",
    "extract",
    "load_feature_file",
    "save_feature_file",
]
