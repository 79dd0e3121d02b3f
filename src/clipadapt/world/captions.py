"""Captions: many phrasings of a scene, and the word vocabulary of the world's language.

A caption names the shape, usually the fill (as an adjective, "striped", or a phrase, "with white stripes",
with synonyms), often the colour, accent colour and size; a few leave the fill out, as real captions leave
out details. ``PARTIAL_TEMPLATES`` add phrasings that leave the fill or the shape out ("a striped shape", "a
green thing"): with them about a third of the captions miss what a fine-grained class turns on, as most web
captions do (ToyCLIP's ``--partial_captions``).
"""

from __future__ import annotations

import re

import numpy as np

from clipadapt.world.scenes import ACCENTS, CLASSES, SHAPES, SIZES, Scene

FILL_ADJECTIVES = {
    "solid": ("solid", "plain", "solid", "single-colour"),
    "striped": ("striped", "stripy", "striped", "banded"),
    "spotted": ("spotted", "dotted", "spotted", "polka-dot"),
}
FILL_PHRASES = {
    "solid": ("in one colour", "with no pattern", "filled with {colour}", "in plain {colour}"),
    "striped": ("with stripes", "with {accent} stripes", "covered in stripes", "with {accent} bands"),
    "spotted": ("with spots", "with {accent} dots", "covered in spots", "with {accent} polka dots"),
}
BACKGROUND_WORDS = {
    "plain": ("plain", "light", "white", "pale", "blank"),
    "textured": ("textured", "mottled", "soft", "grainy", "light"),
    "busy": ("busy", "messy", "colourful", "cluttered", "light"),
}

# {a}: fill adjective, {w}: fill phrase, {s}: shape, {c}: colour, {k}: accent colour, {z}: size, {b}: background
CAPTION_TEMPLATES = (
    "a {a} {s}.",
    "a {c} {a} {s}.",
    "a photo of a {a} {s}.",
    "a photo of a {c} {a} {s}.",
    "a {s} {w}.",
    "a {c} {s} {w}.",
    "a {z} {a} {s}.",
    "a picture of a {z} {c} {s} {w}.",
    "an image showing a {a} {s} on a {b} background.",
    "the {s} is {c} and {a}.",
    "there is a {a} {s} in the picture.",
    "a close-up photo of the {a} {s}.",
    "one {z} {s} {w}.",
    "a drawing of a {a} {s}.",
    "this is a {a} {s}.",
    "a {s}, {a} and {c}.",
    "a {c} and {k} {a} {s}.",
    "a {a} {s} on a {b} background.",
    "a rendering of a {z} {a} {s}.",
    "my {a} {s} {w}.",
    "a {c} {s}.",
    "a photo of a {z} {s}.",
)
PARTIAL_TEMPLATES = (  # phrasings without the fill or without the shape
    "a {c} {s} on a {b} background.",
    "a photo of a {s}.",
    "a {z} {c} {s}.",
    "a {c} shape {w}.",
    "a {a} shape.",
    "a photo of something {a}.",
    "a {c} and {k} pattern.",
    "a {z} {c} thing.",
    "a {c} object on a {b} background.",
    "a picture of a {c} shape.",
)

# Words of the prompt templates users are likely to try beside the captions' own words.
EXTRA_WORDS = (
    "an", "of", "the", "a", "photo", "picture", "image", "drawing", "sketch", "painting", "rendering", "itap", "bad",
    "good", "blurry", "dark", "bright", "small", "large", "big", "noisy", "night", "clean", "shape", "object",
    "thing", "art", "origami", "toy", "cartoon", "video", "game", "in", "on", "with", "this", "is", "there", "and",
    "type", "kind", "some", "my", "one", "two", "many", "colored", "coloured", "pattern", "patterned", "faded",
    "cluttered", "busy", "photograph",
)  # fmt: skip


def caption(scene: Scene, rng: np.random.Generator, templates: tuple[str, ...] = CAPTION_TEMPLATES) -> str:
    """One caption of ``scene`` in a random phrasing among ``templates``."""
    template = templates[rng.integers(len(templates))]
    accent = scene.accent or scene.colour
    phrase = FILL_PHRASES[scene.fill][rng.integers(4)].format(colour=scene.colour, accent=accent)
    return template.format(
        a=FILL_ADJECTIVES[scene.fill][rng.integers(4)], w=phrase, s=scene.shape, c=scene.colour, k=accent,
        z=scene.size, b=BACKGROUND_WORDS[scene.background][rng.integers(5)],
    )  # fmt: skip


def vocabulary(templates: tuple[str, ...] = CAPTION_TEMPLATES) -> list[str]:
    """Every word the captions (in ``templates``) and class names use, plus common prompt words; sorted,
    deterministic."""
    words = set(EXTRA_WORDS)
    texts = [*templates, *CLASSES, *SHAPES, *ACCENTS, *SIZES]
    banks = (FILL_ADJECTIVES, FILL_PHRASES, BACKGROUND_WORDS)
    texts += [t for bank in banks for options in bank.values() for t in options]
    for text in texts:
        words.update(re.sub(r"\{\w+\}|[.,]", " ", text).split())
    return sorted(words)
