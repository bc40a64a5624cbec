"""Kinema: text, image or video in; video out.

Three stages, as in the Sora report: a video compression network, a diffusion transformer over
spacetime patches, and a decoder back to pixels. The procedural world (`kinema.world`) is Kinema's
own data set and the ground truth of WorldBench.
"""

__version__ = "0.1.0"
