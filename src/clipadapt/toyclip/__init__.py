"""ToyCLIP: the small CLIP that clipadapt trains itself on its procedural world (see resources/toyclip/CARD.md)."""
