"""Labelled image sets: ImageFolder trees and CSV / Parquet manifests, read robustly.

Every image gets a stable integer id: its rank in the manifest sorted by path, so ids do
not depend on read order, worker count or batch size.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .errors import UsageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
# Transparent pixels are composited on neutral gray: it adds no colour and no extreme intensity.
BACKGROUND = (128, 128, 128)


@dataclass
class LabelledImages:
    """A data set: parallel lists, index = image id."""

    name: str
    root: Path
    paths: list[str]  # relative to root where possible
    labels: list[str]
    extra_labels: dict[str, list[str]] = field(default_factory=dict)  # label_set -> values
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, message) found while listing

    def __len__(self) -> int:
        return len(self.paths)

    def absolute(self, image_id: int) -> Path:
        p = Path(self.paths[image_id])
        return p if p.is_absolute() else self.root / p

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels))

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for p, label in zip(self.paths, self.labels):
            h.update(f"{p}\t{label}\n".encode())
        return h.hexdigest()[:16]


def open_images(spec: str | Path, name: str | None = None) -> LabelledImages:
    """An ImageFolder directory (label = sub-folder) or a .csv / .parquet manifest."""
    path = Path(spec)
    if not path.exists():
        raise UsageError(f"data set not found: {path}")
    if path.is_dir():
        data = _image_folder(path, name)
    elif path.suffix.lower() in (".csv", ".parquet"):
        data = _manifest(path, name)
    else:
        raise UsageError(f"--data must be a folder (ImageFolder layout), a .csv or .parquet manifest, or 'demo'; got {path}")
    if len(data) == 0:
        raise UsageError(f"data set {path} holds no images")
    return data


def _image_folder(root: Path, name: str | None) -> LabelledImages:
    paths, labels, problems = [], [], []
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise UsageError(f"{root} has no class sub-folders (ImageFolder layout: {root}/<label>/<image>)")
    for d in class_dirs:
        files = sorted(f for f in d.rglob("*") if f.is_file() and not f.name.startswith("."))
        if not files:
            problems.append((str(d.relative_to(root)), "empty class folder: the class has no images"))
        for f in files:
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                problems.append((str(f.relative_to(root)), f"not an image file suffix ({f.suffix or 'none'}); skipped"))
                continue
            paths.append(str(f.relative_to(root)))
            labels.append(d.name)
    order = sorted(range(len(paths)), key=paths.__getitem__)
    return LabelledImages(name or root.name, root, [paths[i] for i in order], [labels[i] for i in order],
                          problems=problems)


def _manifest(path: Path, name: str | None) -> LabelledImages:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if path.suffix.lower() == ".csv":
            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=False,
                                                                              auto_dict_encode=False))
        else:
            table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for malformed files
        raise UsageError(f"cannot read manifest {path}: {exc}") from exc
    columns = table.column_names
    if "path" not in columns or "label" not in columns:
        raise UsageError(f"manifest {path} needs columns 'path' and 'label' (has: {', '.join(columns)})")
    rows = {c: [None if v is None else str(v) for v in table.column(c).to_pylist()] for c in columns}
    order = sorted(range(table.num_rows), key=lambda i: rows["path"][i])
    seen, keep = set(), []
    problems = []
    for i in order:
        p = rows["path"][i]
        if p in seen:
            problems.append((p, "listed twice in the manifest; kept the first row"))
            continue
        seen.add(p)
        keep.append(i)
    extra = {c: [rows[c][i] or "" for i in keep] for c in columns if c not in ("path", "label")}
    return LabelledImages(name or path.stem, path.parent, [rows["path"][i] for i in keep],
                          [rows["label"][i] or "" for i in keep], extra, problems)


def read_rgb(path: Path) -> Image.Image:
    """Decode any still image to 8-bit RGB: alpha composited, 16-bit rescaled, CMYK converted."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        im.load()
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        if im.mode == "F" and a.max() <= 1.0:
            top = 1.0
        im = Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        canvas = Image.new("RGBA", im.size, BACKGROUND + (255,))
        im = Image.alpha_composite(canvas, im)
    return im.convert("RGB")


def model_view(im: Image.Image, size: int) -> torch.Tensor:
    """The image as the model sees it: shorter side resized to ``size``, centre crop; uint8 (3, size, size)."""
    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=None)
    left, top = (nw - size) // 2, (nh - size) // 2
    im = im.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)  # host: decoded in loader workers


class ImageDataset(torch.utils.data.Dataset):
    """Yields ``(uint8 image or None, image_id, error or None)``; a bad file never stops a run."""

    def __init__(self, images: LabelledImages, size: int, ids: list[int] | None = None):
        self.images, self.size = images, size
        self.ids = list(range(len(images))) if ids is None else ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        image_id = self.ids[i]
        try:
            return model_view(read_rgb(self.images.absolute(image_id)), self.size), image_id, None
        except Exception as exc:  # noqa: BLE001 - any decode failure is recorded, not raised
            return None, image_id, f"{type(exc).__name__}: {exc}"


def collate(batch):
    good = [(x, i) for x, i, err in batch if err is None]
    errors = [(i, err) for x, i, err in batch if err is not None]
    if good:
        images = torch.stack([x for x, _ in good])
        ids = torch.tensor([i for _, i in good], dtype=torch.int64)  # host: loader output, moved by the pass driver
    else:
        images, ids = None, torch.empty(0, dtype=torch.int64)  # host: loader output
    return images, ids, errors


def loader(images: LabelledImages, size: int, batch_size: int, workers: int,
           ids: list[int] | None = None, pin_memory: bool = False) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        ImageDataset(images, size, ids), batch_size=batch_size, shuffle=False, num_workers=workers,
        collate_fn=collate, pin_memory=pin_memory, persistent_workers=False,
        prefetch_factor=4 if workers else None)
