"""Retrain ToyCLIP with the model card's command and compare its zero-shot accuracy with the committed weights'.

    python benchmarks/reproduce_toyclip.py [--out DIR]

Prints both numbers per domain and exits non-zero if any differs by more than 1 point (about as long as the
card says the training took, plus a minute of evaluation).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from clipadapt.backbones.toyclip import BUNDLED
from clipadapt.toyclip.train import main as train_main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="where to write the retrained weights (default: a temp dir)")
    args = parser.parse_args()
    committed = json.loads((BUNDLED / "report.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        train_main(["--out", str(out)])
        retrained = json.loads((out / "report.json").read_text())
    worst = 0.0
    print(f"{'domain':10s} {'committed':>9s} {'retrained':>9s}  (zero-shot top-1 %)")
    for domain in ["source", *committed["target_domains"]]:
        a, b = 100 * committed[domain]["zero_shot"], 100 * retrained[domain]["zero_shot"]
        worst = max(worst, abs(a - b))
        print(f"{domain:10s} {a:9.1f} {b:9.1f}")
    print(f"largest difference: {worst:.2f} points ({'within' if worst <= 1 else 'NOT within'} 1 point)")
    return 0 if worst <= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
