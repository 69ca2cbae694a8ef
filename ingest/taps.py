"""Read the outputs of chosen layers during a forward pass, for Python and TorchScript models.

Python modules get forward hooks. A TorchScript module runs no Python hooks, so its forward
graph is inlined and rewritten to also return the outputs of its convolutions; a layer is
named by the attribute path of its weight (``layer1.0.conv1``), as ``named_modules`` would.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

_CONVOLUTIONS = ("aten::_convolution", "aten::conv2d")


class _Stop(Exception):
    """Raised after the deepest chosen layer: the rest of the network need not run."""


def is_script(module: nn.Module) -> bool:
    return isinstance(module, torch.jit.ScriptModule)


def _inlined(script: torch.jit.ScriptModule):
    graph = script.forward.graph.copy()
    torch._C._jit_pass_inline(graph)
    return graph


def _attribute_path(value) -> str:
    names, node = [], value.node()
    while node.kind() == "prim::GetAttr":
        names.append(node.s("name"))
        node = node.inputsAt(0).node()
    return ".".join(reversed(names))


def _script_convolutions(graph) -> dict[str, object]:
    """Layer name -> output value of each convolution node whose weight is a module attribute."""
    out = {}
    for node in graph.nodes():
        if node.kind() in _CONVOLUTIONS:
            path = _attribute_path(node.inputsAt(1))
            if path.endswith(".weight"):
                out.setdefault(path[: -len(".weight")], node.output())
    return out


def script_layers(script: torch.jit.ScriptModule) -> list[str]:
    """The convolution layers of a TorchScript module, in graph order."""
    return list(_script_convolutions(_inlined(script)))


class LayerTap:
    """``tap.run(x, on_output)`` calls ``on_output(name, tensor)`` for every chosen layer."""

    def __init__(self, module: nn.Module, layers: list[str], average_pools: bool = False):
        self.module, self.layers = module, list(layers)
        self._callback: Callable | None = None
        self._handles = []
        if is_script(module):
            self._function = self._rewrite(module, average_pools)
        else:
            self._function = None
            modules = dict(module.named_modules())
            fired = set()

            def hook(name):
                def fn(_module, _inputs, out):
                    self._callback(name, out)
                    fired.add(name)
                    if len(fired) == len(self.layers):
                        raise _Stop
                return fn

            self._fired = fired
            self._handles = [modules[n].register_forward_hook(hook(n)) for n in self.layers]

    def _rewrite(self, script, average_pools):
        graph = _inlined(script)
        if average_pools:  # receptive fields: every input of a pooling window counts
            for node in list(graph.nodes()):
                if node.kind() == "aten::max_pool2d":
                    x, kernel, stride, padding, _dilation, ceil = list(node.inputs())
                    with graph.insert_point_guard(node):
                        new = graph.insert("aten::avg_pool2d", [x, kernel, stride, padding, ceil])
                    node.output().replaceAllUsesWith(new)
                    node.destroy()
        convs = _script_convolutions(graph)
        taps = [convs[n] for n in self.layers]
        packed = graph.create("prim::TupleConstruct", taps)
        packed.output().setType(torch._C.TupleType([v.type() for v in taps]))
        graph.appendNode(packed)
        graph.eraseOutput(0)
        graph.registerOutput(packed.output())
        return torch._C._create_function_from_graph("neurocat_tap", graph)

    def run(self, x: torch.Tensor, on_output: Callable[[str, torch.Tensor], None]) -> None:
        if self._function is not None:
            outputs = self._function(self.module._c, x)
            for name, out in zip(self.layers, outputs):
                on_output(name, out)
            return
        self._callback = on_output
        self._fired.clear()
        try:
            self.module(x)
        except _Stop:
            pass
        missing = [n for n in self.layers if n not in self._fired]
        if missing:
            raise ValueError(f"layers {missing} produced no output in a forward pass")

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> "LayerTap":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
