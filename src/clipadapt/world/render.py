"""Drawing a scene in a domain: the source domain ToyCLIP is trained on, and shifted target domains.

Every image is drawn at twice its final side and downsampled with antialiasing (``SUPERSAMPLE``). The
object is a polygon near the centre covering half to four fifths of the image, so that a crop of 50–90 % of
the side still shows much of it, and its fill pattern (stripes or spots) shows in every part of it.
Everything is deterministic under the generator passed in.

Domains (``DOMAINS``): ``source`` (what ToyCLIP is trained on: a light background, plain, textured or with
a few soft blobs) and six shifted targets, one per kind of shift: ``sketch`` (style: pencil on paper, the
outline, pencil lines for stripes, dots for spots, hatching for a solid fill, no colour), ``painting``
(style: oil on a warm canvas, desaturated warm palette, brush texture, dark-brown outline, soft edges),
``noisy`` (sensor noise: a strong green cast, low contrast, Gaussian noise), ``night`` (colour cast: dark,
blue, low contrast, vignette), ``clutter`` (background and clutter: foliage of small leaves and twigs) and
``faded`` (class imbalance: its images are long-tailed by default, ``DEFAULT_IMBALANCE``, and washed out,
desaturated, with a warm cast). Each target was set, before any adaptation method ran on it, so that
ToyCLIP's zero-shot top-1 is well above chance and an oracle linear probe at least 15 points above it
(world seeds ≥ 100; the model card gives the numbers).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from clipadapt.world.scenes import ACCENTS, COLOURS, SIZES, Scene

SUPERSAMPLE = 2
DEFAULT_SIZE = 64


# -- geometry ---------------------------------------------------------------------------------------------


def _heart(n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    points = np.stack([x, y], axis=1) / 16
    return points - (points.max(0) + points.min(0)) / 2  # centred in its box


def _regular(n: int, radius: float, phase: float) -> np.ndarray:
    t = phase + 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(t), np.sin(t)], axis=1)


def _star() -> np.ndarray:
    t = -np.pi / 2 + np.pi * np.arange(10) / 5
    radius = np.where(np.arange(10) % 2 == 0, 1.2, 0.5)
    return radius[:, None] * np.stack([np.cos(t), np.sin(t)], axis=1)


_A, _B = 1.1, 0.36  # the cross's arm half-length and half-width
_CROSS = [(-_B, -_A), (_B, -_A), (_B, -_B), (_A, -_B), (_A, _B), (_B, _B), (_B, _A), (-_B, _A), (-_B, _B), (-_A, _B),
          (-_A, -_B), (-_B, -_B)]  # fmt: skip
UNIT_OUTLINES = {  # shapes of radius ~1 around the origin, y pointing down, each mirror-symmetric
    "circle": _regular(48, 1.0, 0.0),
    "square": _regular(4, 0.82 * math.sqrt(2), math.pi / 4),
    "triangle": _regular(3, 1.2, -math.pi / 2) + np.array([0.0, 0.15]),
    "hexagon": _regular(6, 1.05, 0.0),
    "star": _star(),
    "cross": np.array(_CROSS),
    "heart": _heart() * 1.1,
    "diamond": np.array([(0.0, -1.25), (0.8, 0.0), (0.0, 1.25), (-0.8, 0.0)]),
}


def outline(scene: Scene, rng: np.random.Generator, side: int) -> list[tuple[float, float]]:
    """The object's polygon in pixels of a ``side``-pixel canvas: random radius within its size class,
    centre within ±8 % of the middle, rotation within ±11°."""
    lo, hi = SIZES[scene.size]
    radius = rng.uniform(lo, hi) * side
    centre = (0.5 + rng.uniform(-0.08, 0.08, 2)) * side
    angle = rng.uniform(-0.2, 0.2)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    points = UNIT_OUTLINES[scene.shape] @ rotation.T * radius + centre
    return [tuple(p) for p in points.tolist()]


def polygon_mask(points: list[tuple[float, float]], side: int) -> np.ndarray:
    """(side, side) float mask, 1 inside the polygon."""
    image = Image.new("L", (side, side), 0)
    ImageDraw.Draw(image).polygon(points, fill=255)
    return np.asarray(image, dtype=np.float32) / 255


def pattern(fill: str, rng: np.random.Generator, side: int, thickness: float = 1.0) -> np.ndarray:
    """(side, side) float field, 1 on the fill's marks: stripes (period 9–14 % of the side, one of four
    orientations ±10°) or spots (a staggered lattice, spacing 12–17 % of the side); zeros for a solid fill.
    ``thickness`` scales the stripes' duty cycle (½ at 1) and the spots' radius."""
    if fill == "solid":
        return np.zeros((side, side), dtype=np.float32)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) + 0.5
    if fill == "striped":
        period = rng.uniform(0.09, 0.14) * side
        theta = math.radians(45 * int(rng.integers(4)) + rng.uniform(-10, 10))
        phase = rng.uniform()
        wave = (x * math.cos(theta) + y * math.sin(theta)) / period + phase
        return ((wave - np.floor(wave)) < 0.5 * thickness).astype(np.float32)
    if fill == "spotted":
        spacing = rng.uniform(0.12, 0.17) * side
        radius = rng.uniform(0.26, 0.32) * spacing * thickness
        theta = rng.uniform(0, math.pi / 2)
        offset = rng.uniform(0, 1, 2)
        u = (x * math.cos(theta) + y * math.sin(theta)) / spacing + offset[0]
        v = (-x * math.sin(theta) + y * math.cos(theta)) / spacing + offset[1]
        u = u + 0.5 * (np.floor(v + 0.5) % 2)  # every other row shifted by half a step
        distance = np.hypot(u - np.round(u), v - np.round(v)) * spacing
        return (distance < radius).astype(np.float32)
    raise ValueError(f"unknown fill {fill!r}")


# -- pixels -----------------------------------------------------------------------------------------------


def _rgb(colour: tuple[int, ...] | np.ndarray) -> np.ndarray:
    return np.asarray(colour, dtype=np.float32).reshape(1, 1, 3)


def composite(canvas: np.ndarray, mask: np.ndarray, colour: np.ndarray, marks: np.ndarray,
              accent: np.ndarray) -> np.ndarray:  # fmt: skip
    """The object painted on ``canvas`` (H, W, 3): ``colour`` inside ``mask``, ``accent`` on its ``marks``."""
    fill = colour * (1 - marks[..., None]) + accent * marks[..., None]
    return canvas * (1 - mask[..., None]) + fill * mask[..., None]


def smooth_noise(rng: np.random.Generator, side: int, cells: int, channels: int = 1) -> np.ndarray:
    """(side, side, channels) smooth noise of unit-ish amplitude: a ``cells`` × ``cells`` Gaussian grid, bicubic."""
    grid = rng.normal(0, 1, (channels, cells, cells)).astype(np.float32)
    planes = [np.asarray(Image.fromarray(g).resize((side, side), Image.Resampling.BICUBIC)) for g in grid]
    return np.stack(planes, axis=-1)


def to_image(pixels: np.ndarray, size: int) -> Image.Image:
    """Clip a float (H, W, 3) array to bytes and resize it (antialiased) to ``size`` × ``size``."""
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image if image.size == (size, size) else image.resize((size, size), Image.Resampling.LANCZOS)


def _object(scene: Scene, rng: np.random.Generator, side: int, thickness: float = 1.0):
    points = outline(scene, rng, side)
    return points, polygon_mask(points, side), pattern(scene.fill, rng, side, thickness)


def _accent(scene: Scene) -> np.ndarray:
    return _rgb(ACCENTS[scene.accent] if scene.accent else COLOURS[scene.colour])


# -- domains ----------------------------------------------------------------------------------------------


def source_background(kind: str, rng: np.random.Generator, side: int) -> np.ndarray:
    """(side, side, 3) float canvas of a source background: ``plain`` (a light colour with a gradient),
    ``textured`` (a lighter or mid colour with smooth blotches) or ``busy`` (a light colour with a few soft
    blobs of other colours)."""
    gradient = np.linspace(-12, 12, side, dtype=np.float32)[:, None, None] * rng.choice([-1, 1])
    if kind == "textured":
        return _rgb(rng.integers(120, 230, 3)) + gradient + 22 * smooth_noise(rng, side, 8, 3)
    canvas = _rgb(rng.integers(175, 250, 3)) + gradient + 6 * smooth_noise(rng, side, 4)
    if kind == "busy":
        image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(3, 7))):
            x, y = rng.uniform(0, 1, 2) * side
            w, h = rng.uniform(0.05, 0.13, 2) * side
            draw.ellipse((x - w, y - h, x + w, y + h), fill=tuple(int(v) for v in rng.integers(60, 250, 3)))
        canvas = np.asarray(image.filter(ImageFilter.GaussianBlur(radius=side * 0.01)), dtype=np.float32)
    return canvas


def _source_pixels(scene: Scene, rng: np.random.Generator, side: int) -> np.ndarray:
    _, mask, marks = _object(scene, rng, side)
    canvas = source_background(scene.background, rng, side)
    return composite(canvas, mask, _rgb(COLOURS[scene.colour]), marks, _accent(scene))


def _source(scene: Scene, rng: np.random.Generator, size: int) -> Image.Image:
    return to_image(_source_pixels(scene, rng, size * SUPERSAMPLE), size)


def _sketch(scene: Scene, rng: np.random.Generator, size: int) -> Image.Image:
    """Pencil on paper: the outline, stripes as thin pencil lines, spots as dots, a solid fill hatched."""
    side = size * SUPERSAMPLE
    points, mask, marks = _object(scene, rng, side, thickness=0.4 if scene.fill == "striped" else 0.8)
    if scene.fill == "solid":
        y, x = np.mgrid[0:side, 0:side]
        marks = ((x + y) % max(3, side // 22) < 1.5).astype(np.float32)  # diagonal hatching
    paper = _rgb(rng.integers(232, 256, 3)) + rng.normal(0, 3, (side, side, 1)).astype(np.float32)
    ink = _rgb(np.full(3, rng.integers(25, 80)) + rng.integers(0, 15, 3))
    pixels = composite(paper, mask * marks, ink, np.zeros_like(marks), ink)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    width = max(2, round(side * rng.uniform(0.025, 0.04)))
    ink_rgb = tuple(int(v) for v in ink.ravel())
    ImageDraw.Draw(image).line([*points, points[0]], fill=ink_rgb, width=width, joint="curve")
    return to_image(np.asarray(image, dtype=np.float32), size)


def _painting(scene: Scene, rng: np.random.Generator, size: int) -> Image.Image:
    """Oil on canvas: a warm beige canvas, colours desaturated and warmed towards it, brush texture, a thin
    dark-brown outline, soft edges."""
    side = size * SUPERSAMPLE
    points, mask, marks = _object(scene, rng, side)
    canvas_colour = _rgb((215, 195, 160)) + _rgb(rng.normal(0, 8, 3))

    def paint(colour: tuple[int, int, int]) -> np.ndarray:
        c = _rgb(colour)
        return 0.4 * c + 0.2 * c.mean() + 0.4 * canvas_colour

    accent = ACCENTS[scene.accent] if scene.accent else COLOURS[scene.colour]
    canvas = canvas_colour + 5 * rng.normal(0, 1, (side, side, 1)).astype(np.float32)
    pixels = composite(canvas, mask, paint(COLOURS[scene.colour]), marks, paint(accent))
    pixels = pixels * (1 + 0.06 * smooth_noise(rng, side, 16))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    ImageDraw.Draw(image).line([*points, points[0]], fill=(70, 45, 25), width=max(2, round(side * 0.03)),
                               joint="curve")  # fmt: skip
    image = image.filter(ImageFilter.GaussianBlur(radius=side * 0.008))
    return to_image(np.asarray(image, dtype=np.float32), size)


def _noisy(scene: Scene, rng: np.random.Generator, size: int) -> Image.Image:
    """A cheap sensor: a strong green cast, low contrast and noise."""
    pixels = np.asarray(_source(scene, rng, size), dtype=np.float32)
    return to_image(0.35 * pixels + _rgb((35, 150, 25)) + rng.normal(0, 10, pixels.shape), size)


def _night(scene: Scene, rng: np.random.Generator, size: int) -> Image.Image:
    """Dark scene with a blue cast, low contrast and a vignette."""
    pixels = np.asarray(_source(scene, rng, size), dtype=np.float32)
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size - 0.5
    vignette = (1 - 1.1 * (x**2 + y**2))[..., None]
    return to_image((0.32 * pixels + _rgb((5, 15, 70))) * vignette + rng.normal(0, 5, pixels.shape), size)


FOLIAGE = ((40, 90, 30), (70, 120, 40), (100, 140, 50), (90, 70, 40), (60, 60, 55), (130, 150, 70))


def _clutter(scene: Scene, rng: np.random.Generator, size: int) -> Image.Image:
    """The object in front of foliage: 30–50 small leaf-coloured blobs and twigs on a pale green-grey."""
    side = size * SUPERSAMPLE
    base = np.clip(np.array((200, 210, 170)) + rng.normal(0, 10, 3), 0, 255)
    background = Image.new("RGB", (side, side), tuple(int(v) for v in base))
    draw = ImageDraw.Draw(background)
    for _ in range(int(rng.integers(30, 50))):
        leaf = np.array(FOLIAGE[rng.integers(len(FOLIAGE))]) + rng.normal(0, 15, 3)
        colour = tuple(int(v) for v in np.clip(leaf, 0, 255))
        x, y = rng.uniform(-0.05, 1.05, 2) * side
        w, h = rng.uniform(0.02, 0.07, 2) * side
        if rng.random() > 0.2:
            draw.ellipse((x - w, y - h, x + w, y + h), fill=colour)
        else:
            draw.line((x - 2 * w, y - 2 * h, x + 2 * w, y + 2 * h), fill=colour, width=max(1, round(side * 0.012)))
    _, mask, marks = _object(scene, rng, side)
    pixels = composite(np.asarray(background, dtype=np.float32), mask, _rgb(COLOURS[scene.colour]), marks,
                       _accent(scene))  # fmt: skip
    return to_image(pixels, size)


def _faded(scene: Scene, rng: np.random.Generator, size: int) -> Image.Image:
    """Washed out: desaturated, lifted towards white, with a warm cast."""
    pixels = np.asarray(_source(scene, rng, size), dtype=np.float32)
    grey = pixels.mean(axis=2, keepdims=True)
    pixels = 255 - 0.6 * (255 - (0.4 * pixels + 0.6 * grey))
    return to_image(pixels + _rgb((14, 4, -14)) + rng.normal(0, 3, pixels.shape), size)


DOMAINS = {
    "source": _source,
    "sketch": _sketch,
    "painting": _painting,
    "noisy": _noisy,
    "night": _night,
    "clutter": _clutter,
    "faded": _faded,
}
TARGET_DOMAINS = ("sketch", "painting", "noisy", "night", "clutter", "faded")
DEFAULT_IMBALANCE = {"faded": 10.0}  # largest/smallest class ratio where a domain is long-tailed


def render(scene: Scene, domain: str, rng: np.random.Generator, size: int = DEFAULT_SIZE) -> Image.Image:
    """Draw ``scene`` in ``domain`` at ``size`` × ``size`` pixels."""
    return DOMAINS[domain](scene, rng, size)
