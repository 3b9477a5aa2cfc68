"""faceset: 3D face reconstruction from a single photo up to a photo set."""

__version__ = "0.1.0"
