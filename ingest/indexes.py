"""Selectivity indexes from other packages: a function registered under the entry-point group
``neuron_catalog.indexes`` gets one layer's facts and returns one value per neuron.

    # the plugin's pyproject.toml
    [project.entry-points."neuron_catalog.indexes"]
    orientation = "ingest.indexes:orientation_selectivity"

Every registered index is computed by `neurocat ingest` and by `neurocat analyze index NAME`, lands
in ``neuron_indexes`` under its entry-point name, and appears as a column of ``neurons``. An ingest
computes two layers at once in threads: a plugin must be safe to call from two threads (a pure
function of its ``LayerData`` is).
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Callable

import numpy as np

GROUP = "neuron_catalog.indexes"


@dataclass
class LayerData:
    """What an index sees of one layer: the same at ingest and when rebuilt from the catalogue."""

    model: str
    layer: str
    nf: np.ndarray       # (C, s, s, 3) Neuron Features in [0, 1], as stored (8-bit); zeros where none
    has_nf: np.ndarray   # (C,) bool
    a_max: np.ndarray    # (C,) NaN where the neuron has no top image
    rel: np.ndarray      # (C, N) relative activations of the top images, rank order; NaN for empty slots
    labels: np.ndarray   # (C, N) class ids (into ``classes``) of the top images; -1 for empty slots
    classes: list[str]


IndexFunction = Callable[[LayerData], np.ndarray]


def registered() -> dict[str, IndexFunction]:
    """Name -> function of every installed index plugin (a broken one is skipped with a warning)."""
    found = {}
    for ep in entry_points(group=GROUP):
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", ep.name):
            warnings.warn(f"index plugin {ep.name!r} ignored: names are lower-case letters, digits and _")
            continue
        try:
            found[ep.name] = ep.load()
        except Exception as exc:  # noqa: BLE001 - another package's import error must not stop an ingest
            warnings.warn(f"index plugin {ep.name!r} ({ep.value}) cannot be loaded: {exc}")
    return found


def compute(functions: dict[str, IndexFunction], data: LayerData, strict: bool = True) -> dict[str, np.ndarray]:
    """Each index's (C,) values, checked; NaN (stored as NULL) where a neuron has none.

    With ``strict=False`` (at ingest) a failing plugin is skipped with a warning: another package's
    bug must not cost the run.
    """
    out = {}
    for name, fn in functions.items():
        try:
            values = np.asarray(fn(data), dtype=np.float64)
            if values.shape != (len(data.has_nf),):
                raise ValueError(f"it returned shape {values.shape}, not one value per neuron ({len(data.has_nf)})")
        except Exception as exc:  # noqa: BLE001 - any plugin failure
            if strict:
                raise ValueError(f"index {name!r} failed on layer {data.layer}: {exc}") from exc
            warnings.warn(f"index {name!r} skipped on layer {data.layer}: {exc}")
            continue
        out[name] = values
    return out


def _gradient(f: np.ndarray, axis: int) -> np.ndarray:
    """``np.gradient(f, axis=axis)`` (unit spacing, one-sided first-order edges), the same values,
    written straight into one array: np.gradient's temporaries made it the index's main cost."""
    def part(start, stop):
        return tuple(slice(start, stop) if i == axis else slice(None) for i in range(f.ndim))

    out = np.empty_like(f)
    np.subtract(f[part(2, None)], f[part(None, -2)], out=out[part(1, -1)])
    out[part(1, -1)] /= 2.0
    np.subtract(f[part(1, 2)], f[part(0, 1)], out=out[part(0, 1)])
    np.subtract(f[part(-1, None)], f[part(-2, -1)], out=out[part(-1, None)])
    return out


def orientation_selectivity(data: LayerData) -> np.ndarray:
    """Coherence of the NF's structure tensor, (λ1 − λ2) / (λ1 + λ2) of Σ ∇I ∇Iᵀ over the gray NF:
    1 for a single orientation (an edge or grating), 0 for none (a blob, noise, a flat patch)."""
    gray = data.nf.mean(axis=3)                       # (C, s, s)
    if min(gray.shape[1:]) < 2:                       # a 1-pixel field has no structure
        return np.full(len(data.has_nf), np.nan)
    gy, gx = _gradient(gray, 1), _gradient(gray, 2)
    jxx, jyy, jxy = (gx * gx).sum((1, 2)), (gy * gy).sum((1, 2)), (gx * gy).sum((1, 2))
    trace = jxx + jyy
    spread = np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2)  # λ1 − λ2
    with np.errstate(invalid="ignore", divide="ignore"):
        coherence = np.where(trace > 1e-12, spread / trace, np.nan)
    return np.where(data.has_nf, coherence, np.nan)
