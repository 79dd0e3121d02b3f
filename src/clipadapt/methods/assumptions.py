"""What label-free methods assume about the target set, and the one-line warning when the label-free
diagnostics (:mod:`clipadapt.evaluation.diagnostics`) show that it does not hold.

InMaP's Sinkhorn step (a uniform class prior) and TransCLIP's mixture (a component per class that pulls
images towards it) assume that every listed class is present; ReCLIP's k-NN graph assumes more images per
present class than neighbours. The methods themselves stay as their papers are: the warning names the
alternative.
"""

from __future__ import annotations

from collections.abc import Mapping

FEW_CLASSES = 0.5  # zero-shot finds fewer effective classes than this share of the class names: "far fewer"
ALTERNATIVE = "use --method auto or stata"


def far_fewer_classes(diagnostics: Mapping[str, float]) -> bool:
    """Zero-shot finds far fewer effective classes than there are class names."""
    return diagnostics["zeroshot_effective_classes"] < FEW_CLASSES * diagnostics["classes"]


def few_classes_warning(method: str, assumption: str, diagnostics: Mapping[str, float]) -> str | None:
    """The warning of a method that assumes every listed class is present, when far fewer are found."""
    if not far_fewer_classes(diagnostics):
        return None
    return (
        f"{method} {assumption}, but zero-shot finds about {diagnostics['zeroshot_effective_classes']:.1f} effective "
        f"classes among the {int(diagnostics['classes'])} names on these {int(diagnostics['images'])} images; for a "
        f"set that holds a few of the listed classes, {ALTERNATIVE}"
    )


def small_graph_warning(method: str, neighbours: int, diagnostics: Mapping[str, float]) -> str | None:
    """The warning of a graph method whose k neighbours outnumber the images of a present class."""
    per_class = diagnostics["images"] / max(diagnostics["zeroshot_effective_classes"], 1.0)
    if per_class >= neighbours:
        return None
    return (
        f"{method}'s graph links each image to {neighbours} neighbours, but these {int(diagnostics['images'])} "
        f"images hold about {per_class:.1f} per class (zero-shot's effective classes), so the neighbours cross "
        f"classes; {ALTERNATIVE}"
    )
