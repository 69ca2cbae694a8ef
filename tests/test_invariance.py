"""Orientation and symmetry selectivity (docs/science.md §21) on planted kernels whose answers are known,
and the receptive-field boxes they are evaluated on (ingest/patches.py)."""
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

import catalog
from ingest.cli import app
from ingest.data import open_images
from ingest.invariance import (Transform, analyze_invariance, margin, plan_layer, run_layer, transform_squares,
                               transformed_boxes)
from ingest.models import LoadedModel
from ingest.network import Network
from ingest.patches import LayerGeometry, evaluate, full_maps, layer_geometry
from ingest.pipeline import IngestOptions, ingest
from ingest.receptive_field import receptive_fields

BAR, EDGE, BLOB, TEE = 0, 1, 2, 3
SIZE = 32


def kernels() -> torch.Tensor:
    """(4, 7, 7) luminance kernels.

    BAR: a horizontal line of +2 flanked by lines of −1 (even: the same turned by 180°; zero on any
    image constant along rows turned by 90°). EDGE: Sobel, bright above dark (odd: −itself at 180°).
    BLOB: a Gaussian, σ = 1.2 (isotropic). TEE: a T (bar on row 1, stem below on the centre column) at
    +1, every other tap −9/40 (zero sum): symmetric about the vertical axis only.
    """
    k = torch.zeros(4, 7, 7, dtype=torch.float64)
    k[BAR, 3], k[BAR, 2], k[BAR, 4] = 2.0, -1.0, -1.0
    k[EDGE, 2:5, 2:5] = torch.tensor([[1.0, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=torch.float64)
    r = torch.arange(7, dtype=torch.float64) - 3
    k[BLOB] = torch.exp(-(r.view(-1, 1) ** 2 + r.view(1, -1) ** 2) / (2 * 1.2 ** 2))
    tee = torch.zeros(7, 7, dtype=torch.bool)
    tee[1, 1:6] = True
    tee[2:6, 3] = True
    k[TEE] = torch.where(tee, 1.0, -9 / 40)
    return k


def kernel_net(dtype=torch.float32) -> nn.Module:
    conv = nn.Conv2d(3, 4, 7, padding=3, bias=False)
    with torch.no_grad():
        conv.weight.copy_(kernels().unsqueeze(1).expand(4, 3, 7, 7) / 3)
    return nn.Sequential(conv).to(dtype).eval()


def kernel_images(root, per_class=6):
    """White shapes on black, kept 4 px or more from the border: horizontal bars, step edges (bright
    above), Gaussian blobs and T shapes."""
    rng = np.random.default_rng(0)
    for label in ("bar", "blob", "edge", "tee"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            img = np.zeros((SIZE, SIZE))
            y, x = (int(v) for v in rng.integers(9, SIZE - 9, 2))
            if label == "bar":
                img[y, 4:SIZE - 4] = 1
            elif label == "edge":
                img[:y] = 1
            elif label == "blob":
                r = np.arange(SIZE)
                img = np.exp(-((r[:, None] - y) ** 2 + (r[None, :] - x) ** 2) / (2 * 1.5 ** 2))
            else:
                img[y - 2, x - 2:x + 3] = 1
                img[y - 1:y + 3, x] = 1
            Image.fromarray((np.repeat(img[:, :, None], 3, 2) * 255 + 0.5).astype(np.uint8)).save(
                root / label / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def kernel_catalogue(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("invariance")
    model = LoadedModel(kernel_net(), "kernels", "callable", None, (0.0,) * 3, (1.0,) * 3)
    images = open_images(kernel_images(tmp / "data"))
    ingest(model, images, tmp / "c.duckdb", "kernels", ["0"],
           IngestOptions(image_size=SIZE, batch_size=8, workers=0, progress=False, device="cpu", top_n=6,
                         self_activation=False))
    with catalog.open(tmp / "c.duckdb") as cat:
        counts = analyze_invariance(cat, "kernels", ["orientation", "symmetry"], network=model, device="cpu",
                                    progress=False)
    yield tmp / "c.duckdb", model, counts


def curve(cat, unit):
    return dict(cat.rows("SELECT angle, retention FROM orientation_tuning WHERE model = 'kernels' AND unit = ?",
                         [unit]))


def axes(cat, unit):
    return dict(cat.rows("SELECT axis, retention FROM symmetry_axes WHERE model = 'kernels' AND unit = ?", [unit]))


def index(cat, unit, name):
    return cat.rows(f"SELECT {name} FROM neurons WHERE model = 'kernels' AND unit = ?", [unit])[0][0]


def test_rows_written(kernel_catalogue):
    _, _, counts = kernel_catalogue
    assert counts == {"orientation_tuning": 4 * 24, "symmetry_axes": 4 * 4, "neuron_indexes": 4 * 4}


def test_bar_detector_peaks_at_0_and_180_trough_at_90(kernel_catalogue):
    path, _, _ = kernel_catalogue
    with catalog.open(path, read_only=True) as cat:
        r = curve(cat, BAR)
        assert sorted(r) == list(range(0, 360, 15))
        assert r[0] == 1.0
        # Even kernel: turning the field by 180° gives the same sum, term by term.
        assert r[180] == pytest.approx(1.0, abs=1e-6)
        # Its top images are horizontal bars; turned by 90° they are vertical, and 2 − 1 − 1 = 0 on every row.
        assert r[90] == pytest.approx(0.0, abs=1e-6) and r[270] == pytest.approx(0.0, abs=1e-6)
        assert min(r.values()) == pytest.approx(r[90], abs=1e-9)
        assert max(v for a, v in r.items() if a not in (0, 180)) < 0.8
        assert index(cat, BAR, "preferred_angle") == 180
        assert index(cat, BAR, "orientation_index") > 0.75
        assert index(cat, BAR, "orientation_selectivity") > 0.6


def test_edge_detector_peaks_at_0_only(kernel_catalogue):
    path, _, _ = kernel_catalogue
    with catalog.open(path, read_only=True) as cat:
        r = curve(cat, EDGE)
        assert r[180] == pytest.approx(0.0, abs=1e-9)  # odd kernel: −a at 180°, nothing left after max(·, 0)
        assert max(v for a, v in r.items() if a != 0) < 0.9
        assert index(cat, EDGE, "preferred_angle") in (15, 345)
        assert index(cat, EDGE, "orientation_index") > 0.6


def test_isotropic_blob_has_orientation_index_near_zero(kernel_catalogue):
    path, _, _ = kernel_catalogue
    with catalog.open(path, read_only=True) as cat:
        r = curve(cat, BLOB)
        assert r[90] == pytest.approx(1.0, abs=1e-6) and r[180] == pytest.approx(1.0, abs=1e-6)  # exact turns
        assert min(r.values()) > 0.9  # other angles: only the bilinear resampling's blur
        assert abs(index(cat, BLOB, "orientation_index")) < 0.05
        assert index(cat, BLOB, "orientation_selectivity") < 0.05
        assert index(cat, BLOB, "symmetry_index") == pytest.approx(1.0, abs=1e-6)


def test_kernel_symmetric_about_the_vertical_axis(kernel_catalogue):
    path, _, _ = kernel_catalogue
    with catalog.open(path, read_only=True) as cat:
        m = axes(cat, TEE)
        assert m[90] == pytest.approx(1.0, abs=1e-6)   # mirror about the vertical axis: the same sum
        assert max(m[0], m[45], m[135]) < 0.6
        assert index(cat, TEE, "symmetry_index") == pytest.approx(np.mean(list(m.values())))
        rows = cat.rows("SELECT unit FROM symmetry_selective_neurons WHERE model = 'kernels' ORDER BY unit")
        assert (BLOB,) in rows and (EDGE,) not in rows
        assert (BAR,) in cat.rows("SELECT unit FROM orientation_selective_neurons WHERE model = 'kernels'")


def test_edge_mirror_axes(kernel_catalogue):
    """Sobel (bright above dark) is symmetric about the vertical axis and flips sign about the horizontal one."""
    path, _, _ = kernel_catalogue
    with catalog.open(path, read_only=True) as cat:
        m = axes(cat, EDGE)
        assert m[90] == pytest.approx(1.0, abs=1e-6)
        assert m[0] == pytest.approx(0.0, abs=1e-9)


# -- transforms ------------------------------------------------------------------------------------


def test_rotation_by_0_or_360_is_the_field_itself_and_90_turns_counter_clockwise():
    s = 9
    m = margin(s)
    context = torch.rand(2, 3, s + 2 * m, s + 2 * m, generator=torch.Generator().manual_seed(1))
    square = context[:, :, m:m + s, m:m + s]
    got = transform_squares(context, s, [Transform("rotation", 0), Transform("rotation", 360),
                                         Transform("rotation", 90), Transform("rotation", 720)])
    assert torch.equal(got[:, 0], square) and torch.equal(got[:, 1], square) and torch.equal(got[:, 3], square)
    # Counter-clockwise as displayed: the right-hand column becomes the top row.
    assert torch.equal(got[:, 2, :, 0, :], square[:, :, :, -1])
    # Bilinear sampling turns the same way: on a ramp f = column (exact under bilinear interpolation),
    # the field turned by θ shows f(centre + dx·cos θ − dy·sin θ), as the exact 90° turn does.
    q = s + 2 * m
    ramp = torch.arange(q, dtype=torch.float64).view(1, 1, 1, q).expand(1, 3, q, q).contiguous()
    turned = transform_squares(ramp, s, [Transform("rotation", 30), Transform("rotation", 90)])[0, :, 0]
    d = torch.arange(s, dtype=torch.float64) - (s - 1) / 2
    for k, angle in enumerate((30, 90)):
        c, sn = np.cos(np.radians(angle)), np.sin(np.radians(angle))
        expected = m + (s - 1) / 2 + d.view(1, -1) * c - d.view(-1, 1) * sn
        assert torch.allclose(turned[k], expected, atol=1e-9)


def test_mirrors_are_reflections_about_their_axes():
    s = 5
    m = margin(s)
    context = torch.rand(1, 3, s + 2 * m, s + 2 * m, generator=torch.Generator().manual_seed(2))
    sq = context[0, 0, m:m + s, m:m + s]
    got = transform_squares(context, s, [Transform("mirror", a) for a in (0, 45, 90, 135)])[0, :, 0]
    for i in range(s):
        for j in range(s):
            assert got[0, i, j] == sq[s - 1 - i, j]            # about the horizontal axis: up-down
            assert got[2, i, j] == sq[i, s - 1 - j]            # about the vertical axis: left-right
            assert got[3, i, j] == sq[j, i]                    # 135°: the main diagonal (top-left to bottom-right)
            assert got[1, i, j] == sq[s - 1 - j, s - 1 - i]    # 45°: the other diagonal


# -- boxes through the truncated network ------------------------------------------------------------


def small_net(dtype):
    """Padding, a batch norm with a bias (so padding is not 'the network on zero pixels'), a stride-2
    convolution and a max-pool."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
                        nn.MaxPool2d(3, stride=2, padding=1), nn.Conv2d(8, 6, 3, padding=1))
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
        net[1].bias.uniform_(-1, 1)
    return net.to(dtype).eval()


def network(module, size):
    return Network(LoadedModel(module, "x", "callable", None, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), "cpu")


def geometry_of(net, layer, size):
    rf = receptive_fields(net.module, [layer], size)[layer]
    return layer_geometry(net, layer, rf.size, rf.stride, rf.offset_y, rf.offset_x, size)


@pytest.mark.parametrize("layer", ["0", "3", "5", "6"])
def test_box_activation_equals_full_image_at_every_position(layer):
    """float64: equal to 1e-12 at every position, borders included (a wrong box is off by O(1));
    float32: the same up to the rounding of a differently ordered sum."""
    size = 32
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        net = network(small_net(dtype), size)
        g = geometry_of(net, layer, size)
        assert g.patch
        image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(3), dtype=dtype)
        full = full_maps(net, layer, image)[0]
        scale = float(full.abs().max())
        for y in range(g.out_height):
            for x in range(g.out_width):
                t, b, l, r, iy, ix = g.box(y, x)
                got = evaluate(net, layer, image[:, :, t:b, l:r], iy, ix)[0]
                assert float((got - full[:, y, x]).abs().max()) <= tol * scale, (dtype, y, x)
    box = g.box(g.out_height // 2, g.out_width // 2)
    assert box[1] - box[0] < size  # the inner positions really use a smaller box


def test_transformed_boxes_equal_the_transformed_full_image():
    """The 27 transformed boxes of a key, through the truncated network, equal the whole image with its
    field replaced by the same transform (float64), borders included."""
    size, layer = 32, "6"
    net = network(small_net(torch.float64), size)
    g = geometry_of(net, layer, size)
    whole = LayerGeometry(**{**g.__dict__, "patch": False})
    transforms = [Transform("rotation", a) for a in range(15, 360, 15)] + [Transform("mirror", a) for a in (0, 45, 90, 135)]
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    fill = net.mean.view(3).double()
    zero = torch.zeros(1, dtype=torch.int64)
    for y, x in ((0, 0), (3, 4), (g.out_height - 1, 2)):
        def made(geom):
            t, b, l, r, iy, ix = geom.box(y, x)
            boxes = transformed_boxes(image, zero, torch.tensor([y]), torch.tensor([x]), torch.tensor([iy]),
                                      torch.tensor([ix]), b - t, r - l, geom, transforms, fill)[0]
            return evaluate(net, layer, boxes, iy, ix)
        small, big = made(g), made(whole)
        assert whole.box(y, x)[:4] == (0, size, 0, size)
        assert torch.allclose(small, big, rtol=0, atol=1e-12 * float(big.abs().max()))


@pytest.mark.parametrize("layer", ["layer1.0.conv1", "layer1.1.conv2", "layer2.0.conv1", "layer2.0.downsample.0",
                                   "layer2.1.conv2"])
def test_resnet18_boxes_reproduce_the_full_image(layer):
    import torchvision

    module = torchvision.models.resnet18()
    module.eval()
    net = network(module, 64)
    g = geometry_of(net, layer, 64)
    assert g.patch and g.max_error < 1e-6


def test_rotation_by_360_reproduces_the_scan_activation_exactly():
    """On whole-image geometry the 360° box is the image itself: the very activation of the scan."""
    size, layer = 32, "6"
    net = network(small_net(torch.float32), size)
    g = LayerGeometry(**{**geometry_of(net, layer, size).__dict__, "patch": False})
    image = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(5))
    full = full_maps(net, layer, image)

    class Images:  # what image_batches reads, as a LabelledImages stand-in is heavy: patch the loader
        pass

    plan = plan_layer(g, 6, [0, 1, 5], [0, 1, 2], [0, 3, g.out_height - 1], [2, 3, 0],
                      [float(full[0, 0, 0, 2]), float(full[1, 1, 3, 3]), float(full[2, 5, g.out_height - 1, 0])])
    import ingest.invariance as inv
    from ingest.network import Batch

    def batches(*_args, **_kw):
        ids = torch.arange(3)
        yield Batch(ids, ids, images01=image)

    original = inv.image_batches
    inv.image_batches = batches
    try:
        got = run_layer(net, Images(), plan, [Transform("rotation", 360), Transform("rotation", 0)], size)
    finally:
        inv.image_batches = original
    assert np.array_equal(got[:, 0], plan.values) and np.array_equal(got[:, 1], plan.values)


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["orientation", "--rotation-step", "7"], "--rotation-step must divide 360"),
    (["orientation", "--rotation-top-n", "0"], "--rotation-top-n must be at least 1"),
    (["symmetry", "--layers", "nope"], "were not ingested"),
])
def test_bad_settings_exit_2_with_one_line_and_write_nothing(kernel_catalogue, args, message):
    path, _, _ = kernel_catalogue
    before = path.stat().st_mtime_ns
    with catalog.open(path, read_only=True) as cat:
        held = cat.rows("SELECT count(*) FROM orientation_tuning")
    result = CliRunner().invoke(app, ["analyze", *args, "--model", "kernels", "--catalog", str(path)])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln]
    assert len(lines) == 1 and message in lines[0]
    with catalog.open(path, read_only=True) as cat:
        assert cat.rows("SELECT count(*) FROM orientation_tuning") == held
    if "--layers" not in args:  # a setting is refused before the catalogue is even opened
        assert path.stat().st_mtime_ns == before


def test_layer_without_receptive_field_is_refused(kernel_catalogue, tmp_path):
    import shutil

    path, _, _ = kernel_catalogue
    copy = tmp_path / "c.duckdb"
    shutil.copy(path, copy)
    with catalog.open(copy) as cat:
        cat.con.execute("UPDATE layers SET rf_size = NULL")
        held = cat.rows("SELECT count(*) FROM symmetry_axes")
    result = CliRunner().invoke(app, ["analyze", "symmetry", "--model", "kernels", "--catalog", str(copy)])
    assert result.exit_code == 2
    assert "no receptive-field information" in result.output and len(result.output.strip().splitlines()) == 1
    with catalog.open(copy, read_only=True) as cat:
        assert cat.rows("SELECT count(*) FROM symmetry_axes") == held


# -- the ingest opt-in -----------------------------------------------------------------------------


def test_ingest_indexes_opt_in(tmp_path):
    data = kernel_images(tmp_path / "data", per_class=3)
    path = tmp_path / "c.duckdb"
    args = ["ingest", "--model", "tests.test_invariance:kernel_net", "--data", str(data), "--image-size", str(SIZE),
            "--top-n", "3", "--workers", "0", "--device", "cpu", "--catalog", str(path), "--no-self-activation",
            "--quiet", "--indexes", "orientation,symmetry", "--rotation-step", "90"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with catalog.open(path, read_only=True) as cat:
        assert cat.rows("SELECT count(*) FROM orientation_tuning") == [(4 * 4,)]   # 0, 90, 180, 270
        assert cat.rows("SELECT count(*) FROM symmetry_axes") == [(4 * 4,)]
        assert cat.rows("SELECT orientation_index FROM neurons WHERE unit = ?", [BLOB])[0][0] == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("extra, message", [
    (["--indexes", "colour"], "--indexes takes orientation and/or symmetry"),
    (["--indexes", "orientation", "--rotation-step", "7"], "--rotation-step must divide 360"),
    (["--indexes", "symmetry", "--rotation-top-n", "0"], "--rotation-top-n must be at least 1"),
])
def test_ingest_bad_index_settings_write_nothing(tmp_path, extra, message):
    path = tmp_path / "c.duckdb"
    result = CliRunner().invoke(app, ["ingest", "--model", "tests.test_invariance:kernel_net", "--data",
                                      str(tmp_path / "nowhere"), "--catalog", str(path), *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not path.exists()


def test_resume_skips_layers_already_done(kernel_catalogue, tmp_path):
    import shutil

    path, model, _ = kernel_catalogue
    copy = tmp_path / "c.duckdb"
    shutil.copy(path, copy)
    with catalog.open(copy) as cat:
        before = cat.rows("SELECT * FROM orientation_tuning ORDER BY ALL")
        assert analyze_invariance(cat, "kernels", ["orientation", "symmetry"], network=model, device="cpu",
                                  resume=True, progress=False) == {"layers": 0}
        cat.con.execute("DELETE FROM symmetry_axes")  # as if killed after orientation's rows of the layer only
        counts = analyze_invariance(cat, "kernels", ["orientation", "symmetry"], network=model, device="cpu",
                                    resume=True, progress=False)
        assert counts["symmetry_axes"] == 16 and cat.rows("SELECT * FROM orientation_tuning ORDER BY ALL") == before
