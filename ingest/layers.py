"""Choose layers by dotted module name or glob."""
from __future__ import annotations

import fnmatch
from difflib import SequenceMatcher

from torch import nn

from .errors import UsageError
from .taps import is_script, script_layers


def conv_layers(model: nn.Module) -> list[str]:
    if is_script(model):
        return script_layers(model)
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d) and name]


def resolve_layers(model: nn.Module, patterns: list[str] | None) -> list[str]:
    """Module names matching ``patterns`` (exact names or globs), in model order; default every Conv2d."""
    if not patterns:
        layers = conv_layers(model)
        if not layers:
            raise UsageError("the model has no Conv2d layer; name the layers with --layers")
        return layers
    # A TorchScript graph can be tapped at its convolutions only.
    names = script_layers(model) if is_script(model) else [name for name, _ in model.named_modules() if name]
    chosen: set[str] = set()
    for pattern in patterns:
        hits = [n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise UsageError(unknown_layer(model, pattern, names))
        chosen.update(hits)
    return [n for n in names if n in chosen]


def unknown_layer(model: nn.Module, pattern: str, names: list[str]) -> str:
    """The message for a name nothing matches: the convolutions (what is usually meant) closest
    first, then the closest other modules, then where to see them all."""
    def closest(candidates: list[str], n: int) -> str:
        ranked = sorted(candidates, key=lambda c: -SequenceMatcher(None, pattern, c).ratio())
        return ", ".join(ranked[:n]) + (f" … ({len(candidates)} in all)" if len(candidates) > n else "")

    convs = conv_layers(model)
    conv_set = set(convs)
    others = [n for n in names if n not in conv_set]
    parts = [f"no layer matches {pattern!r}"]
    if convs:
        parts.append(f"Convolution layers, closest first: {closest(convs, 12)}")
    if others:
        parts.append(f"{'Other modules' if convs else 'Modules'}, closest first: {closest(others, 5 if convs else 12)}")
    return ". ".join(parts) + (". Run `neurocat layers --model <your model>` to list them with channels, "
                               "output size and receptive field (--all: every module)")
