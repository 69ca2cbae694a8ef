"""Labelled image sets: ImageFolder trees and CSV / Parquet manifests, read robustly.

Every image gets a stable integer id: its rank in the manifest sorted by path, so ids do
not depend on read order, worker count or batch size.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from catalog.images import BACKGROUND, model_view as catalog_model_view, read_rgb  # noqa: F401 - read_rgb: ingest's decoder

from .errors import UsageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


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
    """Label = class sub-folder. Symbolic links: each real folder is listed once, class folders
    first. A link to a folder inside the data set is skipped (that folder is listed under its own
    path); a link to a folder outside it is followed once; a link to a folder holding the data set
    would loop and is skipped. Each image file is indexed once, under its own path: a link to a
    file that is also listed (as a file or through another link) is skipped, a link to a file
    outside the data set is kept (a data set made of links). Skipped and broken links are listing
    problems (``ingest_errors``)."""
    problems: list[tuple[str, str]] = []
    root_real = os.path.realpath(root)
    seen_dirs: dict[str, str] = {root_real: "."}  # real folder -> where it was listed
    found: list[tuple[str, str, str, bool]] = []  # (path, label, real path, is a link)

    def rel(p: Path) -> str:
        return str(p.relative_to(root))

    def within(path: str, folder: str) -> bool:
        return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)

    def enter(d: Path) -> bool:
        """Whether to list folder ``d``; records why not."""
        real = os.path.realpath(d)
        if d.is_symlink():
            if within(root_real, real):
                problems.append((rel(d), f"symbolic link to {real}, which holds the data set (a loop); skipped"))
                return False
            if within(real, root_real):
                target = os.path.relpath(real, root_real)
                problems.append((rel(d), f"symbolic link to the folder {target} of this data set, which is "
                                         f"listed under its own path; skipped"))
                return False
        if real in seen_dirs:
            problems.append((rel(d), f"the same folder as {seen_dirs[real]}, already listed; skipped"))
            return False
        seen_dirs[real] = rel(d)
        return True

    def broken(p: Path) -> bool:
        if p.is_symlink() and not p.exists():
            problems.append((rel(p), f"broken symbolic link (to {os.readlink(p)}); skipped"))
            return True
        return False

    def walk(d: Path, label: str) -> int:
        """List the files under ``d``; returns how many there were."""
        count = 0
        try:
            entries = sorted(d.iterdir())
        except OSError as exc:
            problems.append((rel(d), f"cannot list the folder: {exc.strerror or exc}; skipped"))
            return 0
        for p in entries:
            if broken(p):
                continue
            if p.is_dir():
                if enter(p):
                    count += walk(p, label)
            elif p.is_file() and not p.name.startswith("."):
                count += 1
                if p.suffix.lower() not in IMAGE_SUFFIXES:
                    problems.append((rel(p), f"not an image file suffix ({p.suffix or 'none'}); skipped"))
                    continue
                found.append((rel(p), label, os.path.realpath(p), p.is_symlink()))
        return count

    class_dirs = []
    for d in sorted(root.iterdir()):
        if d.name.startswith(".") or broken(d):
            continue
        if d.is_dir():
            class_dirs.append(d)
    if not class_dirs:
        raise UsageError(f"{root} has no class sub-folders (ImageFolder layout: {root}/<label>/<image>)")
    # Class folders claim their real folders first: a folder that is a class keeps its label
    # when a link inside another class reaches it too.
    for d in [d for d in class_dirs if enter(d)]:
        if not walk(d, d.name):
            problems.append((rel(d), "empty class folder: the class has no images"))
    # One entry per file: its own path before any link to it, then the first link by path.
    keep: dict[str, tuple[str, str, str, bool]] = {}
    for entry in sorted(found, key=lambda e: (e[3], e[0])):
        if entry[2] in keep:
            problems.append((entry[0], f"symbolic link to the same file as {keep[entry[2]][0]}, which is "
                                       f"indexed; skipped so the image counts once"))
        else:
            keep[entry[2]] = entry
    listed = sorted(keep.values())
    return LabelledImages(name or root.name, root, [p for p, *_ in listed], [label for _, label, *_ in listed],
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


def model_view(im: Image.Image, size: int) -> torch.Tensor:
    """The image as the model sees it (``catalog.images.model_view``), uint8 (3, size, size)."""
    view = catalog_model_view(im, size)
    return torch.from_numpy(np.asarray(view, dtype=np.uint8).copy()).permute(2, 0, 1)  # host: decoded in loader workers


DECODERS = ("auto", "cpu", "gpu")


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


class ImageDataset(torch.utils.data.Dataset):
    """Yields ``(uint8 image or JPEG bytes or None, image_id, error or None)``; a bad file never stops a run.

    With ``jpeg_bytes`` a JPEG file is returned undecoded (a numpy byte array: plain pickling, no
    file descriptors passed between processes) for the batch to be decoded on the device.
    """

    def __init__(self, images: LabelledImages, size: int, ids: list[int] | None = None, jpeg_bytes: bool = False):
        self.images, self.size, self.jpeg_bytes = images, size, jpeg_bytes
        self.ids = list(range(len(images))) if ids is None else ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        image_id = self.ids[i]
        try:
            path = self.images.absolute(image_id)
            if self.jpeg_bytes:
                data = path.read_bytes()
                if is_jpeg(data):
                    return np.frombuffer(data, dtype=np.uint8), image_id, None
            return model_view(read_rgb(path, self.size), self.size), image_id, None
        except Exception as exc:  # noqa: BLE001 - any decode failure is recorded, not raised
            return None, image_id, f"{type(exc).__name__}: {exc}"


def collate(batch):
    """(decoded images stacked or None, their ids, errors)."""
    return collate_with_jpegs(batch)[:3]


def collate_with_jpegs(batch):
    """(decoded images stacked or None, their ids, errors, [(id, JPEG bytes)])."""
    good = [(x, i) for x, i, err in batch if err is None and isinstance(x, torch.Tensor)]
    jpegs = [(i, x) for x, i, err in batch if err is None and isinstance(x, np.ndarray)]
    errors = [(i, err) for x, i, err in batch if err is not None]
    if good:
        images = torch.stack([x for x, _ in good])
        ids = torch.tensor([i for _, i in good], dtype=torch.int64)  # host: loader output, moved by the pass driver
    else:
        images, ids = None, torch.empty(0, dtype=torch.int64)  # host: loader output
    return images, ids, errors, jpegs


def loader(images: LabelledImages, size: int, batch_size: int, workers: int,
           ids: list[int] | None = None, pin_memory: bool = False, jpeg_bytes: bool = False):
    return torch.utils.data.DataLoader(
        ImageDataset(images, size, ids, jpeg_bytes), batch_size=batch_size, shuffle=False, num_workers=workers,
        collate_fn=collate_with_jpegs if jpeg_bytes else collate, pin_memory=pin_memory, persistent_workers=False,
        prefetch_factor=4 if workers else None)


def model_view_tensor(image: torch.Tensor, size: int) -> torch.Tensor:
    """``model_view`` for a decoded (3, H, W) uint8 tensor on any device: the same sizes and crop,
    bilinear with antialiasing (within a few levels of PIL's; docs/science.md §19)."""
    h, w = image.shape[1:]
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        image = torch.nn.functional.interpolate(image[None].float(), size=(nh, nw), mode="bilinear",
                                                antialias=True, align_corners=False)[0]
        image = image.round_().clamp_(0, 255).to(torch.uint8)
    left, top = (nw - size) // 2, (nh - size) // 2
    return image[:, top:top + size, left:left + size]


def decode_jpegs(jpegs: list[tuple[int, np.ndarray]], images: LabelledImages, size: int, device: torch.device):
    """Decode JPEG bytes on ``device`` (nvJPEG on CUDA) as the model sees them. A file the batched
    decoder refuses (CMYK, odd progressive files) falls back to the CPU path; one nothing can read
    becomes an error. Returns ([(id, (3, size, size) uint8 on device)], [(id, error)])."""
    from torchvision.io import ImageReadMode, decode_jpeg

    data = [torch.from_numpy(b.copy()) for _, b in jpegs]  # host: file bytes; decode_jpeg moves them
    try:
        decoded = decode_jpeg(data, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True)
    except RuntimeError:  # one bad file fails the batch: decode one by one
        decoded = []
        for d in data:
            try:
                decoded.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True))
            except RuntimeError:
                decoded.append(None)
    out, errors = [], []
    for (image_id, _), image in zip(jpegs, decoded):
        try:
            if image is None:
                image = model_view(read_rgb(images.absolute(image_id), size), size).to(device)
            else:
                image = model_view_tensor(image, size)
            out.append((image_id, image))
        except Exception as exc:  # noqa: BLE001 - recorded like any decode failure
            errors.append((image_id, f"{type(exc).__name__}: {exc}"))
    return out, errors
