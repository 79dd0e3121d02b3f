"""clipadapt: make CLIP-family models classify your images better than zero-shot CLIP.

The package is built in layers (:data:`LAYERS`, bottom first): a module imports only from its own unit
(sub-package or module) and from units of lower layers, never upwards, so that loading a backbone never
reaches a method or a training script. ``tests/test_layers.py`` holds the code to this table.
"""

__version__ = "0.1.0"

LAYERS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("errors",), "the one exception users see, and its messages"),
    (("io", "progress", "paths", "registry", "distributed"), "atomic files, progress, output paths, registries, ranks"),
    (("runtime",), "devices, precision, seeding"),
    (("world", "data", "kernels"), "the procedural world; image sources and prompts; pure tensor math and metrics"),
    (("toyclip",), "ToyCLIP: the model, its weights, and the script that trains it"),
    (("backbones",), "CLIP-family encoders behind one protocol"),
    (("features",), "feature files: extraction, stores, views"),
    (("methods", "synthetic"), "the adaptation methods and their registry; CLIP-like development problems"),
    (("artifact", "evaluation"), "classifiers on disk; the benchmark runner and result files"),
    (("predict", "report"), "labelling new images with a saved classifier; the HTML report"),
    (("demo",), "the offline demo"),
    (("cli",), "the command line"),
    (("__main__",), "python -m clipadapt"),
)  # fmt: skip
