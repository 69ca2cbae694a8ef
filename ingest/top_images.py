"""Passes over the top images, after the scan: receptive-field crops → Neuron Feature, σ for α and the
colour drop (one pass over the union of every layer's top images), then the NF self-activation
(one pass over synthetic probes per layer). Both run on the pass driver of ``network.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .data import LabelledImages
from .network import Network, image_batches, network_pass
from .neuron_feature import Canvases, ColorDrop, NeuronFeatureAccumulator, plan_crops
from .receptive_field import ReceptiveField
from .record import ScanState
from .self_activation import nf_self_activation
from .significance import SAMPLE_SIDE


@dataclass
class LayerFeatures:
    """What the passes over a layer's top images give, per neuron (tensors on the network's device)."""

    nf: torch.Tensor          # (C, 3, s, s) in [0, 1]; zeros where no crop was used
    sigma: torch.Tensor       # (C, s, s) per-pixel std across the NF crops
    n_used: torch.Tensor      # (C,) crops in the NF
    nf_size: int
    color_drop: torch.Tensor  # (C,) NaN where no crop was used
    self_activation: np.ndarray | None = None  # (C,) NaN where there is no NF
    seen: torch.Tensor | None = None            # (C, s, s) bool: NF pixels inside the image in some crop (§4)
    samples: torch.Tensor | None = None         # (C, n, 3, r, r) uint8 NF crops kept for the bootstrap of α
    sample_weights: torch.Tensor | None = None  # (C, n) their w; zeros after each neuron's n_used


def neuron_features(network: Network, images: LabelledImages, state: ScanState, fields: dict[str, ReceptiveField],
                    options) -> tuple[dict[str, LayerFeatures], list[tuple[int, str]]]:
    """Crops of every layer's top images in one pass over their union, and the same images made gray
    through the network for the colour drop. Returns ({layer: features}, images unreadable now)."""
    device = network.device
    plans = []
    for name, tops in state.tops().items():
        top = tops.result()
        plans.append(plan_crops(name, fields[name], tops.shape[2], top.values, top.image_ids, top.positions,
                                options.min_rel, options.nf_ranks, options.nf_size))
    side = SAMPLE_SIDE if options.bootstrap else 0  # crops kept for the bootstrap of α
    accumulators = [NeuronFeatureAccumulator(p, device, side) for p in plans]
    drops = {p.layer: ColorDrop(p, state[f"top:{p.layer}"].result().values[:, 0].clamp(min=0), device) for p in plans}
    needed = sorted(set(torch.cat([p.image_ids for p in plans]).tolist())) if plans else []
    fill = state.mean_colour(options.image_size).to(device)
    errors = []
    batches = image_batches(images, needed, device, options.image_size, options.batch_size,
                            options.resolved_workers(), options.decode)
    # With the colour drop, the gray copy of each batch goes through the network while its crops are cut.
    taps = list(drops) if options.wants_color_drop() else []
    canvases = None
    for batch in network_pass(network, batches, taps, lambda b, name, out: drops[name].add(out, b.ids_cpu),
                              transform=ColorDrop.grayscale, desc="crops", total=len(needed),
                              progress=options.progress):
        errors.extend((i, f"unreadable when cropping: {e}") for i, e in batch.errors)
        if len(batch):  # shrunk and padded once per NF scale, in the last batch's memory
            canvases = Canvases(plans, batch.images01, fill, previous=canvases)
            for acc in accumulators:
                acc.add(canvases, batch.ids_cpu)
    out = {}
    for acc in accumulators:
        nf, sigma, n_used = acc.result()
        samples, sample_weights = acc.crop_samples() or (None, None)
        out[acc.plan.layer] = LayerFeatures(nf, sigma, n_used, acc.plan.nf_size, drops[acc.plan.layer].result(),
                                            seen=acc.seen(), samples=samples, sample_weights=sample_weights)
    return out, errors


def self_activations(network: Network, state: ScanState, features: dict[str, LayerFeatures],
                     fields: dict[str, ReceptiveField], options) -> None:
    """Fill each layer's ``self_activation``: the neuron's answer to its own NF relative to a_max (docs/science.md §12)."""
    fill = state.mean_colour(options.image_size).to(network.device)
    for name, f in features.items():
        tops = state[f"top:{name}"]
        a_max = tops.result().values[:, 0].double().cpu().numpy()
        has_nf = (a_max > 0) & (f.n_used.cpu().numpy() > 0)
        _, h, w = tops.shape
        f.self_activation = nf_self_activation(network, name, f.nf, has_nf, a_max, fields[name], h, w,
                                               options.image_size, fill, options.batch_size)
