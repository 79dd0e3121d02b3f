from __future__ import annotations

import numpy as np
import pytest

from clipadapt.toyclip.model import UNK, WordTokenizer
from clipadapt.world import DOMAINS, SHAPES, caption, class_counts, make_domain, vocabulary, write_domain_folder
from clipadapt.world.captions import CAPTION_TEMPLATES
from clipadapt.world.render import random_scene


@pytest.mark.parametrize("domain", list(DOMAINS))
def test_every_domain_renders_deterministic_rgb_images(domain: str) -> None:
    a, b = make_domain(domain, 12, seed=3), make_domain(domain, 12, seed=3)
    assert all(im.size == (32, 32) and im.mode == "RGB" for im in a.images)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.images, b.images, strict=True))
    assert a.captions == b.captions and (a.labels == b.labels).all()
    c = make_domain(domain, 12, seed=4)
    assert not all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.images, c.images, strict=True))


def test_domains_shift_appearance_but_keep_the_scene() -> None:
    source, sketch = make_domain("source", 50, seed=0), make_domain("sketch", 50, seed=0)
    assert np.bincount(source.labels).tolist() == np.bincount(sketch.labels).tolist() == [5] * 10
    mean_colour = lambda s: np.mean([np.asarray(im).std(axis=(0, 1)).mean() for im in s.images])  # noqa: E731
    assert mean_colour(sketch) != pytest.approx(mean_colour(source), rel=0.05)


def test_class_counts_uniform_and_long_tailed() -> None:
    assert class_counts(100).tolist() == [10] * 10
    tail = class_counts(1000, imbalance=10)
    assert tail.sum() == 1000 and tail[0] / tail[-1] == pytest.approx(10, rel=0.1)
    assert (np.diff(tail) <= 0).all()
    assert np.bincount(make_domain("painting", 200, imbalance=5).labels).tolist() == class_counts(200, 5).tolist()


def test_captions_use_only_vocabulary_words() -> None:
    rng = np.random.default_rng(0)
    tokenizer = WordTokenizer(vocabulary(), context_length=24)
    unk = tokenizer.stoi[UNK]
    for _ in range(300):
        text = caption(random_scene(rng), rng)
        assert unk not in tokenizer.encode(text), text
    assert len({t.split("{")[0] for t in CAPTION_TEMPLATES}) > 5, "many phrasings per concept"


def test_write_domain_folder_layout(tmp_path) -> None:
    root = write_domain_folder(tmp_path / "d", make_domain("night", 20))
    assert sorted(p.name for p in root.iterdir()) == sorted(SHAPES)
    assert sum(1 for _ in root.rglob("*.png")) == 20
