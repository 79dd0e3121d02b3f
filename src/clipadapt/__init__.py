"""clipadapt: make CLIP-family models classify your images better than zero-shot CLIP."""

__version__ = "0.1.0"
