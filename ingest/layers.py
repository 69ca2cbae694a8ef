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
            ranked = sorted(names, key=lambda n: -SequenceMatcher(None, pattern, n).ratio())
            raise UsageError(f"no layer matches {pattern!r}. Valid layer names, closest first: "
                             + ", ".join(ranked[:15]) + (f" … ({len(names)} in all)" if len(names) > 15 else ""))
        chosen.update(hits)
    return [n for n in names if n in chosen]
