"""The Python API in one offline run: load a backbone, extract features, adapt, save, reload, predict.

Uses the bundled ToyCLIP and generated images of the offline world's ``night`` domain, so it runs with no
network; with a real model, call ``load_backbone("ViT-B-32", "openai")`` and ``open_source("my/folder")``.

    python examples/api_tour.py [OUTPUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

from clipadapt.artifact import adaptation_card, load_classifier, save_classifier
from clipadapt.backbones import load_backbone
from clipadapt.data import open_source
from clipadapt.demo import write_domain_manifest
from clipadapt.evaluation import evaluate
from clipadapt.features import extract
from clipadapt.methods import get_method
from clipadapt.predict import predict
from clipadapt.world import WORLD_TEMPLATES

out = Path(sys.argv[1] if len(sys.argv) > 1 else "clipadapt_out/api_tour")
images = write_domain_manifest(out / "adapt", "night", n_test=200, n_pool=0, seed=0)  # path,label CSV
new_images = write_domain_manifest(out / "new", "night", n_test=20, n_pool=0, seed=1)

backbone = load_backbone("toyclip")  # or load_backbone("ViT-B-32", "openai"), load_backbone("hf:<repo>")
features = extract(backbone, open_source(str(images)), list(WORLD_TEMPLATES))  # a FeatureSet, cached

# 1. fit a method yourself: label-free methods get the features without labels
fit = get_method("inmap")().fit(features.without_labels())
classifier = fit.classifier
accuracy = (classifier.predict(features.image_features) == features.labels).float().mean()
print(f"inmap, fitted by hand: top-1 {100 * accuracy:.1f} %")

# 2. or let the runner fit and score it (the same code path as `clipadapt eval` and `clipadapt adapt`)
record, prediction = evaluate(features, "inmap", seed=0)
print(f"inmap, through the runner: top-1 {100 * record['metrics']['acc1']:.1f} % in {record['seconds']:.2f} s")

# 3. save the classifier with its card, reload it (checking the backbone), and predict new image files
folder = save_classifier(prediction.classifier, out / "classifier", adaptation_card(features, record))
reloaded = load_classifier(folder, backbone=backbone)
rows = predict(folder, [str(new_images)], top_k=2)  # files, folders, globs or CSVs; loads the backbone
print(f"{len(rows)} new images; first: {rows[0]['path']} -> {rows[0]['label_1']} ({rows[0]['probability_1']:.2f})")
assert reloaded.method == "inmap" and not any(row["error"] for row in rows)
