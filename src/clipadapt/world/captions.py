"""Captions: many phrasings of a scene, and the word vocabulary of the world's language."""

from __future__ import annotations

import numpy as np

from clipadapt.world.render import COLOURS, POSITIONS, SHAPES, SIZES, Scene

CAPTION_TEMPLATES = (
    "a {colour} {shape}.",
    "a {size} {colour} {shape}.",
    "a photo of a {shape}.",
    "a photo of a {colour} {shape}.",
    "a picture of a {size} {shape}.",
    "a {shape} in the {position}.",
    "a {colour} {shape} in the {position}.",
    "a {size} {shape} in the {position} of the image.",
    "there is a {colour} {shape} on a plain background.",
    "an image showing a {shape}.",
    "the {shape} is {colour}.",
    "a drawing of a {shape}.",
    "a {shape}, {colour} and {size}.",
    "one {size} {colour} {shape} in the {position}.",
    "a close-up photo of the {shape}.",
    "a {shape}.",
)

# Words of the prompt templates users are likely to try beside the captions' own words.
EXTRA_WORDS = [
    "an",
    "of",
    "the",
    "a",
    "photo",
    "picture",
    "image",
    "drawing",
    "sketch",
    "painting",
    "rendering",
    "itap",
    "bad",
    "good",
    "blurry",
    "dark",
    "bright",
    "small",
    "large",
    "big",
    "noisy",
    "night",
    "clean",
    "shape",
    "object",
    "thing",
    "art",
    "origami",
    "toy",
    "cartoon",
    "video",
    "game",
    "in",
    "on",
    "with",
    "this",
    "is",
    "there",
    "and",
    "type",
    "kind",
    "some",
    "my",
    "one",
    "two",
    "many",
    "colored",
    "coloured",
]


def caption(scene: Scene, rng: np.random.Generator) -> str:
    template = CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))]
    return template.format(shape=scene.shape, colour=scene.colour, size=scene.size, position=scene.position)


def vocabulary() -> list[str]:
    """Every word the world's captions use, plus common prompt words; sorted, deterministic."""
    words = set(EXTRA_WORDS)
    for template in CAPTION_TEMPLATES:
        words.update(template.replace("{", " ").replace("}", " ").replace(".", " ").replace(",", " ").split())
    for value in (*SHAPES, *COLOURS, *SIZES, *POSITIONS):
        words.update(value.split())
    return sorted(words)
