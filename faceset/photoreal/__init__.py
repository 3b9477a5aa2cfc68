"""Out-of-model synthetic photos (``faceset synth --realism photo``): dense shapes, painted
skin, and a renderer of its own (no code shared with ``recon.render``). See ``generate``."""
