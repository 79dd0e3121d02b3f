"""What the world's images show: classes (a shape with a fill pattern) and the scene attributes around them.

A class is a *shape* with a *fill*: ``"striped star"``, ``"spotted heart"``, ``"solid hexagon"``. Each class
has fine-grained siblings that differ in exactly one attribute (the same shape with another fill, the same
fill on another shape). Colour, accent colour and size are nuisance attributes: they vary inside every
class and appear in the captions. Shapes and fills are mirror-symmetric, so a horizontal flip keeps the
class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES = ("circle", "square", "triangle", "hexagon", "star", "cross", "heart", "diamond")
FILLS = ("solid", "striped", "spotted")
CLASSES = tuple(f"{fill} {shape}" for shape in SHAPES for fill in FILLS)  # siblings by shape are adjacent
COLOURS = {
    "red": (210, 40, 40), "green": (40, 160, 60), "blue": (45, 80, 215), "yellow": (235, 200, 30),
    "purple": (140, 60, 180), "orange": (240, 130, 30), "black": (30, 30, 30), "pink": (240, 120, 180),
    "brown": (130, 80, 40), "teal": (30, 150, 150),
}  # fmt: skip
ACCENTS = {"white": (250, 250, 250), **COLOURS}  # colour of the stripes or spots
SIZES = {"small": (0.26, 0.31), "medium": (0.31, 0.36), "large": (0.36, 0.42)}  # radius / side of the image
BACKGROUNDS = {"plain": 0.5, "textured": 0.25, "busy": 0.25}  # kinds of source background, with their odds


@dataclass(frozen=True)
class Scene:
    shape: str
    fill: str
    colour: str
    accent: str  # the stripes' or spots' colour ("" for a solid fill)
    size: str
    background: str = "plain"

    @property
    def label(self) -> str:
        return f"{self.fill} {self.shape}"


def random_scene(rng: np.random.Generator, label: int | None = None) -> Scene:
    """A scene of class ``CLASSES[label]`` (a random class when None) with random nuisance attributes."""
    label = int(rng.integers(len(CLASSES))) if label is None else label
    fill, shape = CLASSES[label].split(" ")
    colour = list(COLOURS)[rng.integers(len(COLOURS))]
    accents = [a for a in ACCENTS if a != colour]
    accent = "" if fill == "solid" else accents[rng.integers(len(accents))]
    size = list(SIZES)[rng.integers(len(SIZES))]
    background = str(rng.choice(list(BACKGROUNDS), p=list(BACKGROUNDS.values())))
    return Scene(shape, fill, colour, accent, size, background)
