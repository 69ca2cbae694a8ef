"""The layers a model offers to `--layers` (`neurocat layers`): type, channels, output size and
receptive field of each, from one probe forward pass and ``receptive_fields``."""
from __future__ import annotations

import pyarrow as pa
import torch
from torch import nn

from .errors import UsageError
from .layers import conv_layers
from .models import LoadedModel
from .network import module_device
from .receptive_field import receptive_fields
from .taps import LayerTap, is_script

SCHEMA = pa.schema([("layer", pa.string()), ("type", pa.string()), ("channels", pa.int64()),
                    ("out_height", pa.int64()), ("out_width", pa.int64()), ("rf_size", pa.int64()),
                    ("rf_stride", pa.int64())])


def _type_name(module: nn.Module) -> str:
    return getattr(module, "original_name", None) or type(module).__name__  # a ScriptModule keeps its class here


def output_shapes(module: nn.Module, layers: list[str], image_size: int) -> dict[str, tuple[int, ...]]:
    """Shape of each layer's output (its first call) for one gray image; layers that output no
    tensor, or never run, are left out."""
    x = torch.zeros(1, 3, image_size, image_size, device=module_device(module))
    shapes: dict[str, tuple[int, ...]] = {}

    def keep(name, out):
        if isinstance(out, torch.Tensor):
            shapes.setdefault(name, tuple(out.shape))

    try:
        with torch.inference_mode():
            if is_script(module):  # only its convolutions can be tapped
                with LayerTap(module, layers) as tap:
                    tap.run(x, keep)
            else:
                modules = dict(module.named_modules())
                handles = [modules[n].register_forward_hook(lambda _m, _i, out, n=n: keep(n, out)) for n in layers]
                try:
                    module(x)
                finally:
                    for h in handles:
                        h.remove()
    except (RuntimeError, ValueError) as exc:
        raise UsageError(f"the model does not run on a {image_size}×{image_size} image "
                         f"(try another --image-size): {str(exc).splitlines()[0]}") from None
    return shapes


def layer_table(model: LoadedModel | nn.Module, image_size: int = 224, all_modules: bool = False) -> pa.Table:
    """One row per indexable layer (every Conv2d, as `--layers` defaults to; ``all_modules``: every
    named module), in model order: layer, type, channels, out_height, out_width, rf_size, rf_stride.

    Channels are a convolution's ``out_channels``, else the probe's channel count (a (batch, n)
    output has n channels on a 1×1 map, as the ingest sees it). The receptive field is measured only
    where the output is a map of more than one position: a single position (global pooling, a
    classifier) sees the whole image, however large. Columns a layer cannot fill are NULL.
    """
    module = model.module if isinstance(model, LoadedModel) else model
    if all_modules and not is_script(module):
        names = [name for name, _ in module.named_modules() if name]
    else:
        names = conv_layers(module)
    modules = dict(module.named_modules())
    shapes = output_shapes(module, names, image_size)
    maps = {n: s for n, s in shapes.items() if len(s) == 4 and s[2] * s[3] > 1}
    try:
        fields = receptive_fields(module, [n for n in names if n in maps], image_size) if maps else {}
    except ValueError as exc:  # e.g. a dilated max-pool
        raise UsageError(f"cannot measure receptive fields: {exc}") from None
    rows = []
    for name in names:
        m, shape, rf = modules.get(name), shapes.get(name), fields.get(name)
        channels = getattr(m, "out_channels", None) if isinstance(m, nn.Conv2d) else None
        if channels is None and shape is not None and len(shape) in (2, 4):
            channels = shape[1]
        h, w = (shape[2], shape[3]) if shape is not None and len(shape) == 4 else \
            (1, 1) if shape is not None and len(shape) == 2 else (None, None)
        rows.append({"layer": name, "type": _type_name(m) if m is not None else "Conv2d", "channels": channels,
                     "out_height": h, "out_width": w, "rf_size": rf.size if rf else None,
                     "rf_stride": rf.stride if rf else None})
    return pa.Table.from_pylist(rows, schema=SCHEMA)
