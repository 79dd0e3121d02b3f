"""Recall and time of the CPU's approximate k-NN search (faiss IVF) against the exact search, and what it
changes downstream (TransCLIP and reclip-lp top-1 with either search), on generated features.

The features are development data, never WHU-RS19: ``--data blobs`` is ``transductive_scale.generate``
(class-clustered images around shifted text prototypes; isotropic noise, so that all of a class's images
are nearly equidistant and "the" nearest neighbours are a tie-break), ``--data manifold`` (default) gives
each class a 16-dimensional subspace of variation shared by its images plus a little noise, so that
neighbours mean something, as in real image embeddings. Recall@k is measured on ``--queries`` random
points whose exact neighbours are computed directly.

    python benchmarks/knn_recall.py [--n 100000 --dim 768 --classes 1000] [--k 3 20] [--downstream]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F
from transductive_scale import generate

from clipadapt.evaluation.runner import run_method
from clipadapt.kernels.graph import faiss_knn, faiss_parameters, knn


def manifold(n: int, dim: int, classes: int, seed: int, rank: int = 16):
    """A FeatureSet whose images vary within a ``rank``-dimensional subspace of their class (plus noise)."""
    from clipadapt.features.featureset import FeatureSet

    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(classes, dim, generator=g), dim=1)
    text = F.normalize(centres + 1.2 * F.normalize(torch.randn(classes, dim, generator=g), dim=1), dim=1)
    labels = torch.randint(0, classes, (n,), generator=g)
    images = torch.empty(n, dim)
    for start in range(0, n, 8192):  # per chunk: (n, rank, dim) bases would not fit
        rows = labels[start : start + 8192]
        bases = torch.randn(classes, rank, dim, generator=torch.Generator().manual_seed(seed + 1))[rows]
        coords = torch.randn(len(rows), 1, rank, generator=g) / rank**0.5
        spread = (coords @ bases).squeeze(1) / dim**0.5
        images[start : start + 8192] = (
            centres[rows] + 0.8 * spread + 0.1 * torch.randn(len(rows), dim, generator=g) / dim**0.5
        )
    return FeatureSet(F.normalize(images, dim=1), text, labels)


def recall(found: torch.Tensor, exact: torch.Tensor) -> float:
    """Mean share of each row's exact neighbours that were found. Both (Q, k)."""
    hits = (found[:, :, None] == exact[:, None, :]).any(1).float()
    return float(hits.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--k", type=int, nargs="+", default=[3, 20], help="TransCLIP's 3, ReCLIP's 20")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=100, help="generated features (development seeds: ≥ 100)")
    parser.add_argument("--data", choices=["manifold", "blobs"], default="manifold")
    parser.add_argument("--downstream", action="store_true", help="also run transclip and reclip-lp both ways")
    args = parser.parse_args()

    make = manifold if args.data == "manifold" else generate
    features = make(args.n, args.dim, args.classes, seed=args.seed)
    x = F.normalize(features.image_features, dim=1)
    nlist, nprobe = faiss_parameters(args.n)
    print(f"{args.n} × {args.dim}, {args.classes} classes (seed {args.seed}); faiss IVF nlist {nlist}, "
          f"nprobe {nprobe}; {torch.get_num_threads()} threads")  # fmt: skip
    picked = torch.randperm(args.n, generator=torch.Generator().manual_seed(0))[: args.queries]
    for k in args.k:
        start = time.perf_counter()
        _, found = faiss_knn(x, k)
        seconds = time.perf_counter() - start
        sims = x[picked] @ x.T
        sims[torch.arange(len(picked)), picked] = -float("inf")
        exact = sims.topk(k, dim=1).indices
        exact_seconds = None
        if args.n <= 50000:
            start = time.perf_counter()
            knn(x, k)
            exact_seconds = time.perf_counter() - start
        timing = f"exact {exact_seconds:.1f} s" if exact_seconds is not None else "exact not timed above 50,000"
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"k = {k:3d}: recall@k {recall(found[picked], exact):.3f}; faiss {seconds:.1f} s for all {args.n} "
              f"points ({timing}); peak memory {peak:.1f} GB")  # fmt: skip
    if args.downstream:
        for method in ("transclip", "reclip-lp"):
            row = []
            for label, limit in (("exact", 10**9), ("faiss", 0)):
                start = time.perf_counter()
                record = run_method(features, method, hparams={"exact_knn_max": limit})
                row.append(f"{label} {100 * record['metrics']['acc1']:.2f} % ({time.perf_counter() - start:.1f} s)")
            print(f"{method:10s}: " + ", ".join(row))


if __name__ == "__main__":
    main()
