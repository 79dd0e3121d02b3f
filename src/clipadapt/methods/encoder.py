"""What the encoder-tuning methods (ReCLIP, FAIR) share: images, LayerNorm state and tuned classifiers.

These methods need more than features: the target *images* and the backbone that encodes them.
:func:`clipadapt.features.extract` attaches an :class:`EncoderInputs` to the FeatureSet it builds; a
feature file has none, and an encoder method then says so (:class:`~clipadapt.errors.MethodUnavailable`).

Only LayerNorm affine parameters change (:func:`tuning`): every other parameter has ``requires_grad`` off
during adaptation and the backbone's original LayerNorm values are put back afterwards, so one backbone
object serves every method in a run (no second copy of the model). The tuned values travel in the
classifier (:class:`TunedClassifier.layernorm_state`) and are loaded again to encode new images.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from clipadapt.backbones.base import Backbone, Tower
from clipadapt.errors import MethodUnavailable
from clipadapt.features.featureset import FeatureSet
from clipadapt.features.images import Batches, EncoderInputs
from clipadapt.methods.base import Classifier
from clipadapt.runtime import autocast

log = logging.getLogger("clipadapt")


def require_encoder(method: str, encoder: EncoderInputs | None) -> EncoderInputs:
    if encoder is None:
        raise MethodUnavailable(
            f"{method} tunes the encoders: it needs the images, not a feature file (use --dataset and --model)"
        )
    return encoder


# -- LayerNorm state ------------------------------------------------------------------------------------


def layernorm_names(backbone: Backbone, towers: Sequence[Tower]) -> list[str]:
    """Names (as in ``backbone.model.named_parameters()``) of the LayerNorm affine parameters of ``towers``."""
    wanted = {id(p) for tower in towers for p in backbone.layernorm_parameters(tower)}
    return [name for name, p in backbone.model.named_parameters() if id(p) in wanted]


def layernorm_state(backbone: Backbone, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Copies of the named parameters, on the CPU."""
    params = dict(backbone.model.named_parameters())
    return {name: params[name].detach().cpu().clone() for name in names}


def load_layernorm_state(backbone: Backbone, state: dict[str, torch.Tensor]) -> None:
    params = dict(backbone.model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device))


@contextlib.contextmanager
def tuning(backbone: Backbone, towers: Sequence[Tower]) -> Iterator[list[torch.nn.Parameter]]:
    """Within the block only the LayerNorm affine parameters of ``towers`` require gradients; afterwards
    every parameter's ``requires_grad`` and the LayerNorm values are as before (read the tuned values with
    :func:`layernorm_state` inside the block). The model stays in eval mode: no dropout noise."""
    names = layernorm_names(backbone, towers)
    original = layernorm_state(backbone, names)
    params = dict(backbone.model.named_parameters())
    flags = {name: p.requires_grad for name, p in params.items()}
    for name, p in params.items():
        p.requires_grad_(name in original)
    backbone.model.eval()
    try:
        yield [params[name] for name in names]
    finally:
        load_layernorm_state(backbone, original)
        for name, p in params.items():
            p.requires_grad_(flags[name])


@torch.no_grad()
def relative_shift(params: Sequence[torch.Tensor], start: Sequence[torch.Tensor]) -> torch.Tensor:
    """How far tuned parameters moved: ‖θ − θ₀‖ / ‖θ₀‖ over all of them (a 0-d tensor on their device)."""
    moved = sum(((p - p0) ** 2).sum() for p, p0 in zip(params, start, strict=True))
    return (moved / sum((p0**2).sum() for p0 in start)).sqrt()


@contextlib.contextmanager
def checkpointing(backbone: Backbone, enable: bool) -> Iterator[None]:
    """Gradient checkpointing within the block when ``enable`` (and the model supports it)."""
    active = enable and backbone.set_grad_checkpointing(True)
    if enable and not active:
        log.warning("%s does not support gradient checkpointing; training without it", backbone.name)
    try:
        yield
    finally:
        if active:
            backbone.set_grad_checkpointing(False)


@contextlib.contextmanager
def tuned(backbone: Backbone, state: dict[str, torch.Tensor]) -> Iterator[Backbone]:
    """The backbone with ``state`` loaded, restored on exit."""
    original = layernorm_state(backbone, list(state))
    load_layernorm_state(backbone, state)
    try:
        yield backbone
    finally:
        load_layernorm_state(backbone, original)


# -- encoding -------------------------------------------------------------------------------------------


@torch.no_grad()
def encode_rows(encoder: EncoderInputs, batches: Batches | None = None) -> torch.Tensor:
    """(N, D) unnormalised image embeddings of every row with the backbone as it is now, on its device.

    ``batches``: an in-order pass of ``encoder``'s rows (to reuse its workers or its pixels in memory);
    default: a new one.
    """
    backbone = encoder.backbone
    passes = batches or encoder.batches(backbone.preprocess)
    return torch.cat([backbone.encode_images(pixels) for _, pixels in passes])


def class_text_features(backbone: Backbone, sentences: list[list[str]]) -> torch.Tensor:
    """(C, D) prompt-ensemble prototypes, normalised mean of normalised embeddings, with gradients, on the
    backbone's device.

    The same construction as :func:`clipadapt.features.text.encode_prompts` (which runs without them).
    """
    flat = [s for per_class in sentences for s in per_class]
    with autocast(backbone.device, backbone.precision):
        embeddings = F.normalize(backbone.text_forward(flat).float(), dim=-1)
    per_class = torch.split(embeddings, [len(s) for s in sentences])
    return F.normalize(torch.stack([e.mean(0) for e in per_class]), dim=-1)


# -- the classifier of a tuned model --------------------------------------------------------------------


@dataclass
class TunedClassifier(Classifier):
    """A classifier whose image features come from the backbone with ``layernorm_state`` loaded.

    ``logits`` takes features already encoded that way; :meth:`image_logits` encodes images itself.
    Subclasses that also need the untuned features (ReCLIP's text side) override :meth:`image_logits`.
    """

    layernorm_state: dict[str, torch.Tensor] = field(default_factory=dict)

    def image_logits(self, encoder: EncoderInputs, frozen_features: torch.Tensor) -> torch.Tensor:
        """(N, C) logits of ``encoder``'s rows; ``frozen_features`` (N, D) are their untuned features."""
        return self.logits(self.tuned_features(encoder))

    def tuned_features(self, encoder: EncoderInputs) -> torch.Tensor:
        """(N, D) features of ``encoder``'s rows from the tuned backbone."""
        with tuned(encoder.backbone, self.layernorm_state):
            return encode_rows(encoder)

    def rows_logits(self, rows: FeatureSet) -> torch.Tensor:
        if rows.encoder is None:
            return super().rows_logits(rows)
        return self.image_logits(rows.encoder, rows.normalised()[0])

    def rows_features(self, rows: FeatureSet) -> torch.Tensor:
        return super().rows_features(rows) if rows.encoder is None else self.tuned_features(rows.encoder)

    def pixel_logits(self, backbone: Backbone, pixels: torch.Tensor) -> torch.Tensor:
        with tuned(backbone, self.layernorm_state):
            return self.logits(backbone.encode_images(pixels))
