"""JPEG decoding on the device (``--decode gpu``) and libjpeg's reduced-scale decoding on the CPU give
the images the PIL path gives, within a documented tolerance; odd files still fall back or are recorded."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ingest.data import model_view, open_images, read_rgb
from ingest.network import image_batches


def photos(root: Path, n=6) -> Path:
    """Photo-sized (500×375) JPEGs at quality 90 with smooth structure and noise, plus odd files."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:375, 0:500]
    for k in range(n):
        d = root / f"c{k % 2}"
        d.mkdir(parents=True, exist_ok=True)
        img = np.stack([128 + 100 * np.sin(x / (20 + 7 * k) + k), 128 + 100 * np.cos(y / (15 + 5 * k)),
                        128 + 60 * np.sin((x + y) / 30)], -1)
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(d / f"{k}.jpg", quality=90)
    Image.fromarray(img).convert("CMYK").save(root / "c0" / "cmyk.jpg", quality=90)
    Image.fromarray(img).convert("L").save(root / "c0" / "gray.jpg", quality=90)
    Image.fromarray(img).save(root / "c1" / "progressive.jpg", quality=90, progressive=True)
    Image.fromarray(img).save(root / "c1" / "lossless.png")
    (root / "c1" / "truncated.jpg").write_bytes((root / "c0" / "0.jpg").read_bytes()[:3000])
    return root


def decoded(images, decode, device, size=224):
    pixels, errors = {}, []
    for batch in image_batches(images, list(range(len(images))), torch.device(device), size, 4, 0, decode):
        assert batch.ids_cpu.tolist() == sorted(batch.ids_cpu.tolist())  # crops need ascending ids
        assert batch.ids.device.type == torch.device(device).type
        if batch.pixels is not None:
            assert batch.pixels.device.type == torch.device(device).type and batch.pixels.dtype == torch.uint8
            pixels.update(zip(batch.ids_cpu.tolist(), batch.pixels.cpu()))
        errors += [i for i, _ in batch.errors]
    return pixels, errors


def compare(a, b):
    assert a.keys() == b.keys()
    for i in a:
        diff = (a[i].int() - b[i].int()).abs().float()
        # Decoders' IDCTs and the two antialiased bilinear resizes differ by rounding only.
        assert diff.mean() < 0.5 and diff.max() <= 2, (i, diff.mean(), diff.max())


def test_device_decoding_matches_pil_and_keeps_every_error(tmp_path):
    images = open_images(photos(tmp_path / "photos"))
    cpu, cpu_errors = decoded(images, "cpu", "cpu")
    dev, dev_errors = decoded(images, "gpu", "cpu")  # torchvision's decoder, here on the CPU device
    assert cpu_errors == dev_errors == [images.paths.index("c1/truncated.jpg")]
    assert len(cpu) == len(images) - 1
    compare(cpu, dev)


@pytest.mark.gpu
def test_cuda_decoding_matches_pil(tmp_path):
    images = open_images(photos(tmp_path / "photos"))
    cpu, cpu_errors = decoded(images, "cpu", "cpu")
    gpu, gpu_errors = decoded(images, "auto", "cuda")  # auto: nvJPEG on a CUDA device
    assert cpu_errors == gpu_errors
    compare(cpu, gpu)


def test_reduced_scale_jpeg_decoding_stays_close(tmp_path):
    images = open_images(photos(tmp_path / "photos"))
    for i in range(3):  # 375 px shorter side >= 2 × 128: libjpeg decodes at half scale
        path = images.absolute(i)
        with Image.open(path) as im:
            im.draft("RGB", (171, 128))  # what read_rgb asks for at 128 px
            assert im.size == (250, 188)  # the draft did apply
        full, draft = model_view(read_rgb(path), 128).int(), model_view(read_rgb(path, 128), 128).int()
        diff = (full - draft).abs().float()
        # Two legitimate downsamplings (DCT-domain, then bilinear) differ on high-frequency noise only.
        assert diff.mean() < 4.0 and diff.max() <= 32, (diff.mean(), diff.max())
    small = images.absolute(0)  # 375 < 2 × 224: decoded at full scale, identical
    assert torch.equal(model_view(read_rgb(small), 224), model_view(read_rgb(small, 224), 224))


def test_unknown_decoder_is_a_usage_error():
    from ingest.errors import UsageError
    from ingest.options import IngestOptions

    with pytest.raises(UsageError, match="--decode must be one of auto, cpu, gpu"):
        IngestOptions(decode="nvjpeg")
