"""The ``clipadapt`` command line: eval, adapt, predict, extract, demo, list, build."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from clipadapt import __version__, distributed
from clipadapt.errors import ClipAdaptError, plural
from clipadapt.paths import PLACEHOLDERS

log = logging.getLogger("clipadapt")


# ---------------------------------------------------------------------------------------------------------
# argument parsing


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("images (with --dataset)")
    g.add_argument("--dataset", nargs="+", default=[], help="torchvision name, hf:<name-or-folder>, folder or .csv")
    g.add_argument("--dataset_root", default=None, help="where torchvision datasets live")
    g.add_argument("--split", default="test", help="split to use for named datasets (default: test)")
    g.add_argument("--download", action="store_true", help="let torchvision download a missing dataset")
    g.add_argument("--classnames", default=None, help="class names file (.txt one per line, or JSON list)")
    g.add_argument("--templates", default=None, help="templates file with {c} (.txt or JSON), or JSON descriptions")
    g.add_argument("--model", nargs="+", default=[], help="open_clip architecture or hf:<repo-or-folder>")
    g.add_argument("--pretrained", nargs="+", default=[], help="pretrained tag or checkpoint path, one per model")
    g.add_argument("--batch_size", type=int, default=64)
    g.add_argument("--num_workers", type=int, default=None, help="image loading processes (default: cores - 1)")
    g.add_argument(
        "--chunk_size", type=int, default=None,
        help="images per feature-cache chunk, the unit of resuming and of splitting over torchrun ranks "
        "(default: about 1024; an existing cache entry keeps its own)",
    )  # fmt: skip
    g.add_argument(
        "--views",
        type=int,
        default=0,
        help="also extract V augmented views per image (cached): clip-enhance's "
        "student views, the few-shot methods' augmented training samples",
    )
    g.add_argument(
        "--view_augment", default="crop", choices=["crop", "flip"],
        help="crop: random resized crops (scale 0.6-0.8); flip: the mirror image, one view (CMM's augmentation)",
    )  # fmt: skip
    _add_device_args(g)
    g.add_argument("--cache_dir", default=None, help="feature cache (default: ~/.cache/clipadapt/features)")
    g.add_argument("--model_cache_dir", default=None, help="where model weights are cached")


def _add_device_args(g: argparse._ActionsContainer, precision_default: str | None = "auto") -> None:
    g.add_argument("--device", default="auto", help="where encoders and methods run: auto, cpu, cuda, cuda:N or mps")
    g.add_argument(
        "--precision", default=precision_default, choices=["auto", "fp32", "bf16", "fp16"],
        help="auto: bf16 autocast for the encoders and TF32 matmuls on CUDA, plain float32 elsewhere; fp32: "
        "float32 everywhere (the same computation as on the CPU)"
        + ("" if precision_default else "; default: the classifier card's"),
    )  # fmt: skip


def _add_common(p: argparse.ArgumentParser, summary: bool = True) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars and only warnings and errors")
    p.add_argument("--log_level", default="info", choices=["debug", "info", "warning", "error"],
                   help="messages on stderr from this level up (default: info)")  # fmt: skip
    if summary:
        p.add_argument("--json", action="store_true", help="print the summary on stdout as JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipadapt", description="Adapt CLIP-family models to your images: zero-shot, label-free, few-shot."
    )
    parser.add_argument("--version", action="version", version=f"clipadapt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ev = sub.add_parser("eval", help="run methods on feature files or image datasets and score them")
    ev.add_argument("--features", nargs="+", default=[], help="feature file(s) (.npz, see the README)")
    ev.add_argument("--method", nargs="+", default=["zeroshot"], help="method name(s) (clipadapt list methods)")
    ev.add_argument("--shots", nargs="+", type=int, default=None, help="K-shot protocol: K labelled images per class")
    ev.add_argument("--seed", nargs="+", type=int, default=None, help="default: 0, or 1 2 3 with --shots")
    ev.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE", help="override a hyperparameter")
    ev.add_argument("--output", default=None, help="result JSON path; may use "
                    + " ".join("{" + p + "}" for p in PLACEHOLDERS))  # fmt: skip
    ev.add_argument("--skip_existing", action="store_true",
                    help="keep the runs whose output file exists (the report reads them back)")  # fmt: skip
    ev.add_argument("--overwrite", action="store_true", help="replace existing output files and report")
    ev.add_argument("--report", default=None, metavar="HTML", help="also write an HTML report (zero-shot added)")
    g = ev.add_argument_group("realistic target sets (label-free methods; labels read only to draw them)")
    g.add_argument("--episodes", type=int, default=0,
                   help="N episodes per seed: --episode_size images of --episode_classes classes each")  # fmt: skip
    g.add_argument("--episode_size", type=int, default=64, help="images per episode (default: 64)")
    g.add_argument("--episode_classes", default=None, metavar="K1-K2",
                   help="classes per episode, drawn uniformly from K1..K2 (default: every class)")  # fmt: skip
    g.add_argument("--imbalance", type=float, default=None, metavar="RHO",
                   help="a long-tailed subsample: class sizes from the smallest class's to 1/RHO of it")  # fmt: skip
    _add_data_args(ev)
    _add_common(ev)

    ad = sub.add_parser("adapt", help="run one method on your images and save the adapted classifier")
    ad.add_argument("--features", nargs="+", default=[], help="a feature file instead of --dataset")
    ad.add_argument("--method", default="auto", help="method name (clipadapt list methods; default: auto)")
    ad.add_argument("--shots", type=int, default=None, help="K labelled images per class (few-shot methods)")
    ad.add_argument("--seed", type=int, default=0)
    ad.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE", help="override a hyperparameter")
    ad.add_argument("--output", required=True, metavar="DIR", help="classifier folder to write")
    ad.add_argument("--overwrite", action="store_true", help="replace a classifier (and report) already in DIR")
    ad.add_argument("--report", default=None, metavar="HTML", help="also write an HTML report (vs zero-shot)")
    _add_data_args(ad)
    _add_common(ad)

    pr = sub.add_parser("predict", help="classify new images with a saved classifier into a CSV")
    pr.add_argument("images", nargs="+", help="image files, folders, globs or CSV manifests (a 'path' column)")
    pr.add_argument("--classifier", required=True, metavar="DIR", help="folder written by clipadapt adapt")
    pr.add_argument("--output", default="predictions.csv", help="CSV to write (default: predictions.csv)")
    pr.add_argument("--top_k", type=int, default=5, help="labels per image (default: 5)")
    pr.add_argument("--overwrite", action="store_true", help="replace an existing output CSV")
    pr.add_argument("--model", default=None, help="backbone to use instead of the card's (must be the same model)")
    pr.add_argument("--pretrained", default=None, help="its pretrained tag or checkpoint (with --model)")
    pr.add_argument("--batch_size", type=int, default=64)
    pr.add_argument("--num_workers", type=int, default=None, help="image loading processes (default: cores - 1)")
    _add_device_args(pr, precision_default=None)
    pr.add_argument("--model_cache_dir", default=None, help="where model weights are cached")
    _add_common(pr)

    ex = sub.add_parser("extract", help="extract image and text features into a feature file")
    _add_data_args(ex)
    ex.add_argument("--output", required=True, help="feature file to write (.npz)")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing feature file")
    _add_common(ex)

    dm = sub.add_parser("demo", help="run every method on the offline world's shifted domains (no network)")
    dm.add_argument("--output_dir", default="clipadapt_out/demo")
    dm.add_argument("--domains", nargs="+", default=None,
                    help="target domains, or 'all' (default: sketch clutter faded)")  # fmt: skip
    dm.add_argument("--method", nargs="+", default=None, help="methods (default: every registered method)")
    dm.add_argument("--images", type=int, default=300, help="test images per domain")
    dm.add_argument("--pool", type=int, default=200, help="labelled pool per domain (few-shot methods only)")
    dm.add_argument("--views", type=int, default=16, help="random-crop views per image (clip-enhance's student)")
    dm.add_argument("--shots", type=int, default=4, help="labelled images per class for few-shot methods")
    dm.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE", help="override a hyperparameter")
    dm.add_argument("--seed", type=int, default=0)
    _add_device_args(dm)
    dm.add_argument("--imbalance", type=float, default=None,
                    help="long-tailed test images in every domain: largest/smallest class ratio "
                         "(default: each domain's own, 10 for faded, 1 for the others)")  # fmt: skip
    _add_common(dm)

    ls = sub.add_parser("list", help="list methods, datasets or models")
    ls.add_argument("what", choices=["methods", "datasets", "models"])
    _add_common(ls)

    bd = sub.add_parser("build", help="merge result JSONs into one table (CSV, Markdown or JSON)")
    bd.add_argument("results", nargs="+", help="result JSON files")
    bd.add_argument("--output", default=None, help="table file (.csv, .md or .json); default: Markdown on stdout")
    bd.add_argument("--pivot", action="store_true",
                    help="one column per method: top-1 %% (seconds), seeds averaged; Markdown")  # fmt: skip
    bd.add_argument("--overwrite", action="store_true", help="replace an existing table file")
    _add_common(bd)
    return parser


# ---------------------------------------------------------------------------------------------------------
# eval


def _model_pairs(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    if not args.model:
        raise ClipAdaptError("--dataset needs --model (and --pretrained for open_clip models)")
    pretrained = list(args.pretrained)
    if len(pretrained) not in (0, 1, len(args.model)):
        raise ClipAdaptError(f"{len(args.model)} models but {len(pretrained)} --pretrained values")
    if len(pretrained) <= 1:
        pretrained = pretrained * len(args.model) or [None] * len(args.model)
    return list(zip(args.model, pretrained, strict=True))


def _feature_sets(args: argparse.Namespace) -> Iterator[Any]:
    """Yield (planned dataset name, model, pretrained, loader of the FeatureSet)."""
    from clipadapt.features import load_feature_file

    for path in getattr(args, "features", []):
        fs = load_feature_file(path)
        yield fs.dataset, fs.model, fs.pretrained, (lambda fs=fs: fs)
    if not args.dataset:
        return
    from clipadapt.backbones import load_backbone
    from clipadapt.data import default_prompts, open_source
    from clipadapt.features import FeatureStore, extract
    from clipadapt.features.views import check_views

    if args.views > 0:
        check_views(args.views, args.view_augment)  # before any model is loaded

    store = FeatureStore(args.cache_dir)
    for model, pretrained in _model_pairs(args):
        backbone = None
        for spec in args.dataset:
            source = open_source(spec, args.dataset_root, args.split, args.classnames, args.download)
            prompts = default_prompts(spec, args.templates)

            def load(source=source, prompts=prompts, model=model, pretrained=pretrained) -> Any:
                nonlocal backbone
                if backbone is None:
                    backbone = load_backbone(model, pretrained, args.device, args.precision, args.model_cache_dir)
                return extract(
                    backbone, source, prompts, store, args.batch_size, args.num_workers, args.views,
                    view_augment=args.view_augment, chunk_size=args.chunk_size,
                )  # fmt: skip

            yield source.name, model, pretrained or "random", load


def cmd_eval(args: argparse.Namespace) -> int:
    from clipadapt.evaluation.episodes import Protocol, parse_classes
    from clipadapt.evaluation.grid import RunGrid, run_one
    from clipadapt.methods import route_hparams

    if not args.features and not args.dataset:
        raise ClipAdaptError("eval needs --features FILE or --dataset NAME|PATH")
    names = list(args.method)
    if args.report and "zeroshot" not in names:
        names.insert(0, "zeroshot")  # the report compares every method with zero-shot CLIP
        log.info("adding zeroshot for the report's before/after comparison")
    seeds = args.seed or ([1, 2, 3] if args.shots else [0])
    grid = RunGrid(names, seeds, args.shots or [None], args.output, args.skip_existing, args.overwrite)
    hparams = route_hparams(names, args.hparam)
    protocol = Protocol(args.episodes, args.episode_size, parse_classes(args.episode_classes), args.imbalance)
    if not protocol.whole and args.shots:
        raise ClipAdaptError("--episodes and --imbalance are for label-free methods; they do not go with --shots")
    report = _report(args.report, "clipadapt eval", args.overwrite or args.skip_existing)

    def finished(out: Path) -> bool:
        """A run whose result exists is skipped, unless the report needs it and cannot read it back."""
        if report is None or _read_back(out, report):
            return True
        log.info("re-running for the report: %s has no %s beside it", out, view_path(out).name)
        return False

    records = []
    for dataset, model, pretrained, load in _feature_sets(args):
        runs = grid.plan(dataset, model, pretrained, finished)
        if not runs:
            continue
        features = load()  # under torchrun every rank extracts its share; rank 0 alone runs the methods
        if not distributed.ranks().main:
            continue
        for run in runs:
            record, prediction = run_one(features, run, hparams[run.method], protocol, args.device, args.precision)
            if report is not None and prediction is not None:
                report.add(record, prediction, keep=None if run.output is None else view_path(run.output))
            records.append(record)
    _print_summary(records, args.json)
    if report is not None:
        if report.runs:
            log.info("wrote the report %s", report.write(args.report))
        else:
            log.warning("no run ran and none could be read back: the report %s is left as it was", args.report)
    return 0


def view_path(result: Path) -> Path:
    """Where ``eval --report`` keeps what the report shows of the run whose result JSON is ``result``."""
    return result.with_name(result.stem + ".report.npz")


def _read_back(out: Path, report: Any) -> bool:
    """Add the finished run of ``out`` (its result JSON and the view kept beside it) to ``report``."""
    from clipadapt.report import load_view

    if not view_path(out).is_file():
        return False
    try:
        record = json.loads(out.read_text(encoding="utf-8"))
        classnames, view = load_view(view_path(out), record)
    except (OSError, ValueError, KeyError) as exc:
        log.info("cannot read back %s (%s)", out, exc)
        return False
    report.add_view(record, classnames, view)
    return True


def _report(path: str | None, title: str, replace: bool) -> Any:
    """An empty report to fill, checked before any work: an HTML path, new unless ``replace``."""
    if path is None:
        return None
    if not path.endswith((".html", ".htm")):
        raise ClipAdaptError(f"--report {path!r}: the report is an HTML file (end it in .html)")
    refuse_existing(path, replace, "--report")
    from clipadapt.report import Report

    return Report(title)


def refuse_existing(path: str | os.PathLike, overwrite: bool, option: str = "--output") -> None:
    """The one overwrite rule of every command: an existing output is replaced only with ``--overwrite``."""
    if os.path.exists(path) and not overwrite:
        raise ClipAdaptError(f"{option} {str(path)!r} exists; pass --overwrite to replace it")


def _print_summary(records: list[dict[str, Any]], as_json: bool = False) -> None:
    from clipadapt.evaluation.results import render_markdown, table_row

    if as_json:
        print(json.dumps(records, indent=2))
    elif records:
        print(render_markdown([table_row(r) for r in records]), end="")


# ---------------------------------------------------------------------------------------------------------
# adapt, predict


def cmd_adapt(args: argparse.Namespace) -> int:
    from clipadapt.artifact import CARD, RESULT, adaptation_card, remove_classifier, save_classifier
    from clipadapt.evaluation import classifier_metrics, evaluate
    from clipadapt.io import write_json
    from clipadapt.methods import get_method, route_hparams

    get_method(args.method)
    hparams = route_hparams([args.method], args.hparam)[args.method]
    folder = Path(args.output)
    if (folder / CARD).exists() and not args.overwrite:
        raise ClipAdaptError(f"{args.output!r} already holds a classifier; pass --overwrite to replace it")
    if len(args.features) + len(args.dataset) != 1 or len(args.model) > 1:
        raise ClipAdaptError("adapt takes one data source (--dataset or --features) and at most one --model")
    report = _report(args.report, f"clipadapt adapt: {args.method}", args.overwrite)
    [(_, _, _, load)] = list(_feature_sets(args))
    features = load()  # under torchrun every rank extracts its share; rank 0 alone adapts
    if not distributed.ranks().main:
        return 0
    where = {"device": args.device, "precision": args.precision}
    record, prediction = evaluate(features, args.method, seed=args.seed, hparams=hparams, shots=args.shots, **where)
    own = classifier_metrics(prediction)
    if own is not None:
        record["classifier_metrics"] = own  # what predict gives on these images
    remove_classifier(folder)  # with --overwrite: nothing of the old classifier (its report included) stays
    save_classifier(prediction.classifier, folder, adaptation_card(features, record, args.report))
    write_json(folder / RESULT, record)
    if report is not None:
        if args.method != "zeroshot":
            report.add(*evaluate(features, "zeroshot", seed=args.seed, shots=args.shots, **where))
        report.add(record, prediction)
        log.info("wrote the report %s", report.write(args.report))
    if args.json:
        print(json.dumps({"classifier": str(folder), "result": record}, indent=2))
    else:
        _print_summary([record])
        if own is not None and "acc1" in own:
            log.info("top-1 of the transductive predictions above: %.4f; of the saved classifier on the same "
                     "images (what predict gives): %.4f", record["metrics"]["acc1"], own["acc1"])  # fmt: skip
        print(f"saved the classifier to {folder}/ (apply it: clipadapt predict --classifier {folder} IMAGES...)")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from clipadapt.artifact import read_card
    from clipadapt.predict import card_precision, predict_csv

    backbone = None
    if args.model:
        from clipadapt.backbones import load_backbone

        precision = args.precision or card_precision(read_card(args.classifier))
        backbone = load_backbone(args.model, args.pretrained, args.device, precision, args.model_cache_dir)
    summary = predict_csv(
        args.classifier, args.images, args.output, args.top_k, args.batch_size, args.num_workers, args.device,
        args.precision, args.model_cache_dir, args.overwrite, backbone,
    )  # fmt: skip
    if args.json:
        print(json.dumps({"output": str(summary.output), "images": summary.images,
                          "unreadable": summary.unreadable, "resumed": summary.resumed}))  # fmt: skip
    else:
        unreadable = f", {summary.unreadable} unreadable (listed with the reason)" if summary.unreadable else ""
        resumed = f", {summary.resumed} taken over from the interrupted run" if summary.resumed else ""
        print(f"wrote {summary.output}: {plural(summary.images, 'image')}{unreadable}{resumed}")
    return 0


# ---------------------------------------------------------------------------------------------------------
# extract, list, build


def cmd_extract(args: argparse.Namespace) -> int:
    from clipadapt.features import save_feature_file

    if not args.dataset or len(args.dataset) != 1:
        raise ClipAdaptError("extract needs exactly one --dataset")
    if len(args.model) != 1:
        raise ClipAdaptError("extract needs exactly one --model")
    if not args.output.endswith(".npz"):
        raise ClipAdaptError("the feature file must end in .npz")
    refuse_existing(args.output, args.overwrite)
    [(_, _, _, load)] = list(_feature_sets(args))
    features = load()  # under torchrun every rank extracts its share; rank 0 writes the file
    if not distributed.ranks().main:
        return 0
    save_feature_file(features, args.output)
    if args.json:
        print(json.dumps({"output": args.output, "images": len(features), "classes": features.num_classes,
                          "dim": features.dim}))  # fmt: skip
    else:
        print(f"wrote {args.output}: {plural(len(features), 'image')}, {plural(features.num_classes, 'class')}, "
              f"dimension {features.dim}")  # fmt: skip
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from clipadapt.demo import run_demo

    if args.imbalance is not None and args.imbalance < 1:
        raise ClipAdaptError("--imbalance is the largest/smallest class ratio and must be at least 1")
    records = run_demo(
        args.output_dir,
        args.domains,
        args.method,
        args.images,
        args.pool,
        args.seed,
        imbalance=args.imbalance,
        views=args.views,
        shots=args.shots,
        hparams=args.hparam,
        device=args.device,
        precision=args.precision,
    )
    _print_summary(records, args.json)
    if not args.json:
        print(f"wrote {args.output_dir}/report.html, report.md, {len(records)} result JSONs and samples.png")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    if args.what == "methods":
        from clipadapt.methods import list_methods

        methods = list_methods()
        if args.json:
            print(json.dumps([{"name": c.name, "setting": c.setting, "label_free": c.label_free,
                               "needs_encoder": c.needs_encoder, "summary": c.summary, "paper": c.paper,
                               "code": c.code, "faithfulness": f"docs/faithfulness.md#{c.faithfulness}"}
                              for c in methods]))  # fmt: skip
        for cls in [] if args.json else methods:
            print(f"{cls.name:24s} {cls.setting:13s} {cls.summary}")
        return 0
    if args.what == "datasets":
        from clipadapt.data import list_datasets

        names = list_datasets()
    else:
        from clipadapt.backbones import list_models

        names = list_models()
    print(json.dumps(names) if args.json else "\n".join(names))
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from clipadapt.evaluation import read_results, render_markdown, render_pivot, write_table
    from clipadapt.evaluation.results import TABLE_FORMATS
    from clipadapt.io import atomic_open

    if args.output:
        if not args.output.endswith(TABLE_FORMATS) or (args.pivot and not args.output.endswith(".md")):
            formats = ".md" if args.pivot else ", ".join(TABLE_FORMATS)
            raise ClipAdaptError(f"--output {args.output!r}: {'the pivot table' if args.pivot else 'a table'} "
                                 f"is written as {formats}")  # fmt: skip
        refuse_existing(args.output, args.overwrite)
    rows = read_results(args.results)
    if args.json:
        print(json.dumps(rows, indent=2))
    if args.pivot:
        text = render_pivot(rows)
        if args.output:
            with atomic_open(args.output) as fh:
                fh.write(text)
        if not args.json:
            print(text, end="")
    elif args.output:
        write_table(rows, args.output)
        if not args.json:
            print(f"wrote {args.output}: {plural(len(rows), 'row')}")
    elif not args.json:
        print(render_markdown(rows), end="")
    return 0


def _configure_logging(level: str, quiet: bool) -> None:
    """clipadapt's own messages on stderr (``--quiet``: warnings and errors only); other libraries keep
    their default (warnings only)."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("clipadapt: %(levelname)s: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(max(logging.WARNING, logging.getLevelName(level.upper())) if quiet else level.upper())


COMMANDS = {"demo": cmd_demo, "eval": cmd_eval, "adapt": cmd_adapt, "predict": cmd_predict, "extract": cmd_extract,
            "list": cmd_list, "build": cmd_build}  # fmt: skip


DISTRIBUTED_COMMANDS = ("extract", "eval", "adapt")  # torchrun splits their feature extraction over ranks


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    here = distributed.ranks()
    quiet = getattr(args, "quiet", False) or (not here.main and args.log_level != "debug")  # one rank speaks
    _configure_logging(args.log_level, quiet)
    from clipadapt.progress import set_quiet

    set_quiet(quiet)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if here.world > 1 and args.command not in DISTRIBUTED_COMMANDS:
            raise ClipAdaptError(f"{args.command} runs in one process; under torchrun use "
                                 f"{', '.join(DISTRIBUTED_COMMANDS)}")  # fmt: skip
        if hasattr(args, "device"):  # an absent or unknown device fails before any work, in every command
            from clipadapt.runtime import resolve_device

            resolve_device(args.device)
        return COMMANDS[args.command](args)
    except ClipAdaptError as exc:
        print(f"clipadapt: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("clipadapt: interrupted (finished feature chunks stay cached; rerun to resume)", file=sys.stderr)
        return 130
    finally:
        distributed.finish()


if __name__ == "__main__":
    sys.exit(main())
