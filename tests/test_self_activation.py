"""NF self-activation (docs/science.md §12): the neuron's answer to its own NF, relative to a_max."""
import torch

import catalog
from ingest.data import open_images
from ingest.pipeline import ingest
from ingest.receptive_field import ReceptiveField
from ingest.self_activation import probe_images
from tests.planted import DEAD, RED


def test_the_nf_is_pasted_at_the_centre_field_and_clipped():
    fill = torch.tensor([0.1, 0.2, 0.3])
    nf = torch.full((1, 3, 5, 5), 0.9)
    images, y, x = probe_images(nf, ReceptiveField(5, 1, -2, -2), 8, 8, 8, fill)
    assert (y, x) == (4, 4)
    assert (images[0, :, 2:7, 2:7] == 0.9).all()  # rows and columns -2 + 4 .. +4, by hand
    outside = torch.ones(8, 8, dtype=torch.bool)
    outside[2:7, 2:7] = False
    assert torch.equal(images[0][:, outside], fill.view(3, 1).expand(3, int(outside.sum())))
    # A field larger than the image: the NF's rows 2.. land on image row 0.
    rows = torch.arange(12, dtype=torch.float32).view(1, 1, 12, 1).expand(1, 3, 12, 12) / 12
    images, y, x = probe_images(rows, ReceptiveField(12, 2, -6, -6), 4, 4, 8, fill)
    assert (y, x) == (2, 2)
    torch.testing.assert_close(images[0, 0, :, 0], torch.arange(2, 10, dtype=torch.float32) / 12)


def test_red_detector_answers_its_own_nf_and_a_dead_neuron_has_none(tmp_path, planted_folder, planted_model,
                                                                    fast_options):
    import dataclasses

    path = tmp_path / "c.duckdb"
    ingest(planted_model, open_images(planted_folder), path, "p", ["0"],
           dataclasses.replace(fast_options, self_activation=True))
    with catalog.open(path, read_only=True) as cat:
        values = dict(cat.rows("SELECT unit, nf_self_activation FROM neurons"))
        stored = cat.rows("SELECT count(*) FROM neuron_indexes WHERE \"index\" = 'nf_self_activation' "
                          "AND value IS NOT NULL")[0][0]
    # Every red top image holds the same 3×3 square, so the NF is that square and scores a_max.
    assert values[RED] > 0.95 and values[RED] < 1.05
    assert values[DEAD] is None and stored == 2


def test_off_by_default_on_a_cpu_and_on_when_asked(fast_options):
    from ingest.options import IngestOptions

    assert fast_options.self_activation is None and not fast_options.wants_self_activation()  # device cpu
    assert IngestOptions(device="cpu", self_activation=True).wants_self_activation()
    assert not IngestOptions(device="cpu", self_activation=False).wants_self_activation()


def test_the_pass_can_be_switched_off(tmp_path, planted_folder, planted_model, fast_options):
    import dataclasses

    path = tmp_path / "c.duckdb"
    ingest(planted_model, open_images(planted_folder), path, "p", ["0"],
           dataclasses.replace(fast_options, self_activation=False))
    with catalog.open(path, read_only=True) as cat:
        values = dict(cat.rows("SELECT unit, nf_self_activation FROM neurons"))
        alpha = dict(cat.rows("SELECT unit, alpha FROM neurons"))
    assert set(values.values()) == {None}
    assert alpha[RED] > 0.7  # the other indexes are still there
