"""Zero-shot CLIP: cosine similarity to prompt-ensemble class prototypes, logit scale 100."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from clipadapt.features.featureset import FeatureSet
from clipadapt.methods.base import Classifier, Fit, Method
from clipadapt.methods.registry import register_method


@register_method
@dataclass
class ZeroShot(Method):
    """logits = 100 · x̂ · t̂ᵀ with t̂ the normalised mean of the class's normalised prompt embeddings."""

    name = "zeroshot"
    setting = "zero-shot"
    summary = "zero-shot CLIP with a prompt-template ensemble"
    paper = (
        "Radford et al., Learning Transferable Visual Models From Natural Language Supervision"
        " (ICML 2021, arXiv:2103.00020)"
    )
    code = "https://github.com/openai/CLIP"
    faithfulness = "zero-shot"

    logit_scale: float = 100.0

    def fit(self, target: FeatureSet, support: FeatureSet | None = None, validation: FeatureSet | None = None) -> Fit:
        weights = F.normalize(target.text_features.float(), dim=-1)
        return Fit(Classifier(weights, target.class_names, self.logit_scale, method=self.name, hparams=self.hparams()))
