from __future__ import annotations

import numpy as np
import pytest

from clipadapt.toyclip.model import UNK, WordTokenizer
from clipadapt.world import (
    CLASSES,
    DOMAINS,
    FILLS,
    SHAPES,
    TARGET_DOMAINS,
    caption,
    class_counts,
    make_domain,
    random_scene,
    vocabulary,
    write_domain_folder,
)
from clipadapt.world.captions import CAPTION_TEMPLATES, PARTIAL_TEMPLATES
from clipadapt.world.render import UNIT_OUTLINES, pattern

TINY = 24  # pixels: the world's tiny configuration for tests


@pytest.mark.parametrize("domain", list(DOMAINS))
def test_every_domain_renders_deterministic_rgb_images(domain: str) -> None:
    a, b = make_domain(domain, 12, seed=3, size=TINY), make_domain(domain, 12, seed=3, size=TINY)
    assert all(im.size == (TINY, TINY) and im.mode == "RGB" for im in a.images)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.images, b.images, strict=True))
    assert a.captions == b.captions and (a.labels == b.labels).all()
    c = make_domain(domain, 12, seed=4, size=TINY)
    assert not all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.images, c.images, strict=True))
    d = make_domain(domain, 12, seed=3, size=TINY, stream=1)
    assert not all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.images, d.images, strict=True))


def test_classes_are_shapes_with_fills_and_each_has_siblings_differing_in_one_attribute() -> None:
    assert len(CLASSES) == len(SHAPES) * len(FILLS) >= 20 and len(set(CLASSES)) == len(CLASSES)
    for name in CLASSES:
        fill, shape = name.split(" ")
        same_shape = [c for c in CLASSES if c != name and c.endswith(f" {shape}")]
        same_fill = [c for c in CLASSES if c != name and c.startswith(f"{fill} ")]
        assert len(same_shape) == len(FILLS) - 1 and len(same_fill) == len(SHAPES) - 1


@pytest.mark.parametrize("shape", SHAPES)
def test_shapes_are_mirror_symmetric_so_a_flip_keeps_the_class(shape: str) -> None:
    points = UNIT_OUTLINES[shape]
    mirrored = points * np.array([-1.0, 1.0])
    distance = np.abs(mirrored[:, None, :] - points[None, :, :]).sum(-1).min(1)
    assert distance.max() < 1e-6, "every mirrored vertex is a vertex"


def test_fill_patterns_cover_part_of_the_canvas_and_solid_has_none() -> None:
    rng = np.random.default_rng(0)
    assert pattern("solid", rng, 64).sum() == 0
    for fill in ("striped", "spotted"):
        share = pattern(fill, rng, 128).mean()
        assert 0.15 < share < 0.6, (fill, share)


def test_domains_shift_appearance_but_keep_the_scene() -> None:
    source, sketch = make_domain("source", 48, seed=0, size=TINY), make_domain("sketch", 48, seed=0, size=TINY)
    assert np.bincount(source.labels).tolist() == np.bincount(sketch.labels).tolist() == [2] * 24
    spread = lambda s: np.mean([np.asarray(im).std(axis=2).mean() for im in s.images])  # noqa: E731
    assert spread(sketch) < 0.5 * spread(source), "sketches have no colour"


def test_class_counts_uniform_long_tailed_and_the_faded_domain_is_long_tailed_by_default() -> None:
    assert class_counts(240).tolist() == [10] * 24
    tail = class_counts(1000, imbalance=10)
    assert tail.sum() == 1000 and tail[0] / tail[-1] == pytest.approx(10, rel=0.1)
    assert (np.diff(tail) <= 0).all()
    painting = make_domain("painting", 96, imbalance=5, size=TINY)
    assert np.bincount(painting.labels).tolist() == class_counts(96, 5).tolist()
    faded = np.bincount(make_domain("faded", 240, size=TINY).labels)
    assert faded.tolist() == class_counts(240, 10).tolist() and "faded" in TARGET_DOMAINS
    assert np.bincount(make_domain("faded", 48, size=TINY, imbalance=1).labels).tolist() == [2] * 24


def test_captions_use_only_vocabulary_words_and_name_the_shape() -> None:
    rng = np.random.default_rng(0)
    tokenizer = WordTokenizer(vocabulary(), context_length=16)
    unk = tokenizer.stoi[UNK]
    for _ in range(500):
        scene = random_scene(rng)
        text = caption(scene, rng)
        ids = tokenizer.encode(text)
        assert unk not in ids and len(ids) <= 16 and scene.shape in text, text
    assert len(CAPTION_TEMPLATES) >= 20, "many phrasings per concept"


def test_partial_captions_leave_the_fill_or_the_shape_out_in_their_own_vocabulary() -> None:
    rng = np.random.default_rng(0)
    templates = (*CAPTION_TEMPLATES, *PARTIAL_TEMPLATES)
    tokenizer = WordTokenizer(vocabulary(templates), context_length=16)
    assert set(vocabulary()) < set(vocabulary(templates)), "the default vocabulary stays the bundled model's"
    for template in PARTIAL_TEMPLATES:
        scene = random_scene(rng, label=CLASSES.index("striped star"))
        text = caption(scene, rng, (template,))
        assert tokenizer.stoi[UNK] not in tokenizer.encode(text), text
        assert "star" not in text or not any(w in text for w in ("strip", "band")), text


def test_write_domain_folder_layout(tmp_path) -> None:
    root = write_domain_folder(tmp_path / "d", make_domain("night", 30, size=TINY))
    assert {p.name for p in root.iterdir()} <= {c.replace(" ", "_") for c in CLASSES}
    assert sum(1 for _ in root.rglob("*.png")) == 30
