"""`neurocat`: a thin command line over the `ingest` pipeline and the `catalog` library."""
from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path
from typing import Optional

import duckdb
import typer

from catalog.output import Format, plain as _plain, write_rows

from .errors import UsageError

app = typer.Typer(help="Catalogue the neurons of trained image CNNs into DuckDB and query them with SQL.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

DEMO_LAYERS = ["_conv_stem", "_blocks.3._project_conv", "_blocks.8._project_conv",
               "_blocks.15._project_conv", "_conv_head"]
DEMO_QUERIES = [
    ("Most colour-selective neurons, with hue and colour name",
     "SELECT layer, unit, round(alpha, 3) AS alpha, round(hue) AS hue, color_name FROM color_selective_neurons "
     "ORDER BY alpha DESC LIMIT 5"),
    ("Neurons whose top-100 images all show one shape (M = 1), deepest layers first",
     "SELECT n.layer, n.unit, n.gamma, c.class_1 FROM class_selective_neurons c JOIN neurons n USING (model, dataset, layer, unit) "
     "JOIN layers l USING (model, dataset, layer) WHERE n.gamma_m = 1 ORDER BY l.layer_index DESC, n.a_max DESC LIMIT 5"),
    ("Classes closest to 'circle' (category hierarchy from the last layer's class vectors)",
     "SELECT other_label, round(distance, 4) AS distance FROM nearest_classes WHERE label = 'circle' ORDER BY rank"),
    ("Single-faceted neurons per layer (Sadeghi)",
     "SELECT layer, single_faceted, round(single_faceted_fraction, 3) AS fraction, round(mean_mf_degree, 2) AS mf "
     "FROM faceted_by_layer ORDER BY layer_index"),
    ("Most hue-selective neurons (γ over the manifest's hue column), with their colour selectivity α",
     "SELECT s.layer, s.unit, round(s.gamma, 3) AS gamma_hue, s.top_label AS hue, round(n.alpha, 3) AS alpha "
     "FROM label_selectivity s JOIN neurons n USING (model, dataset, layer, unit) "
     "WHERE s.label_set = 'hue' ORDER BY s.gamma DESC, n.a_max DESC LIMIT 5"),
    ("Share of colour-selective neurons per layer (colour fades with depth)",
     "SELECT layer, channels, rf_size, round(mean_alpha, 3) AS mean_alpha, round(color_selective_fraction, 3) AS colour_share "
     "FROM layer_summary ORDER BY layer_index"),
]


# Options shared by the commands: one definition and one default each.
CATALOG = typer.Option(Path("catalog.duckdb"), "--catalog", help="DuckDB catalogue file.")
DEVICE = typer.Option(None, "--device", help="cpu, cuda or cuda:N. Default: cuda when torch sees one, else cpu.")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars.")
MODEL_NAME = typer.Option(..., "--model", help="The model's name in the catalogue.")
DATASET = typer.Option(None, "--dataset", help="Data set, when the model was ingested on several.")


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _split(values: Optional[list[str]]) -> Optional[list[str]]:
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


@app.command()
def ingest(
    model: str = typer.Option(..., help="torchvision architecture (resnet18, vgg16, …), a TorchScript file, "
                                        "'package.module:callable' returning an nn.Module, or 'efficientnet-lite0'."),
    data: str = typer.Option(..., help="ImageFolder directory (label = sub-folder), a CSV / Parquet manifest "
                                       "(path,label[,more label columns]), or 'demo'."),
    weights: Optional[Path] = typer.Option(None, help="state_dict file (loaded with weights_only=True). "
                                                      "Without it a torchvision model has random weights."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random initialisation of a model given without "
                                               "--weights: the same seed builds the same network."),
    layers: Optional[list[str]] = typer.Option(None, help="Layers to index: dotted module names or globs "
                                                          "('features.*'), repeat or comma-separate. Default: every Conv2d."),
    top_n: int = typer.Option(100, min=1, help="Top images kept per neuron."),
    batch_size: int = typer.Option(64, min=1, help="Images per forward pass."),
    device: Optional[str] = DEVICE,
    image_size: int = typer.Option(224, min=8, help="Images are resized (shorter side) and centre-cropped to this."),
    name: Optional[str] = typer.Option(None, help="The model's name in the catalogue. Default: the architecture."),
    dataset_name: Optional[str] = typer.Option(None, help="The data set's name. Default: folder or manifest name."),
    catalog: Path = CATALOG,
    workers: Optional[int] = typer.Option(None, min=0, help="Image decoding processes (engine ray: model actors). "
                                                            "Default: half the CPUs (ray: 1)."),
    engine: str = typer.Option("local", help="local, or ray: decoding in Ray tasks and the model in an actor pool "
                                             "(needs the extra neuron-catalog[ray])."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address for --engine ray (e.g. auto); "
                                                     "default a local Ray on 127.0.0.1."),
    gpus_per_worker: float = typer.Option(0.0, min=0.0, help="GPUs per model actor with --engine ray."),
    nf_size: int = typer.Option(96, min=1, help="Largest side of a stored Neuron Feature; larger fields are shrunk."),
    min_rel: float = typer.Option(0.7, min=0.0, max=1.0, help="Relative activation a crop needs to enter the NF."),
    gamma_th: float = typer.Option(1.0, min=0.0, max=1.0, help="th of the class selectivity index γ."),
    color_threshold: float = typer.Option(0.25, min=0.0, max=1.0, help="α from which a neuron is colour selective."),
    hierarchy_layer: Optional[str] = typer.Option(None, help="Layer whose class-mean pooled outputs build the "
                                                             "category hierarchy. Default: the deepest chosen layer."),
    similarity_k: int = typer.Option(10, min=1, help="Most similar neurons stored per neuron."),
    similarity_full: bool = typer.Option(False, "--similarity-full", help="Store every pair of neurons of a layer."),
    checkpoint_every: int = typer.Option(50, min=0, help="Batches between checkpoints of the scan, so a killed run "
                                                         "resumes when the same command is run again (0: never)."),
    shard: Optional[str] = typer.Option(None, help="Scan only shard i/n of the images (e.g. 3/16, by image id) and "
                                                   "write its state to --out; finish with `neurocat merge`."),
    out: Optional[Path] = typer.Option(None, help="Folder for a shard's state (with --shard)."),
    self_activation: Optional[bool] = typer.Option(None, "--self-activation/--no-self-activation",
                                                   help="Compute the NF self-activation: one forward pass of a "
                                                        "probe image per live neuron. Default: on when the device is "
                                                        "CUDA, off otherwise (on a CPU it can take longer than "
                                                        "the scan)."),
    color_drop: Optional[bool] = typer.Option(None, "--color-drop/--no-color-drop",
                                              help="Compute the colour drop: every top image once more through "
                                                   "the network in gray. Default: on when the device is CUDA, "
                                                   "off otherwise (on a CPU about one more forward pass of a "
                                                   "small set)."),
    ica: bool = typer.Option(False, "--ica", help="Also compute ICA components of every neuron's top crops "
                                                  "(slower; or later with `neurocat analyze ica`)."),
    autocast: Optional[str] = typer.Option(None, "--autocast", help="Run the scan under bfloat16 or float16 "
                                                                    "autocast (GPU speed; top-N equal up to rounding)."),
    channels_last: bool = typer.Option(False, "--channels-last", help="Run the scan in channels-last memory format."),
    decode: str = typer.Option("auto", "--decode", help="JPEG decoding: gpu (torchvision on the device, nvJPEG on "
                                                        "CUDA; loader workers only read files), cpu (PIL in the "
                                                        "workers), or auto (gpu when the device is CUDA)."),
    gamma_null_draws: int = typer.Option(1000, "--gamma-null-draws", help="Monte Carlo draws of γ's class-prior "
                                         "null: gamma_p, gamma_null_mean, gamma_excess (0: off)."),
    bootstrap: int = typer.Option(200, "--bootstrap", help="Bootstrap resamples of each neuron's top images for "
                                                           "the 95 % intervals alpha_lo/hi, gamma_lo/hi (0: off)."),
    indexes: Optional[list[str]] = typer.Option(None, "--indexes", help="Opt-in indexes computed after the load: "
                                                "orientation and/or symmetry (comma-separated; docs/science.md §21)."),
    rotation_top_n: int = typer.Option(20, "--rotation-top-n", help="With --indexes: top images per neuron whose "
                                                                     "fields are rotated / mirrored."),
    rotation_step: int = typer.Option(15, "--rotation-step", help="With --indexes orientation: rotations of step, "
                                                                   "2·step, … degrees (must divide 360, at most 120)."),
    keep_activations: str = typer.Option("2000", "--keep-activations", help="Store each neuron's spatial max and "
                                         "mean on the first K images (by id) for `neurocat compare --activations`: "
                                         "a count, 0 (off) or all. The values go to host memory batch by "
                                         "batch: all holds images × neurons × 4 bytes of RAM until the end."),
    quiet: bool = QUIET,
):
    """Index a model's neurons on a labelled image set: top-N images, crops, NF, α, γ, and the cheap
    analyses (multi-faceted measures, neuron similarity, category hierarchy)."""
    from .data import open_images
    from .models import load_model
    from .options import keep_activations as parse_keep
    from .pipeline import IngestOptions, ingest as run

    try:
        # Options first: a bad value exits 2 before a model is loaded or a file written.
        options = IngestOptions(top_n=top_n, batch_size=batch_size, device=device, image_size=image_size,
                                workers=workers, nf_size=nf_size, min_rel=min_rel, gamma_th=gamma_th,
                                color_threshold=color_threshold, hierarchy_layer=hierarchy_layer,
                                similarity_k=None if similarity_full else similarity_k,
                                checkpoint_every=checkpoint_every, engine=engine, address=address,
                                gpus_per_worker=gpus_per_worker, autocast=autocast, channels_last=channels_last,
                                decode=decode, self_activation=self_activation, color_drop=color_drop,
                                gamma_null_draws=gamma_null_draws, bootstrap=bootstrap,
                                keep_activations=parse_keep(keep_activations), progress=not quiet)
        options.resolved_device()  # --device cuda without CUDA
        if indexes:
            from .invariance import check_settings

            kinds = check_settings(_split(indexes), rotation_step, rotation_top_n)
        if shard and out is None:
            raise UsageError("--shard needs --out FOLDER for the shard's state")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = load_model(model, str(weights) if weights else None, seed=seed)
        for w in caught:
            typer.secho(f"WARNING: {w.message}", fg=typer.colors.YELLOW, bold=True, err=True)
        if data == "demo":
            images = open_images(_demo_data(catalog.parent / "demo-data", quiet), dataset_name or "demo")
        else:
            images = open_images(data, dataset_name)
        if shard:
            from .shards import ingest_shard

            source = catalog.parent / "demo-data" / "manifest.csv" if data == "demo" else Path(data)
            n = ingest_shard(loaded, images, str(source.resolve()), out, shard, name, _split(layers), options)
            typer.echo(f"scanned {n} images of shard {shard} into {out}; finish with: neurocat merge {out} … "
                       f"--catalog {catalog}")
            return
        summary = run(loaded, images, catalog, name, _split(layers), options)
        if ica:
            import catalog as cat_lib

            from .analyze import analyze_ica

            with cat_lib.open(catalog) as cat:
                analyze_ica(cat, summary.model, summary.dataset, device=str(options.resolved_device()),
                            progress=not quiet)
        if indexes:
            import catalog as cat_lib

            from .invariance import analyze_invariance

            with cat_lib.open(catalog) as cat:
                analyze_invariance(cat, summary.model, kinds, summary.dataset, top_n=rotation_top_n,
                                   step=rotation_step, network=loaded, device=str(options.resolved_device()),
                                   batch_size=batch_size, progress=not quiet)
    except UsageError as exc:
        _fail(exc)
    except duckdb.IOException as exc:  # typically: another process holds the catalogue open
        _fail(f"cannot write the catalogue {catalog}: {exc}")
    _print_summary(summary)


def _print_summary(s) -> None:
    typer.echo(f"indexed {s.neurons} neurons in {s.layers} layers of {s.model!r} on {s.images} images "
               f"of {s.dataset!r} in {s.seconds:.1f} s ({s.images_per_second:.1f} images/s in the network pass)")
    if s.errors:
        typer.secho(f"{s.errors} problems with the data set were skipped and recorded: "
                    f"SELECT * FROM ingest_errors WHERE model = '{s.model}'", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"catalogue: {s.catalog}")


def _demo_data(out: Path, quiet: bool) -> Path:
    from .stimuli import generate

    manifest = out / "manifest.csv"
    if not manifest.exists():
        if not quiet:
            typer.echo(f"generating the demo stimulus set in {out} …", err=True)
        generate(out)
    return manifest


analyze_app = typer.Typer(help="Add or redo an analysis on a catalogue, without re-running the ingest pass.",
                          no_args_is_help=True)
app.add_typer(analyze_app, name="analyze")

def _analyze(fn, catalog_path: Path, *args, **kwargs):
    import catalog as cat_lib

    if not catalog_path.exists():
        _fail(f"no catalogue at {catalog_path}")
    try:
        with cat_lib.open(catalog_path) as cat:
            counts = fn(cat, *args, **kwargs)
    except UsageError as exc:
        _fail(exc)
    except duckdb.IOException as exc:
        _fail(f"cannot write the catalogue {catalog_path}: {exc}")
    typer.echo(", ".join(f"{t}: {n} rows" for t, n in counts.items()))


@analyze_app.command("faceted")
def analyze_faceted(model: str = MODEL_NAME, dataset: Optional[str] = DATASET, catalog: Path = CATALOG):
    """Gini sparsity, flatness, MF degree with z-score and p-value (Sadeghi), from the stored CoF counts."""
    from .analyze import analyze_faceted as run

    _analyze(run, catalog, model, dataset)


@analyze_app.command("similarity")
def analyze_similarity(model: str = MODEL_NAME, dataset: Optional[str] = DATASET, catalog: Path = CATALOG,
                       k: int = typer.Option(10, "--k", min=1, help="Most similar neurons kept per neuron."),
                       full: bool = typer.Option(False, "--full", help="Keep every pair.")):
    """Pearson similarity and Euclidean dissimilarity of CoF rows within each layer (Sadeghi)."""
    from .analyze import analyze_similarity as run

    _analyze(run, catalog, model, dataset, None if full else k)


@analyze_app.command("hierarchy")
def analyze_hierarchy(model: str = MODEL_NAME, dataset: Optional[str] = DATASET, catalog: Path = CATALOG):
    """Category tree (WPGMA) and minimum spanning tree from the stored class vectors."""
    from .analyze import analyze_hierarchy as run

    _analyze(run, catalog, model, dataset)


@analyze_app.command("filter-tree")
def analyze_filter_tree(model: str = MODEL_NAME, label: str = typer.Option(..., "--label", help="The class to explain."),
                        dataset: Optional[str] = DATASET, catalog: Path = CATALOG,
                        layer: Optional[str] = typer.Option(None, "--layer", help="Layer of the filters. "
                                                            "Default: the model's hierarchy layer."),
                        device: Optional[str] = DEVICE,
                        quiet: bool = QUIET):
    """Filter prediction tree (Algorithm 2) for one class; re-runs the network on that class's images only."""
    from .analyze import analyze_filter_tree as run

    _analyze(run, catalog, model, label, dataset, layer, device=device, progress=not quiet)


@analyze_app.command("ica")
def analyze_ica(model: str = MODEL_NAME, dataset: Optional[str] = DATASET, catalog: Path = CATALOG,
                layers: Optional[list[str]] = typer.Option(None, "--layers", help="Layers (default: every ingested one)."),
                size: int = typer.Option(32, "--size", min=4, help="Side of the crops and component images, px."),
                components: int = typer.Option(8, "--components", min=1, help="Components per neuron and mode."),
                device: Optional[str] = DEVICE,
                quiet: bool = QUIET):
    """FastICA components of each neuron's top-100 crops, grayscale and per RGB channel (Sadeghi)."""
    from .analyze import analyze_ica as run

    _analyze(run, catalog, model, dataset, _split(layers), size, components, device, progress=not quiet)


@analyze_app.command("index")
def analyze_index(name: str = typer.Argument(..., help="The index plugin's entry-point name (e.g. orientation)."),
                  model: str = MODEL_NAME, dataset: Optional[str] = DATASET, catalog: Path = CATALOG):
    """Compute an index plugin (entry-point group neuron_catalog.indexes) from the stored NFs and top images;
    it lands in neuron_indexes and as a column of neurons."""
    from .analyze import analyze_index as run

    _analyze(run, catalog, model, name, dataset)


@analyze_app.command("label-hierarchy")
def analyze_label_hierarchy(dataset: str = typer.Option(..., "--dataset", help="The data set whose classes to place."),
                            file: Optional[Path] = typer.Option(None, "--file", help="CSV with columns child,parent"
                                                                "[,name]. Default: WordNet, for ImageNet ids."),
                            catalog: Path = CATALOG):
    """Replace a data set's class hierarchy (label_hierarchy), used by rolled_up_gamma and
    rolled_up_class_frequencies."""
    from .analyze import analyze_label_hierarchy as run

    _analyze(run, catalog, dataset, str(file) if file else None)


@app.command()
def compare(
    model_a: str = typer.Argument(..., help="A model name in the catalogue."),
    model_b: str = typer.Argument(..., help="Another, ingested on the same data set."),
    dataset: Optional[str] = DATASET, catalog: Path = CATALOG,
    format: Format = typer.Option(Format.table, "--format", "-f", help="Output format (json: one object of sections)."),
    activations: bool = typer.Option(False, "--activations", help="First match the models by their kept per-image "
                                     "activations: unit correlations and layer CKA, stored in unit_matches and "
                                     "layer_cka (docs/science.md §23)."),
    layers_a: Optional[list[str]] = typer.Option(None, "--layers-a", help="With --activations: layers of model A "
                                                 "(repeat or comma-separate). Default: every kept layer. Given "
                                                 "with --layers-b of the same length, the i-th layers of both "
                                                 "form the layer pairs of the one-to-one assignment; otherwise "
                                                 "each layer of A is paired with the layer of B its units "
                                                 "best-match most often."),
    layers_b: Optional[list[str]] = typer.Option(None, "--layers-b", help="With --activations: layers of model B."),
    measure: Optional[str] = typer.Option(None, "--measure", help="With --activations: the per-image spatial max "
                                                                  "or mean. Default: max."),
    device: Optional[str] = typer.Option(None, "--device", help="With --activations: cpu, cuda or cuda:N for the "
                                                               "products. Default: cuda when torch sees one."),
):
    """Two models side by side: layers by relative depth with α and γ summaries, and per layer how well
    each neuron's top images match its best neuron of the other model (Jaccard; views best_match,
    neuron_overlap, shared_top_images); with --activations, also by activation correlation and CKA."""
    import catalog as cat_lib
    from catalog.compare import compare as run, match_activations

    given = [flag for flag, value in (("--layers-a", layers_a), ("--layers-b", layers_b), ("--measure", measure),
                                      ("--device", device)) if value is not None]
    if given and not activations:  # silently ignored, they would leave an older comparison on show
        _fail(f"{', '.join(given)} need{'s' if len(given) == 1 else ''} --activations")
    try:
        if activations:
            from catalog.lock import writer_lock

            if not catalog.exists():
                raise FileNotFoundError(f"no catalogue at {catalog}")
            from .matching import device_matmul

            matmul = device_matmul(device)
            with writer_lock(catalog, f"compare {model_a} {model_b}"), cat_lib.open(catalog) as cat:
                match_activations(cat, model_a, model_b, dataset, _split(layers_a), _split(layers_b),
                                  measure or "max", matmul=matmul)
        with cat_lib.open(catalog, read_only=True) as cat:
            tables = run(cat, model_a, model_b, dataset)
    except (FileNotFoundError, ValueError) as exc:
        _fail(exc)
    if format is Format.json:  # one document: {section: rows}
        json.dump({title: [{k: _plain(v) for k, v in r.items()} for r in t.to_pylist()] for title, t in tables.items()},
                  sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return
    for title, table in tables.items():
        typer.secho(f"\n-- {title}", bold=True)
        write_rows(table, format, sys.stdout)


@app.command()
def ablate(
    model: str = MODEL_NAME, layer: str = typer.Option(..., "--layer", help="Layer whose channels are zeroed."),
    units: Optional[str] = typer.Option(None, "--units", help="Units like 0-63. Default: every unit of the layer."),
    split: float = typer.Option(0.2, "--split", min=0.0, max=1.0, help="Held-out fraction of the data set's images "
                                                                       "(chosen by a hash of the path)."),
    dataset: Optional[str] = DATASET, catalog: Path = CATALOG,
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Images per forward pass."),
    device: Optional[str] = DEVICE,
    quiet: bool = QUIET,
):
    """Ablation importance (after Morcos et al. 2018): zero one channel at a time and record each class's
    accuracy change on a held-out split (table ablation, view ablation_importance)."""
    from .ablation import ablate as run
    from .visualize import parse_units

    try:
        chosen = parse_units(units) if units else None
    except UsageError as exc:
        _fail(exc)
    _analyze(run, catalog, model, layer, chosen, dataset, split, batch_size, device, progress=not quiet)


@app.command()
def visualize(
    model: str = MODEL_NAME, layer: str = typer.Option(..., "--layer", help="Layer of the neurons (kind logit: the "
                                                                          "layer whose output are the logits, e.g. fc)."),
    units: Optional[str] = typer.Option(None, "--units", help="Units (or class indexes) like 0-63,100. "
                                                              "Default: every unit of the layer."),
    where: Optional[str] = typer.Option(None, "--where", help="SQL condition on the neurons view, e.g. "
                                                              "\"gamma > 0.9 AND alpha > 0.5\"."),
    kind: str = typer.Option("channel", "--kind", help="channel (mean of the map), unit (its centre) or logit."),
    dataset: Optional[str] = DATASET, catalog: Path = CATALOG,
    size: int = typer.Option(128, "--size", min=16, help="Side of the optimised image, px."),
    steps: int = typer.Option(256, "--steps", min=1, help="Gradient steps."),
    lr: float = typer.Option(0.05, "--lr", min=0.0, help="Adam learning rate."),
    param: str = typer.Option("fourier", "--param", help="fourier (decorrelated spectrum) or pixel."),
    jitter: Optional[int] = typer.Option(None, "--jitter", min=0, help="Random shift, px. Default: size/16."),
    rotate: float = typer.Option(5.0, "--rotate", min=0.0, help="Random rotation, ± degrees."),
    scale: float = typer.Option(0.05, "--scale", min=0.0, max=0.5, help="Random zoom, ± fraction."),
    blur: float = typer.Option(0.5, "--blur", min=0.0, help="Gaussian blur sigma, px (0: none)."),
    l2: float = typer.Option(0.0, "--l2", min=0.0, help="Weight of the L2 penalty (distance from gray)."),
    tv: float = typer.Option(0.0, "--tv", min=0.0, help="Weight of the total-variation penalty."),
    seed: int = typer.Option(0, "--seed", help="Seed; each neuron derives its own from it."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Neurons optimised together."),
    device: Optional[str] = DEVICE,
    quiet: bool = QUIET,
):
    """Activation maximisation: an image that each chosen neuron (or class logit) answers most,
    optimised with jitter, rotation, scale, blur and optional L2 / total-variation penalties;
    stored in the visualizations table and shown on the neuron page."""
    from .visualize import parse_units, visualize as run

    try:
        chosen = parse_units(units) if units else None
    except UsageError as exc:
        _fail(exc)
    _analyze(run, catalog, model, layer, chosen, where, kind, dataset, size, steps, lr, param, jitter, rotate, scale,
             blur, l2, tv, seed, batch_size, device, progress=not quiet)


@app.command()
def gradcam(
    image: Optional[Path] = typer.Argument(None, help="An image file. Without it: the top images of the neurons "
                                                      "chosen with --units / --where, stored in the catalogue."),
    model: str = typer.Option(..., "--model", help="A model name in --catalog, or (with IMAGE) any --model of ingest."),
    layer: str = typer.Option(..., "--layer", help="With IMAGE: the layer whose maps are weighted. Without: the "
                                                   "neurons' layer."),
    label: Optional[int] = typer.Option(None, "--label", help="Class index of the logit. Default: the predicted class."),
    channel: Optional[int] = typer.Option(None, "--channel", help="Explain this channel (its spatial maximum) "
                                                                  "instead of a logit."),
    channel_layer: Optional[str] = typer.Option(None, "--channel-layer", help="Layer of --channel. Default: --layer."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="state_dict for a torchvision --model (with IMAGE)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Overlay PNG. Default: IMAGE's name + '-gradcam.png' here."),
    image_size: int = typer.Option(224, "--image-size", min=8, help="Input size (with IMAGE and a model not in "
                                                                    "the catalogue)."),
    units: Optional[str] = typer.Option(None, "--units", help="Neurons like 0-63 (without IMAGE)."),
    where: Optional[str] = typer.Option(None, "--where", help="SQL condition on the neurons view (without IMAGE)."),
    top: int = typer.Option(4, "--top", min=1, help="Top images per neuron (without IMAGE)."),
    at: Optional[str] = typer.Option(None, "--at", help="Layer whose maps are weighted (without IMAGE). "
                                                        "Default: the ingested layer before --layer."),
    dataset: Optional[str] = DATASET, catalog: Path = CATALOG,
    device: Optional[str] = DEVICE,
    quiet: bool = QUIET,
):
    """grad-CAM heat maps: for one IMAGE and a class (or a channel) as an overlay PNG, or for the
    top images of chosen neurons, stored in the visualizations table (kind 'gradcam')."""
    from .visualize import gradcam_file, gradcam_top_images, parse_units

    if image is None:
        try:
            chosen = parse_units(units) if units else None
        except UsageError as exc:
            _fail(exc)
        _analyze(gradcam_top_images, catalog, model, layer, chosen, where, top, at, dataset, device,
                 progress=not quiet)
        return
    import catalog as cat_lib

    from .analyze import model_of, run_info
    from .models import load_model

    try:
        if not image.exists():
            raise UsageError(f"no image at {image}")
        network = None
        if catalog.exists():
            with cat_lib.open(catalog, read_only=True) as cat:
                known = cat.runs(model).num_rows
                if known:
                    info = run_info(cat, model, dataset)
                    network, image_size = model_of(info), info["image_size"]
        if network is None:
            network = load_model(model, str(weights) if weights else None)
        target = out or Path(f"{image.stem}-gradcam.png")
        path, score, predicted = gradcam_file(network, image, layer, target, label, channel, channel_layer,
                                              image_size, device)
    except UsageError as exc:
        _fail(exc)
    what = f"channel {channel}" if channel is not None else f"class {label if label is not None else predicted}"
    typer.echo(f"grad-CAM of {what} at {layer} (score {score:.4g}): {path}")


@app.command()
def query(
    sql: str = typer.Argument(..., help="SQL to run, e.g. \"SELECT model, layer, unit FROM neurons WHERE gamma > 0.9\"."),
    catalog: Path = CATALOG,
    format: Format = typer.Option(Format.table, "--format", "-f", help="Output format."),
):
    """Run SQL against a catalogue and print the rows."""
    import catalog as cat_lib

    try:
        with cat_lib.open(catalog, read_only=True) as cat:
            table = cat.query(sql)
    except FileNotFoundError as exc:
        _fail(exc)
    except Exception as exc:  # noqa: BLE001 - SQL errors are the user's to read
        _fail(exc)
    write_rows(table, format, sys.stdout)


@app.command()
def merge(
    parts: list[Path] = typer.Argument(..., help="Shard folders written by `neurocat ingest --shard i/n --out …`."),
    catalog: Path = CATALOG,
    quiet: bool = QUIET,
):
    """Merge shard states (duplicates dropped) and finish the run: crops, NF, indexes, analyses, one load."""
    from .shards import merge as run

    try:
        summary = run(parts, catalog, progress=not quiet)
    except UsageError as exc:
        _fail(exc)
    _print_summary(summary)


@app.command()
def publish(
    catalog: Path = CATALOG,
    out: Optional[Path] = typer.Option(None, help="SQLite file to write. Default: the catalogue's name with .db."),
):
    """Write the SQLite copy that Datasette serves: every table and view, indexes, full-text search, metadata."""
    from catalog.site import prepare

    if not catalog.exists():
        _fail(f"no catalogue at {catalog}")
    start = time.perf_counter()
    db, metadata, _ = prepare(catalog, out, force=True)
    typer.echo(f"published {db} ({db.stat().st_size / 1e6:.1f} MB) and {metadata} in {time.perf_counter() - start:.1f} s")


@app.command()
def serve(
    catalog: Path = CATALOG,
    out: Optional[Path] = typer.Option(None, help="Published SQLite file. Default: the catalogue's name with .db."),
    port: int = typer.Option(8001, help="Port."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; anything but loopback lets others "
                                                         "read the catalogue."),
):
    """Publish if the SQLite copy is stale, then serve it with Datasette (read-only) until stopped;
    SIGTERM or Ctrl-C stops Datasette too."""
    from catalog.site import prepare, serve as run

    if not catalog.exists():
        _fail(f"no catalogue at {catalog}")
    db, metadata, republished = prepare(catalog, out)
    if republished:
        typer.echo(f"published {db}")
    typer.echo(f"serving http://{host}:{port}/  (the front page; model pages: http://{host}:{port}/-/model)")
    raise typer.Exit(run(db, metadata, host, port))


@app.command()
def migrate(catalog: Path = typer.Argument(..., help="DuckDB catalogue file written by an older neuron-catalog.")):
    """Bring a catalogue of an older schema version up to date in place: the tables and columns it lacks
    are added (NULL in its rows), the views re-created and the version stamped."""
    import catalog as cat_lib

    try:
        changes = cat_lib.migrate(catalog)
    except (FileNotFoundError, ValueError, duckdb.Error) as exc:
        _fail(exc)
    typer.echo("\n".join(changes) or f"{catalog} is already at schema version {cat_lib.SCHEMA_VERSION}")


@app.command()
def plot(
    model: str = MODEL_NAME, dataset: Optional[str] = DATASET, catalog: Path = CATALOG,
    out_dir: Path = typer.Option(Path("plots"), help="Folder for the PNG files."),
    compare: Optional[str] = typer.Option(None, "--compare", help="Another model: write the CKA heatmap of the "
                                          "two models' layers instead (after `neurocat compare --activations`)."),
):
    """The papers' figures for a model as PNG files: α/γ bins per layer, hues, ranked curves, MF degree,
    orientation and symmetry shares per layer."""
    import catalog as cat_lib
    from catalog.plots import write_cka, write_figures

    with cat_lib.open(catalog, read_only=True) as cat:
        if compare:
            try:
                typer.echo(str(write_cka(cat, model, compare, dataset, out_dir)))
            except ValueError as exc:
                _fail(exc)
            return
        for path in write_figures(cat, model, dataset, out_dir):
            typer.echo(str(path))


@app.command()
def demo(
    catalog: Path = typer.Option(Path("demo.duckdb"), help="Catalogue to write."),
    quiet: bool = QUIET,
):
    """Offline demo: generate a labelled stimulus set, index EfficientNet-Lite0 (real ImageNet weights), run
    the analyses (ICA of one layer, the filter tree of 'star', optimised images of a few neurons, too),
    and print example queries."""
    import catalog as cat_lib

    from .data import open_images
    from .models import EFFICIENTNET_LITE0, load_model
    from .pipeline import IngestOptions, ingest as run

    start = time.perf_counter()
    images = open_images(_demo_data(catalog.parent / "demo-data", quiet), "demo")
    network = load_model(EFFICIENTNET_LITE0)
    summary = run(network, images, catalog, EFFICIENTNET_LITE0, DEMO_LAYERS,
                  IngestOptions(image_size=128, progress=not quiet))
    _print_summary(summary)
    from .analyze import analyze_filter_tree, analyze_ica
    from .visualize import visualize

    with cat_lib.open(catalog) as cat:
        # ICA of one layer: on two CPU cores all five take minutes (`neurocat analyze ica` does the rest).
        analyze_ica(cat, EFFICIENTNET_LITE0, layers=[DEMO_LAYERS[1]], size=24, progress=not quiet)
        analyze_filter_tree(cat, EFFICIENTNET_LITE0, "star", network=network, progress=not quiet)
        # Optimised images for the most colour-selective of a middle layer's first 16 neurons, shown on their pages.
        visualize(cat, EFFICIENTNET_LITE0, DEMO_LAYERS[2], where="alpha > 0.1", size=64, steps=96,
                  batch_size=8, network=network, progress=not quiet, units=list(range(16)))
    with cat_lib.open(catalog, read_only=True) as cat:
        for title, sql in DEMO_QUERIES:
            typer.secho(f"\n-- {title}", bold=True)
            typer.echo(f"neurocat query \"{sql}\" --catalog {catalog}")
            write_rows(cat.query(sql), Format.table, sys.stdout)
    typer.echo(f"\ndemo finished in {time.perf_counter() - start:.0f} s; try: neurocat query \"SELECT * FROM layer_summary\" "
               f"--catalog {catalog}")


@app.command("layers")
def layers_command(
    model: str = typer.Option(..., "--model", help="As for ingest: a torchvision architecture, a TorchScript file, "
                                                   "'package.module:callable' or 'efficientnet-lite0'."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="state_dict file, checked against the "
                                                                   "architecture (shapes do not depend on it)."),
    image_size: int = typer.Option(224, "--image-size", min=8, help="Input side at which output sizes and "
                                                                    "receptive fields are measured."),
    all_modules: bool = typer.Option(False, "--all", help="Every named module (what --layers accepts), not only "
                                                          "the Conv2d layers."),
    format: Format = typer.Option(Format.table, "--format", "-f", help="Output format."),
):
    """The layers `--layers` can index, in model order: type, channels, output size and receptive field."""
    from .layer_table import layer_table
    from .models import load_model

    with warnings.catch_warnings():  # random weights change no shape or field: no warning
        warnings.simplefilter("ignore", UserWarning)
        loaded = load_model(model, str(weights) if weights else None)
    write_rows(layer_table(loaded, image_size, all_modules), format, sys.stdout)


@app.command()
def probe(
    images: list[Path] = typer.Argument(..., help="Image files to run through the network."),
    model: str = MODEL_NAME, dataset: Optional[str] = DATASET,
    layers: Optional[list[str]] = typer.Option(None, "--layers", help="Ingested layers (names or globs, repeat or "
                                                                      "comma-separate). Default: every ingested layer."),
    catalog: Path = CATALOG,
    top: int = typer.Option(10, "--top", min=1, help="Neurons printed per image, highest rel_activation first."),
    device: Optional[str] = DEVICE,
    format: Format = typer.Option(Format.table, "--format", "-f", help="Output format."),
):
    """Which catalogued neurons fire for these images: activation and activation / a_max of every neuron
    of the chosen layers, stored in probe_activations (view probe_neurons); prints each image's top neurons."""
    import catalog as cat_lib

    from .probe import probe as run, top_neurons

    if not catalog.exists():
        raise UsageError(f"no catalogue at {catalog}")
    with cat_lib.open(catalog) as cat:
        probed = run(cat, model, images, dataset, _split(layers), device)
        table = top_neurons(cat, model, probed.column("dataset")[0].as_py(), probed, top)
    write_rows(table, format, sys.stdout)


ROTATION_STEP = typer.Option(15, "--rotation-step", help="Rotations of step, 2·step, … 360 − step degrees; "
                                                            "must divide 360 (at most 120).")
ROTATION_TOP_N = typer.Option(20, "--rotation-top-n", help="Top images per neuron whose fields are transformed.")
INVARIANCE_LAYERS = typer.Option(None, "--layers", help="Ingested layers (names or globs, repeat or comma-separate). "
                                                        "Default: every ingested layer.")
RESUME = typer.Option(False, "--resume", help="Skip layers that already hold rows of this analysis "
                                              "(a killed run goes on where it stopped).")


def _invariance(kinds: list[str], model, dataset, catalog, layers, top_n, step, device, batch_size, resume, quiet):
    from .invariance import analyze_invariance, check_settings

    check_settings(kinds, step, top_n)  # before the catalogue is opened: a bad setting touches nothing
    _analyze(analyze_invariance, catalog, model, kinds, dataset, _split(layers), top_n, step, device=device,
             batch_size=batch_size, resume=resume, progress=not quiet)


@analyze_app.command("orientation")
def analyze_orientation(model: str = MODEL_NAME, dataset: Optional[str] = DATASET, catalog: Path = CATALOG,
                        layers: Optional[list[str]] = INVARIANCE_LAYERS, rotation_top_n: int = ROTATION_TOP_N,
                        rotation_step: int = ROTATION_STEP, device: Optional[str] = DEVICE,
                        batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images read at a time."),
                        resume: bool = RESUME, quiet: bool = QUIET):
    """Orientation selectivity (docs/science.md §21): each neuron's top-image fields rotated about their
    centre; tuning curve in orientation_tuning, orientation_index / preferred_angle / orientation_selectivity."""
    _invariance(["orientation"], model, dataset, catalog, layers, rotation_top_n, rotation_step, device, batch_size,
                resume, quiet)


@analyze_app.command("symmetry")
def analyze_symmetry(model: str = MODEL_NAME, dataset: Optional[str] = DATASET, catalog: Path = CATALOG,
                     layers: Optional[list[str]] = INVARIANCE_LAYERS, rotation_top_n: int = ROTATION_TOP_N,
                     device: Optional[str] = DEVICE,
                     batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images read at a time."),
                     resume: bool = RESUME, quiet: bool = QUIET):
    """Symmetry selectivity (docs/science.md §21): each neuron's top-image fields mirrored about the axes at
    0°, 45°, 90° and 135°; retention per axis in symmetry_axes, their mean as symmetry_index."""
    _invariance(["symmetry"], model, dataset, catalog, layers, rotation_top_n, 15, device, batch_size, resume, quiet)


def _user_errors(command):
    """Mistakes a user can fix (bad names, an old catalogue, a locked file) end as one line and exit 2."""
    import functools

    import catalog as cat_lib
    from catalog.lock import CatalogueLocked
    from catalog.reading import CatalogLookupError

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (UsageError, CatalogLookupError, CatalogueLocked, cat_lib.SchemaVersionError, FileNotFoundError) as exc:
            _fail(exc)
        except duckdb.IOException as exc:  # typically: another process holds the catalogue open
            _fail(f"cannot open the catalogue: {exc}")

    return run


for _typer in (app, analyze_app):
    for _command in _typer.registered_commands:
        _command.callback = _user_errors(_command.callback)


if __name__ == "__main__":
    app()
