"""What every method is and produces.

A :class:`Method` is a dataclass whose fields are its hyperparameters. ``fit`` receives the *target*
features — always without labels: the runner strips them, so a label-free method cannot read them — and,
for few-shot methods, a labelled *support* set (the K shots) and a labelled *validation* set, the only data
their hyperparameter searches may score on. It returns a :class:`Fit`: a reusable :class:`Classifier`
and, for transductive methods, the logits of the target images themselves.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from clipadapt.features.featureset import FeatureSet
from clipadapt.methods.hparams import check_fields

if TYPE_CHECKING:
    from clipadapt.backbones.base import Backbone

Setting = Literal["zero-shot", "transductive", "inductive", "few-shot"]
CLASSIFIERS: dict[str, type[Classifier]] = {}  # class name → Classifier class (filled as subclasses are defined)


@dataclass
class Classifier:
    """A classifier on L2-normalised image features: logits = scale · x̂ Wᵀ + b.

    ``weights`` (C, D) are used as given (methods normalise them when their paper does). Every subclass is
    registered under its class name in :data:`CLASSIFIERS`, the names a saved classifier's card may give
    (:mod:`clipadapt.artifact` saves and loads them).
    """

    weights: torch.Tensor  # (C, D)
    classnames: list[str]
    logit_scale: float = 100.0
    bias: torch.Tensor | None = None  # (C,)
    method: str = ""
    hparams: dict[str, Any] = field(default_factory=dict)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if CLASSIFIERS.setdefault(cls.__name__, cls) is not cls:
            raise ValueError(f"two classifier classes are named {cls.__name__!r}")

    def unit(self, image_features: torch.Tensor) -> torch.Tensor:
        """(N, D) features (any norm, any device) → (N, D) float32 unit rows on this classifier's device."""
        return F.normalize(image_features.to(self.weights.device, torch.float32), dim=-1)

    @torch.no_grad()
    def logits(self, image_features: torch.Tensor) -> torch.Tensor:
        """(N, D) image features (any norm) → (N, C) logits, on this classifier's device."""
        out = self.unit(image_features).mul_(self.logit_scale) @ self.weights.T  # scaled in place: one (N, D) copy
        return out if self.bias is None else out.add_(self.bias)

    def predict(self, image_features: torch.Tensor) -> torch.Tensor:
        """(N, D) → (N,) predicted class indices."""
        return self.logits(image_features).argmax(dim=-1)

    def rows_logits(self, rows: FeatureSet) -> torch.Tensor:
        """(N, C) logits of a feature set's rows: of their stored features (tuned classifiers encode the rows'
        images themselves when the set carries them)."""
        return self.logits(rows.image_features)

    def rows_features(self, rows: FeatureSet) -> torch.Tensor:
        """(N, D) features of a feature set's rows, as :meth:`logits` and :meth:`embed` take them."""
        return rows.image_features

    def pixel_logits(self, backbone: Backbone, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) preprocessed images → (B, C) logits, encoding them with ``backbone`` as this
        classifier needs (tuned classifiers load their LayerNorm state for it)."""
        return self.logits(backbone.encode_images(pixels))

    @torch.no_grad()
    def embed(self, image_features: torch.Tensor) -> torch.Tensor:
        """(N, D) features → (N, D) unit vectors in the space where :meth:`class_vectors` classify them
        (for reports: the features themselves, unless the method maps them)."""
        return self.unit(image_features)

    def class_vectors(self) -> torch.Tensor:
        """(C, D) unit class vectors in the space of :meth:`embed` (for reports)."""
        return F.normalize(self.weights.float(), dim=-1)

    def to(self, device: torch.device | str) -> Classifier:
        """This classifier with every tensor field (and dict of tensors) on ``device``."""
        moved: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                moved[f.name] = value.to(device)
            elif isinstance(value, dict) and value and all(isinstance(v, torch.Tensor) for v in value.values()):
                moved[f.name] = {k: v.to(device) for k, v in value.items()}
        return dataclasses.replace(self, **moved)


CLASSIFIERS[Classifier.__name__] = Classifier


@dataclass
class Fit:
    classifier: Classifier
    target_logits: torch.Tensor | None = None  # (N, C) for the target images, when the method is transductive
    history: dict[str, list[float]] = field(default_factory=dict)  # per-iteration diagnostics, for reports


@dataclass
class Method(ABC):
    """Base class; subclasses are dataclasses whose fields are hyperparameters with their paper's defaults."""

    name: ClassVar[str] = ""
    setting: ClassVar[Setting] = "zero-shot"
    label_free: ClassVar[bool] = True
    needs_encoder: ClassVar[bool] = False  # tunes the encoders: needs images and the backbone, not a feature file
    summary: ClassVar[str] = ""
    paper: ClassVar[str] = ""  # the paper it follows: authors, title, venue, arXiv id
    code: ClassVar[str] = ""  # the official repository ("" where none is public)
    faithfulness: ClassVar[str] = ""  # its section of docs/faithfulness.md (the anchor)

    @abstractmethod
    def fit(self, target: FeatureSet, support: FeatureSet | None = None, validation: FeatureSet | None = None) -> Fit:
        """Adapt on ``target`` (unlabelled) and, for few-shot methods, ``support`` and ``validation`` (labelled)."""

    def __post_init__(self) -> None:
        check_fields(self)  # every hyperparameter of its annotated type (Literal choices, bools, numbers)

    @property
    def adapts_on_train_split(self) -> bool:
        """True when this run adapts on the train split and is scored on the test split (inductive use);
        methods with an ``inductive`` hyperparameter override it."""
        return False

    def hparams(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def assumption_warning(self, diagnostics: Mapping[str, float]) -> str | None:
        """One line when the run's label-free diagnostics (:mod:`clipadapt.evaluation.diagnostics`) show that
        an assumption this method makes about the target set does not hold, naming the alternative; None
        otherwise, and for methods that assume nothing (:mod:`clipadapt.methods.assumptions`)."""
        return None
