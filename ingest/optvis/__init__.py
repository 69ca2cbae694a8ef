"""Activation maximisation (What do CNN neurons learn §2, docs/science.md §11), as separate composable parts:

- ``param``: how an image is parameterised (pixels, or a decorrelated Fourier spectrum),
- ``transforms``: random jitter, rotation, scale and a blur applied before every step,
- ``objectives``: what a batch item maximises (a channel, a unit, a logit) and the penalties,
- ``render``: the optimisation loop that puts them together, one objective per batch item.

Every batch item draws its randomness from its own seeded generator, so a neuron optimised in a
batch of 256 gets the same picture as optimised alone.
"""
from .objectives import Objective, channel, logit, unit
from .param import FourierImage, PixelImage
from .render import RenderResult, render
from .transforms import Blur, Compose, Jitter, Rotate, Scale, standard_transforms

__all__ = ["Objective", "channel", "logit", "unit", "FourierImage", "PixelImage", "RenderResult", "render",
           "Blur", "Compose", "Jitter", "Rotate", "Scale", "standard_transforms"]
