"""The demo's labelled stimulus set: shapes × hues × textures on varied backgrounds.

Deterministic (seeded), generated offline. Label = shape; a second label column = hue name.
"""
from __future__ import annotations

import colorsys
import csv
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "cross")
HUES = {"red": 0, "orange": 30, "yellow": 55, "green": 120, "cyan": 180, "blue": 225, "purple": 275, "magenta": 315}
TEXTURES = ("solid", "stripes", "dots", "checker")
BACKGROUNDS = ("gray", "noise", "gradient")


def _shape_mask(shape: str, size: int, cx: float, cy: float, r: float, angle: float) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(mask)
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        return mask
    if shape == "square":
        pts = [(cx + r * 0.9 * math.cos(angle + k * math.pi / 2 + math.pi / 4) * math.sqrt(2),
                cy + r * 0.9 * math.sin(angle + k * math.pi / 2 + math.pi / 4) * math.sqrt(2)) for k in range(4)]
    elif shape == "triangle":
        pts = [(cx + r * math.cos(angle + k * 2 * math.pi / 3), cy + r * math.sin(angle + k * 2 * math.pi / 3))
               for k in range(3)]
    elif shape == "star":
        pts = [(cx + (r if k % 2 == 0 else r * 0.45) * math.cos(angle + k * math.pi / 5),
                cy + (r if k % 2 == 0 else r * 0.45) * math.sin(angle + k * math.pi / 5)) for k in range(10)]
    elif shape == "cross":
        t = r * 0.35
        base = [(-t, -r), (t, -r), (t, -t), (r, -t), (r, t), (t, t), (t, r), (-t, r), (-t, t), (-r, t), (-r, -t), (-t, -t)]
        ca, sa = math.cos(angle), math.sin(angle)
        pts = [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in base]
    else:
        raise ValueError(shape)
    d.polygon(pts, fill=255)
    return mask


def _texture(kind: str, size: int, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    period = rng.integers(6, 14)
    if kind == "solid":
        on = np.ones((size, size), bool)
    elif kind == "stripes":
        on = ((xx + yy * rng.choice([0, 1])) // (period // 2)) % 2 == 0
    elif kind == "dots":
        on = ((xx % period) - period / 2) ** 2 + ((yy % period) - period / 2) ** 2 < (period / 3) ** 2
    else:
        on = ((xx // (period // 2)) + (yy // (period // 2))) % 2 == 0
    dark = rgb * 0.45
    return np.where(on[..., None], rgb, dark)


def _background(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    level = rng.uniform(0.25, 0.8)
    if kind == "gray":
        return np.full((size, size, 3), level)
    if kind == "noise":
        return np.clip(level + rng.normal(0, 0.08, (size, size, 1)), 0, 1).repeat(3, axis=2)
    ramp = np.linspace(level - 0.2, level + 0.2, size)
    g = ramp[None, :] if rng.random() < 0.5 else ramp[:, None]
    return np.clip(np.broadcast_to(g, (size, size))[..., None], 0, 1).repeat(3, axis=2)


def generate(out: str | Path, variants: int = 12, size: int = 128, seed: int = 0) -> Path:
    """Write ``shapes × hues × textures × variants`` PNGs and ``manifest.csv`` (path,label,hue,texture)."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    rows = []
    for shape in SHAPES:
        (out / shape).mkdir(parents=True, exist_ok=True)
        for hue_name, hue in HUES.items():
            for texture in TEXTURES:
                for v in range(variants):
                    sat, val = rng.uniform(0.75, 1.0), rng.uniform(0.75, 1.0)
                    rgb = np.array(colorsys.hsv_to_rgb((hue + rng.uniform(-6, 6)) % 360 / 360, sat, val))
                    r = rng.uniform(0.22, 0.38) * size
                    cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
                    mask = np.asarray(_shape_mask(shape, size, cx, cy, r, rng.uniform(0, 2 * math.pi)),
                                      dtype=np.float64)[..., None] / 255
                    bg = _background(BACKGROUNDS[v % len(BACKGROUNDS)], size, rng)
                    img = bg * (1 - mask) + _texture(texture, size, rgb, rng) * mask
                    rel = f"{shape}/{hue_name}_{texture}_{v:02d}.png"
                    Image.fromarray((img * 255 + 0.5).astype(np.uint8)).save(out / rel)
                    rows.append((rel, shape, hue_name, texture))
    with open(out / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "hue", "texture"])
        w.writerows(rows)
    return out / "manifest.csv"
