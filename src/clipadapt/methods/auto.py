"""``auto``: clipadapt's own label-free method, for target sets of any shape.

Built from two published solvers and one observation. TransCLIP (:mod:`clipadapt.methods.transclip`) is
the strongest label-free method on whole, balanced sets, but its mixture gives every listed class a
component, and a component whose class is absent pulls images to it: on sets that hold a few of the
listed classes it falls far below zero-shot. StatA (:mod:`clipadapt.methods.stata`) anchors each class's
statistics to its text, so an absent class keeps its text statistics and takes (almost) no image: it stays
at or above zero-shot on such sets, but its anchoring costs it a little on whole sets. The failure of one
is the strength of the other, and what separates them is a question about the set that StatA answers:
which classes does it hold?

So ``auto`` runs StatA, keeps the classes to which StatA assigns at least ``min_images`` images (a class
needs two images to be a cluster rather than a stray image), and runs TransCLIP over those classes only:
its mixture, zero-shot term ŷ (renormalised over the kept classes) and graph, as the official solver
computes them. The classes left out get no image of the set. When StatA keeps fewer than two classes,
StatA's own predictions are the answer. On a whole set StatA keeps every class and ``auto`` is TransCLIP;
on a set of a few classes it is TransCLIP without the absent classes' components. Both solvers use the
same 3-NN graph of the images, so it is built once.

Each run records what it decided (``hparams``): ``classes_kept``, ``regime`` (``every class`` or
``K of C classes``) and ``solver`` (``transclip over StatA's classes`` or ``stata``). The saved classifier
classifies new images, which may hold other classes, by cosine at scale 100 to TransCLIP's means for the
kept classes and StatA's (text-anchored) means for the others.

The design was chosen on generated CLIP-like problems (:mod:`clipadapt.synthetic`, seeds 100 and 101, 19
and 100 classes, StatA's scenarios): there, restricting TransCLIP to the classes of at least two StatA
images was above both StatA and TransCLIP in every scenario, and restricting to the classes of at least
one image was not (``docs/faithfulness.md`` gives the numbers). On 64-image episodes of 1–4 classes
ReCLIP's label propagation (``reclip-lp``) was far ahead of it there; ``auto`` does not switch to it.
Nothing was chosen on WHU-RS19 or on the demo's world seeds 0 and 1.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from clipadapt.features.featureset import FeatureSet
from clipadapt.methods.base import Classifier, Fit, Method
from clipadapt.methods.registry import register_method
from clipadapt.methods.stata import StatA
from clipadapt.methods.transclip import TransCLIPZeroShot, neighbour_graph

ABSENT_LOG_PROBABILITY = math.log(1e-30)  # the target logits of a class left out (as TransCLIP floors z)


def kept_classes(logits: torch.Tensor, min_images: int) -> torch.Tensor:
    """(K,) indices of the classes that at least ``min_images`` rows of (N, C) ``logits`` predict."""
    counts = torch.bincount(logits.argmax(1), minlength=logits.shape[1])
    return torch.nonzero(counts >= min_images).squeeze(1)


def restrict_classes(target: FeatureSet, keep: torch.Tensor) -> FeatureSet:
    """``target`` with only the classes ``keep`` (their prototypes, per-prompt features and names)."""
    on = keep.to(target.text_features.device)
    return dataclasses.replace(
        target,
        text_features=target.text_features[on],
        text_all=None if target.text_all is None else target.text_all[:, on],
        classnames=[target.class_names[i] for i in keep.tolist()],
        labels=None,
    )


@register_method
@dataclass
class Auto(Method):
    name = "auto"
    setting = "transductive"
    summary = "clipadapt's own: StatA finds the classes the set holds, TransCLIP adapts over those (any target set)"
    paper = (
        "clipadapt's own: StatA (arXiv:2501.03729) to find the classes present, then TransCLIP"
        " (arXiv:2406.01837) over them"
    )
    code = ""
    faithfulness = "auto"

    min_images: int = 2  # a class is kept when StatA assigns it at least this many images

    @torch.no_grad()
    def fit(self, target: FeatureSet, support: FeatureSet | None = None, validation: FeatureSet | None = None) -> Fit:
        solvers = StatA(), TransCLIPZeroShot()
        graph = neighbour_graph(target.normalised()[0], solvers[0].neighbours, solvers[0].exact_knn_max)  # both's
        stata = solvers[0].fit_on_graph(target, graph)
        keep = kept_classes(stata.target_logits, self.min_images)
        c = target.num_classes
        decided = {
            "classes_kept": len(keep),
            "regime": "every class" if len(keep) == c else f"{len(keep)} of {c} classes",
        }
        if len(keep) < 2:
            classifier = dataclasses.replace(
                stata.classifier, method=self.name, hparams={**self.hparams(), **decided, "solver": "stata",
                                                            "knn_used": stata.classifier.hparams["knn_used"]}
            )  # fmt: skip
            return Fit(classifier, target_logits=stata.target_logits, history=stata.history)
        transclip = solvers[1].fit_on_graph(restrict_classes(target, keep), graph)
        logits = torch.full((len(target), c), ABSENT_LOG_PROBABILITY, device=stata.target_logits.device)
        logits[:, keep.to(logits.device)] = transclip.target_logits
        means = stata.classifier.weights.clone()
        means[keep.to(means.device)] = transclip.classifier.weights.to(means.device)
        hparams = {**self.hparams(), **decided, "solver": "transclip over StatA's classes",
                   "knn_used": transclip.classifier.hparams["knn_used"]}  # fmt: skip
        classifier = Classifier(means, target.class_names, 100.0, method=self.name, hparams=hparams)
        return Fit(classifier, target_logits=logits, history=stata.history)
