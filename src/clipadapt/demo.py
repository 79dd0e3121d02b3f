"""``clipadapt demo``: the offline world end to end: generate target domains, run every method, report.

For each target domain it writes images and a CSV manifest (a labelled, class-balanced ``train`` pool for
few-shot methods, and the ``test`` images every method is scored on, drawn with the domain's class
imbalance), extracts ToyCLIP features through the normal
pipeline (feature cache included), runs each registered method with the same runner as ``clipadapt eval``,
and writes one result JSON per run, ``report.md``, the HTML report ``report.html`` and ``samples.png``.
Methods added to the registry appear here without any change to this module.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clipadapt.errors import ClipAdaptError, MethodUnavailable
from clipadapt.evaluation import render_markdown
from clipadapt.evaluation.results import table_row
from clipadapt.io import atomic_open, write_json
from clipadapt.world import CLASSES, TARGET_DOMAINS, WORLD_TEMPLATES, domain_imbalance, make_domain

log = logging.getLogger("clipadapt")
# The default run: one target domain of each of three kinds of shift (a style, a cluttered background, a
# long-tailed class distribution with a colour cast), chosen by kind before any method ran on world v2, so
# that every method on all three fits in about six minutes on 2 CPU cores; ``domains=["all"]`` runs all six.
DEFAULT_DOMAINS = ("sketch", "clutter", "faded")
RESULT_TEMPLATE = "results/{dataset}_{method}_seed{seed}.json"


def domain_name(domain: str, imbalance: float) -> str:
    return domain if imbalance == 1 else f"{domain}-longtail{imbalance:g}"


def write_domain_manifest(
    root: Path, domain: str, n_test: int, n_pool: int, seed: int, imbalance: float | None = None
) -> Path:
    """Images of ``domain`` under ``root/<name>/`` and ``root/<name>.csv`` (path,label,split): ``n_pool``
    class-balanced ``train`` images and ``n_test`` ``test`` images with the domain's class imbalance (or
    ``imbalance``, the max/min class ratio), which the name records when there is one."""
    imbalance = domain_imbalance(domain, imbalance)
    name = domain_name(domain, imbalance)
    manifest, stamp = root / f"{name}.csv", root / f"{name}.json"
    params = {"domain": domain, "n_test": n_test, "n_pool": n_pool, "seed": seed, "imbalance": imbalance}
    if manifest.exists() and stamp.exists() and json.loads(stamp.read_text()) == params:
        return manifest  # generated earlier with the same parameters
    shutil.rmtree(root / name, ignore_errors=True)  # other parameters: never mix old images in
    pool = make_domain(domain, n_pool, seed=seed, imbalance=1, stream=1)
    test = make_domain(domain, n_test, seed=seed, imbalance=imbalance)
    lines = ["path,label,split"]
    images = [*pool.images, *test.images]
    labels = [*pool.labels, *test.labels]
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        relative = Path(name) / f"{i:05d}.png"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / relative)
        lines.append(f"{relative},{CLASSES[label]},{'train' if i < n_pool else 'test'}")
    with atomic_open(manifest) as fh:
        fh.write("\n".join(lines) + "\n")
    write_json(stamp, params)  # last: an interrupted generation is redone on the next run
    return manifest


def contact_sheet(root: Path, domains: list[str], path: Path, per_domain: int = 10) -> None:
    """One row of sample test images per domain, upscaled for viewing."""
    rows = []
    for domain in domains:
        files = sorted((root / domain).glob("*.png"))[-per_domain:]
        rows.append(np.concatenate([np.asarray(Image.open(f).convert("RGB")) for f in files], axis=1))
    sheet = Image.fromarray(np.concatenate(rows, axis=0))
    sheet.resize((sheet.width * 2, sheet.height * 2), Image.Resampling.NEAREST).save(path)


def run_demo(
    output_dir: str | Path = "clipadapt_out/demo",
    domains: list[str] | None = None,
    methods: list[str] | None = None,
    n_test: int = 300,
    n_pool: int = 200,
    seed: int = 0,
    batch_size: int = 128,
    imbalance: float | None = None,
    views: int = 16,
    shots: int = 4,
    hparams: list[str] | None = None,
    device: str = "auto",
    precision: str = "auto",
) -> list[dict[str, Any]]:
    from clipadapt.backbones import load_backbone
    from clipadapt.data import open_source
    from clipadapt.evaluation.grid import RunGrid, run_one
    from clipadapt.features import FeatureStore, extract
    from clipadapt.methods import list_methods, route_hparams
    from clipadapt.report import Report

    domains = list(TARGET_DOMAINS) if domains == ["all"] else list(domains or DEFAULT_DOMAINS)
    unknown = [d for d in domains if d not in TARGET_DOMAINS and d != "source"]
    if unknown:
        raise ClipAdaptError(f"unknown domain {unknown[0]!r}; known: all, source, {', '.join(TARGET_DOMAINS)}")
    methods = methods or [cls.name for cls in list_methods()]
    routed = route_hparams(methods, hparams or [])
    out = Path(output_dir)
    # few-shot methods take K shots from the labelled pool; the demo's own folder is rewritten every run
    grid = RunGrid(methods, [seed], [shots], str(out / RESULT_TEMPLATE), overwrite=True, few_shot_only=True)
    backbone = load_backbone("toyclip", device=device, precision=precision)
    store = FeatureStore(out / "cache")
    records: list[dict[str, Any]] = []
    names: list[str] = []  # of the domains on disk (with their class imbalance)
    report = Report("clipadapt demo: ToyCLIP on shifted domains")
    for domain in domains:
        manifest = write_domain_manifest(out / "domains", domain, n_test, n_pool, seed, imbalance)
        names.append(manifest.stem)
        source = open_source(str(manifest))
        source.name = f"world-{manifest.stem}"
        features = extract(backbone, source, list(WORLD_TEMPLATES), store, batch_size=batch_size, views=views)
        for run in grid.plan(source.name, "toyclip", "bundled"):
            try:
                record, prediction = run_one(features, run, routed[run.method], device=device, precision=precision)
            except MethodUnavailable as exc:
                log.info("skipping %s on %s: %s", run.method, domain, exc)
                continue
            report.add(record, prediction)
            records.append(record)
    contact_sheet(out / "domains", names, out / "samples.png")
    table = render_markdown([table_row(r) for r in records])
    imbalance_text = ", ".join(f"{d} {domain_imbalance(d, imbalance):g}" for d in domains)
    summary = f"""# clipadapt demo

ToyCLIP (clipadapt's own small CLIP, trained on the source domain only) on {len(domains)} shifted target
domain(s): {", ".join(domains)}. Each domain has {n_test} test images (scored) and a labelled pool of {n_pool}
images (used only by few-shot methods: {shots} shots per class, and min({shots}, 4) per class to validate).
Class imbalance of the test images (largest/smallest class): {imbalance_text}. Seed {seed}.
Sample test images, one row per domain: `samples.png`. Result JSONs: `results/`. Figures: `report.html`.

{table}"""
    with atomic_open(out / "report.md") as fh:
        fh.write(summary)
    report.write(out / "report.html")
    return records
