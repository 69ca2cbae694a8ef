"""The neuron page's orientation and symmetry section and the intervals of α and γ (docs/science.md §21-22),
in a real Datasette opened in Debian's Chromium via Playwright.

The planted kernels of tests/test_invariance.py, ingested twice on the same images: "kernels" analysed with
`analyze orientation` and `analyze symmetry`, "plain" not (the analyses are opt-in). Whatever the page shows
must be the catalogue's numbers.
"""
import io
import re
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import catalog
from catalog.site import prepare, running
from tests.test_site import CHROMIUM, browser, get, open_page  # noqa: F401 - browser is a fixture

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
BAR, TEE = 0, 3  # units of tests/test_invariance.kernel_net


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from ingest.data import open_images
    from ingest.invariance import analyze_invariance
    from ingest.models import LoadedModel
    from ingest.pipeline import IngestOptions, ingest
    from tests.test_invariance import SIZE, kernel_images, kernel_net

    tmp = tmp_path_factory.mktemp("neuron-page")
    model = LoadedModel(kernel_net(), "kernels", "callable", None, (0.0,) * 3, (1.0,) * 3)
    folder = kernel_images(tmp / "data", per_class=4)
    opts = IngestOptions(image_size=SIZE, batch_size=8, workers=0, progress=False, device="cpu", top_n=6,
                         self_activation=False)
    path = tmp / "c.duckdb"
    for name in ("kernels", "plain"):
        ingest(model, open_images(folder), path, name, ["0"], opts)
    with catalog.open(path) as cat:
        analyze_invariance(cat, "kernels", ["orientation", "symmetry"], network=model, device="cpu", progress=False)
    db, metadata, _ = prepare(path)
    with running(db, metadata, timeout=60) as base:
        yield {"base": base, "path": path}


def neuron(site, model, unit):
    with catalog.open(site["path"], read_only=True) as cat:
        rows = cat.df("SELECT * FROM neurons WHERE model = ? AND layer = '0' AND unit = ?", [model, unit])
        mirrors = dict(cat.rows("SELECT axis, retention FROM symmetry_axes WHERE model = ? AND layer = '0' AND unit = ? "
                                "ORDER BY axis", [model, unit]))
        n_angles = cat.rows("SELECT COUNT(*) FROM orientation_tuning WHERE model = ? AND layer = '0' AND unit = ?",
                            [model, unit])[0][0]
    return rows.iloc[0].to_dict(), mirrors, n_angles


def page_of(browser, site, model, unit):  # noqa: F811
    return open_page(browser, f"{site['base']}/-/neuron?" + urllib.parse.urlencode(
        {"model": model, "dataset": "data", "layer": "0", "unit": unit}))


@pytest.mark.parametrize("unit", [BAR, TEE])
def test_a_neuron_with_orientation_data_shows_its_polar_plot_bars_and_intervals(site, browser, unit):  # noqa: F811
    row, mirrors, n_angles = neuron(site, "kernels", unit)
    assert n_angles == 24 and sorted(mirrors) == [0, 45, 90, 135]
    for column in ("alpha_lo", "alpha_hi", "gamma_lo", "gamma_hi", "gamma_p", "gamma_excess", "orientation_index",
                   "symmetry_index"):
        assert row[column] == row[column], column  # not NaN: the catalogue has every number the page shows
    page = page_of(browser, site, "kernels", unit)
    page.wait_for_function("document.querySelector('#orientation').complete", timeout=15000)
    natural = page.eval_on_selector("#orientation", "e => [e.naturalWidth, e.naturalHeight]")
    shown = page.eval_on_selector("#orientation", "e => [e.getBoundingClientRect().width, e.getBoundingClientRect().height]")
    assert natural[0] > 100 and natural[1] > 100 and shown[0] > 100 and shown[1] > 100
    src = page.get_attribute("#orientation", "src")
    png = Image.open(io.BytesIO(get(site["base"] + src)[1]))
    assert png.format == "PNG" and png.size == tuple(natural)
    caption = page.inner_text("#invariance figure:has(#orientation) figcaption")
    assert f"{row['orientation_index']:.3f}" in caption and f"{row['preferred_angle']:.0f}°" in caption
    # the four mirror bars: one per axis, the catalogue's retention as text, widths in proportion
    bars = page.eval_on_selector_all("#symmetry g.mirror", "els => els.map(e => [Number(e.dataset.axis), "
                                     "e.querySelector('text.value').textContent, e.querySelector('rect').getBBox().width])")
    assert [a for a, _, _ in bars] == [0, 45, 90, 135]
    assert [text for _, text, _ in bars] == [f"{mirrors[a]:.3f}" for a in (0, 45, 90, 135)]
    widths = [w for _, _, w in bars]
    scale = max(1.0, *mirrors.values())
    assert widths == pytest.approx([190 * mirrors[a] / scale for a in (0, 45, 90, 135)], abs=0.1)
    assert f"symmetry index {row['symmetry_index']:.3f}" in page.inner_text("#invariance")
    # α and γ with their 95 % intervals, γ's p-value and excess: the catalogue's numbers
    assert page.inner_text("#alpha-interval") == f"95 % [{row['alpha_lo']:.3f}, {row['alpha_hi']:.3f}]"
    assert page.inner_text("#gamma-interval") == f"95 % [{row['gamma_lo']:.3f}, {row['gamma_hi']:.3f}]"
    significance = page.inner_text("#gamma-significance")
    from catalog.datasette.neurocat_pages import format_float

    assert significance.startswith(f"p = {format_float(row['gamma_p'])} · excess {row['gamma_excess']:.3f}")
    assert f"null mean {row['gamma_null_mean']:.3f}" in significance
    assert page.locator("#no-invariance, #no-orientation, #no-symmetry").count() == 0
    page.close()


def test_the_polar_plot_is_drawn_from_the_neurons_tuning_rows(site):
    """orientation.png is plots.orientation_tuning_chart of the neuron's 24 rows of orientation_tuning (the
    bar detector's: r(0) = r(180) = 1, r(90) = 0); a neuron without rows gets a 404, not an empty plot."""
    from catalog import plots

    with catalog.open(site["path"], read_only=True) as cat:
        rows = cat.rows(plots.ORIENTATION_TUNING_SQL, ["kernels", "data", "0", BAR])
    curve = {angle: r for angle, r, _ in rows}
    assert len(curve) == 24 and curve[0] == 1.0 and curve[180] == pytest.approx(1.0, abs=1e-6)
    assert curve[90] == pytest.approx(0.0, abs=1e-6)
    # the plotted curve is the stored one: θ in radians closed back to the first angle (+360°), r as stored
    import matplotlib.pyplot as plt

    fig = plots.orientation_tuning_figure(rows)
    line = fig.axes[0].lines[0]
    angles, stored = [a for a, _, _ in rows], [r for _, r, _ in rows]
    np.testing.assert_array_equal(line.get_xdata(), np.deg2rad(angles + [angles[0] + 360.0]))
    np.testing.assert_array_equal(line.get_ydata(), stored + [stored[0]])
    plt.close(fig)
    status, body = get(f"{site['base']}/-/neuron/orientation.png?model=kernels&dataset=data&layer=0&unit={BAR}")
    assert status == 200 and body.startswith(b"\x89PNG") and body == plots.orientation_tuning_chart(rows)
    with pytest.raises(Exception, match="404"):
        get(f"{site['base']}/-/neuron/orientation.png?model=plain&dataset=data&layer=0&unit={BAR}")


def test_a_neuron_without_the_data_says_so_in_one_line(site, browser):  # noqa: F811
    row, mirrors, n_angles = neuron(site, "plain", BAR)
    assert n_angles == 0 and mirrors == {} and row["orientation_index"] != row["orientation_index"]  # NaN: none
    page = page_of(browser, site, "plain", BAR)
    assert page.locator("#orientation, #symmetry").count() == 0  # no empty plot
    message = page.locator("#no-invariance")
    assert message.count() == 1
    text = message.inner_text()
    assert "\n" not in text.strip() and re.search(r"No orientation or symmetry data", text)
    assert "neurocat analyze orientation" in text
    # the intervals do not depend on the opt-in analyses
    assert page.inner_text("#alpha-interval") == f"95 % [{row['alpha_lo']:.3f}, {row['alpha_hi']:.3f}]"
    page.close()
