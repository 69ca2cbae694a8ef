-- neuron-catalog schema. One statement per table; the comment after each column is its
-- description (shown by `neurocat publish` as Datasette column help).
-- Per-model tables are keyed by (model, dataset): the same network indexed on two data sets
-- keeps both; re-ingesting a model on the same data set replaces its rows.
-- Users query the views in queries/ (neurons, ...) more than these tables.

-- One row: the layout of this file. Opening a file of an older version asks for `neurocat migrate`.
CREATE TABLE IF NOT EXISTS catalog_info (
    schema_version INTEGER NOT NULL, -- version of this schema and the views the file follows (catalog.SCHEMA_VERSION)
    written_by VARCHAR,              -- neuron-catalog version that created the file or last migrated it
    migrated_from INTEGER            -- schema version before the last `neurocat migrate` (0: none recorded); NULL if never
);

CREATE TABLE IF NOT EXISTS datasets (
    dataset VARCHAR NOT NULL,        -- data set name (--dataset-name; default the folder or manifest name)
    root VARCHAR,                    -- folder that relative image paths start from
    n_images INTEGER,                -- images listed (including ones that failed to decode)
    n_classes INTEGER,               -- distinct values of the primary label
    fingerprint VARCHAR,             -- hash of (path, label) pairs: a changed data set under an old name is refused
    mean_r DOUBLE,                   -- mean red of the images as the models saw them, 0..1 (pads crops beyond the image)
    mean_g DOUBLE,                   -- mean green, 0..1
    mean_b DOUBLE,                   -- mean blue, 0..1
    PRIMARY KEY (dataset)
);

CREATE TABLE IF NOT EXISTS images (
    dataset VARCHAR NOT NULL,        -- data set the image belongs to
    image_id INTEGER NOT NULL,       -- rank of the image in the manifest sorted by path (stable across runs)
    path VARCHAR NOT NULL,           -- image file, relative to datasets.root where possible
    label VARCHAR NOT NULL,          -- primary label (class): ImageFolder sub-folder or manifest 'label' column
    PRIMARY KEY (dataset, image_id)
);

CREATE TABLE IF NOT EXISTS image_labels (
    dataset VARCHAR NOT NULL,        -- data set the image belongs to
    image_id INTEGER NOT NULL,       -- image id, as in images
    label_set VARCHAR NOT NULL,      -- name of an extra manifest label column (e.g. the demo's 'hue')
    label VARCHAR NOT NULL,          -- the image's value in that column
    PRIMARY KEY (dataset, image_id, label_set)
);

CREATE TABLE IF NOT EXISTS models (
    model VARCHAR NOT NULL,          -- the model's name in the catalogue (--name)
    dataset VARCHAR NOT NULL,        -- data set it was indexed on
    architecture VARCHAR,            -- torchvision name, TorchScript file stem, module:callable or efficientnet-lite0
    source VARCHAR,                  -- torchvision | torchscript | callable | package
    weights VARCHAR,                 -- weights file used; NULL means random initialisation
    seed INTEGER,                    -- seed of the random initialisation (--seed) when weights is NULL
    image_size INTEGER,              -- side of the square input the model saw, in pixels
    top_n INTEGER,                   -- top images kept per neuron
    min_rel DOUBLE,                  -- relative activation a crop needs to enter the Neuron Feature
    gamma_th DOUBLE,                 -- th of the class selectivity index
    color_threshold DOUBLE,          -- alpha from which a neuron counts as colour selective and gets a colour name
    hierarchy_layer VARCHAR,         -- layer whose class-mean vectors build the category hierarchy
    n_images INTEGER,                -- images the network saw
    n_errors INTEGER,                -- images skipped (see ingest_errors)
    n_neurons INTEGER,               -- neurons indexed over all layers
    device VARCHAR,                  -- device of the network pass (cpu, cuda, ...)
    seconds DOUBLE,                  -- wall time of the whole ingest
    ingested_at TIMESTAMP,           -- when the ingest finished (UTC)
    neurocat_version VARCHAR,        -- version of neuron-catalog that wrote the rows
    PRIMARY KEY (model, dataset)
);

CREATE TABLE IF NOT EXISTS layers (
    model VARCHAR NOT NULL,          -- model name
    dataset VARCHAR NOT NULL,        -- data set name
    layer VARCHAR NOT NULL,          -- dotted module name, e.g. features.28
    layer_index INTEGER,             -- position of the layer in the model (0 = closest to the input)
    module_type VARCHAR,             -- class of the module, e.g. Conv2d
    channels INTEGER,                -- neurons (output channels) in the layer
    out_height INTEGER,              -- height of the layer's output map at image_size
    out_width INTEGER,               -- width of the layer's output map at image_size
    rf_size INTEGER,                 -- theoretical receptive field side, in input pixels
    rf_stride INTEGER,               -- input pixels between neighbouring output positions
    rf_offset INTEGER,               -- input row/column of the field's top-left corner for output position 0 (negative: padding)
    nf_size INTEGER,                 -- side of the stored Neuron Feature PNGs (rf_size capped by --nf-size)
    n_dead INTEGER,                  -- neurons whose maximum activation is <= 0
    PRIMARY KEY (model, dataset, layer)
);

CREATE TABLE IF NOT EXISTS units (
    model VARCHAR NOT NULL,          -- model name
    dataset VARCHAR NOT NULL,        -- data set name
    layer VARCHAR NOT NULL,          -- dotted module name
    unit INTEGER NOT NULL,           -- output channel index within the layer
    a_max DOUBLE,                    -- largest activation (spatial maximum) over the data set
    n_top INTEGER,                   -- top images kept (top_n, or fewer on a small data set)
    dead BOOLEAN,                    -- a_max <= 0: no Neuron Feature and NULL indexes
    nf_png BLOB,                     -- Neuron Feature: weighted mean of the top crops, PNG
    nf_n_used INTEGER,               -- crops averaged into the Neuron Feature (relative activation >= min_rel)
    hue DOUBLE,                      -- hue of the first colour component, degrees in the opponent (O1, O2) plane
    color_name VARCHAR,              -- basic colour name of the NF's most chromatic pixels, for colour-selective neurons
    alpha_method VARCHAR,            -- 'centred' PCA, or 'uncentred' for a nearly uniform NF (docs/science.md §4)
    gamma_m INTEGER,                 -- M: fewest classes whose relative activation reaches gamma_th
    PRIMARY KEY (model, dataset, layer, unit)
);

CREATE TABLE IF NOT EXISTS neuron_indexes (
    model VARCHAR NOT NULL,          -- model name
    dataset VARCHAR NOT NULL,        -- data set name
    layer VARCHAR NOT NULL,          -- dotted module name
    unit INTEGER NOT NULL,           -- output channel index
    "index" VARCHAR NOT NULL,        -- index name: alpha, gamma, curve_area, nf_self_activation, color_drop, sparsity, flatness, mf_degree, mf_zscore, mf_pvalue, plugin indexes (orientation, ...)
    value DOUBLE,                    -- index value; NULL for a dead neuron
    PRIMARY KEY (model, dataset, layer, unit, "index")
);

CREATE TABLE IF NOT EXISTS top_images (
    model VARCHAR NOT NULL,          -- model name
    dataset VARCHAR NOT NULL,        -- data set name
    layer VARCHAR NOT NULL,          -- dotted module name
    unit INTEGER NOT NULL,           -- output channel index
    rank INTEGER NOT NULL,           -- 0 = strongest image; ties go to the lower image_id
    image_id INTEGER NOT NULL,       -- image, see images
    activation DOUBLE,               -- spatial maximum of the channel on this image
    rel_activation DOUBLE,           -- max(activation, 0) / a_max
    y INTEGER,                       -- row of the maximum in the layer's output map
    x INTEGER,                       -- column of the maximum in the layer's output map
    crop_top INTEGER,                -- receptive field of (y, x): top row in the model's input (may be < 0)
    crop_left INTEGER,               -- receptive field of (y, x): left column in the model's input (may be < 0)
    crop_size INTEGER,               -- receptive field side in input pixels
    in_nf BOOLEAN,                   -- whether this crop entered the Neuron Feature
    PRIMARY KEY (model, dataset, layer, unit, rank)
);

CREATE TABLE IF NOT EXISTS class_frequencies (
    model VARCHAR NOT NULL,          -- model name
    dataset VARCHAR NOT NULL,        -- data set name
    layer VARCHAR NOT NULL,          -- dotted module name
    unit INTEGER NOT NULL,           -- output channel index
    label VARCHAR NOT NULL,          -- class
    count INTEGER,                   -- top images of this class
    frequency DOUBLE,                -- f_c: share of the summed relative activation that falls on this class
    PRIMARY KEY (model, dataset, layer, unit, label)
);

CREATE TABLE IF NOT EXISTS ingest_errors (
    model VARCHAR NOT NULL,          -- model name
    dataset VARCHAR NOT NULL,        -- data set name
    image_id INTEGER,                -- image id, NULL for problems found while listing the data set
    path VARCHAR,                    -- file or folder concerned
    stage VARCHAR,                   -- listing | decode
    error VARCHAR                    -- what went wrong
);

CREATE TABLE IF NOT EXISTS similarity_pairs (
    model VARCHAR NOT NULL,          -- model name
    dataset VARCHAR NOT NULL,        -- data set name
    layer VARCHAR NOT NULL,          -- dotted module name; both neurons are in it
    unit_a INTEGER NOT NULL,         -- the neuron
    unit_b INTEGER NOT NULL,         -- one of its most similar neurons (by Pearson of the CoF rows)
    rank INTEGER NOT NULL,           -- 1 = most similar to unit_a
    pearson DOUBLE,                  -- Pearson correlation of the two CoF rows (similarity, Sadeghi §2.4)
    euclidean DOUBLE,                -- Euclidean distance of the two CoF rows (dissimilarity)
    PRIMARY KEY (model, dataset, layer, unit_a, unit_b)
);

CREATE TABLE IF NOT EXISTS layer_similarity (
    model VARCHAR NOT NULL,          -- model name
    dataset VARCHAR NOT NULL,        -- data set name
    layer VARCHAR NOT NULL,          -- dotted module name
    n_neurons INTEGER,               -- live neurons compared
    mean_pearson DOUBLE,             -- mean Pearson over all pairs of live neurons (Sadeghi Fig. 5)
    mean_euclidean DOUBLE,           -- mean Euclidean distance over all pairs
    PRIMARY KEY (model, dataset, layer)
);

CREATE TABLE IF NOT EXISTS class_vectors (
    model VARCHAR NOT NULL,          -- model name
    dataset VARCHAR NOT NULL,        -- data set name
    layer VARCHAR NOT NULL,          -- layer the vectors come from (models.hierarchy_layer)
    label VARCHAR NOT NULL,          -- class
    n_images INTEGER,                -- images of the class averaged
    vector BLOB,                     -- class representative: mean global-average-pooled output, float32 little-endian
    PRIMARY KEY (model, dataset, label)
);

CREATE TABLE IF NOT EXISTS class_distances (
    model VARCHAR NOT NULL,          -- model name
    dataset VARCHAR NOT NULL,        -- data set name
    label_a VARCHAR NOT NULL,        -- class
    label_b VARCHAR NOT NULL,        -- another class
    distance DOUBLE,                 -- cosine distance of their representative vectors
    PRIMARY KEY (model, dataset, label_a, label_b)
);

CREATE TABLE IF NOT EXISTS category_tree (
    model VARCHAR NOT NULL,          -- model name
    dataset VARCHAR NOT NULL,        -- data set name
    node INTEGER NOT NULL,           -- 0..K-1 the classes (leaves), K.. the merges in order
    parent INTEGER,                  -- parent node; NULL for the root
    height DOUBLE,                   -- WPGMA merge distance of the node (0 for leaves)
    label VARCHAR,                   -- class of a leaf; NULL for a merge
    PRIMARY KEY (model, dataset, node)
);

CREATE TABLE IF NOT EXISTS category_mst (
    model VARCHAR NOT NULL,          -- model name
    dataset VARCHAR NOT NULL,        -- data set name
    label_a VARCHAR NOT NULL,        -- class (alphabetically first of the edge)
    label_b VARCHAR NOT NULL,        -- class
    distance DOUBLE,                 -- cosine distance: the edge's weight in the minimum spanning tree
    PRIMARY KEY (model, dataset, label_a, label_b)
);

CREATE TABLE IF NOT EXISTS filter_tree_nodes (
    model VARCHAR NOT NULL,          -- model name
    dataset VARCHAR NOT NULL,        -- data set name
    label VARCHAR NOT NULL,          -- the class the tree explains
    layer VARCHAR NOT NULL,          -- layer whose filters the tree uses
    node INTEGER NOT NULL,           -- 0..n-1 the class's images (leaves), n.. the merges in order
    parent INTEGER,                  -- parent node; NULL for a child of the root
    image_id INTEGER,                -- image of a leaf; NULL for a merge
    n_images INTEGER,                -- images under the node
    n_reachable INTEGER,             -- filters reachable from the node
    critical_unit INTEGER,           -- critical filter of a merge (join neurons on layer, unit for its NF)
    distance DOUBLE,                 -- cosine distance of the two merged nodes over their shared filters
    PRIMARY KEY (model, dataset, label, node)
);

CREATE TABLE IF NOT EXISTS filter_tree_edges (
    model VARCHAR NOT NULL,          -- model name
    dataset VARCHAR NOT NULL,        -- data set name
    label VARCHAR NOT NULL,          -- the class the tree explains
    parent INTEGER NOT NULL,         -- merge node
    child INTEGER NOT NULL,          -- one of its two children
    PRIMARY KEY (model, dataset, label, child)
);

CREATE TABLE IF NOT EXISTS ica_components (
    model VARCHAR NOT NULL,          -- model name
    dataset VARCHAR NOT NULL,        -- data set name
    layer VARCHAR NOT NULL,          -- dotted module name
    unit INTEGER NOT NULL,           -- output channel index
    mode VARCHAR NOT NULL,           -- gray, red, green or blue
    component INTEGER NOT NULL,      -- 0..7 (fewer when the neuron has fewer crops)
    png BLOB,                        -- the independent component as an image, rescaled to 0..255
    PRIMARY KEY (model, dataset, layer, unit, mode, component)
);

-- γ and the label frequencies for each extra label column of the manifest (`image_labels`).
CREATE TABLE IF NOT EXISTS label_selectivity (
    model VARCHAR NOT NULL,          -- model name
    dataset VARCHAR NOT NULL,        -- data set name
    layer VARCHAR NOT NULL,          -- dotted module name
    unit INTEGER NOT NULL,           -- output channel index
    label_set VARCHAR NOT NULL,      -- the manifest column (e.g. hue, texture)
    gamma DOUBLE,                    -- γ over this column's labels of the top images (images without one are left out); NULL for a dead neuron
    m INTEGER,                       -- M: labels needed to cover th of the weight
    top_label VARCHAR,               -- the label with the largest f
    top_frequency DOUBLE,            -- its f
    gamma_null_mean DOUBLE,          -- mean γ when the top images' values are redrawn from the column's own value frequencies (docs/science.md §22); NULL without γ or with --gamma-null-draws 0
    gamma_p DOUBLE,                  -- Monte Carlo p-value of γ under that null: (1 + draws with γ at least this one) / (1 + draws)
    gamma_excess DOUBLE,             -- (gamma - gamma_null_mean) / (1 - gamma_null_mean): 0 at chance, 1 at a single value; NULL when the null mean is 1
    PRIMARY KEY (model, dataset, layer, unit, label_set)
);

CREATE TABLE IF NOT EXISTS label_frequencies (
    model VARCHAR NOT NULL,          -- model name
    dataset VARCHAR NOT NULL,        -- data set name
    layer VARCHAR NOT NULL,          -- dotted module name
    unit INTEGER NOT NULL,           -- output channel index
    label_set VARCHAR NOT NULL,      -- the manifest column
    label VARCHAR NOT NULL,          -- a value of it
    count INTEGER NOT NULL,          -- top images with this label
    frequency DOUBLE NOT NULL,       -- f: their share of the summed relative activation
    PRIMARY KEY (model, dataset, layer, unit, label_set, label)
);

-- Each class's chain of generic classes (WordNet hypernyms for ImageNet ids; docs/science.md §12).
CREATE TABLE IF NOT EXISTS label_hierarchy (
    dataset VARCHAR NOT NULL,        -- data set name
    label VARCHAR NOT NULL,          -- a class of the data set
    ancestor VARCHAR NOT NULL,       -- the class itself (depth 0) or a more generic class containing it
    depth INTEGER NOT NULL,          -- steps up from the class: 0 itself, 1 its parent, ...
    name VARCHAR,                    -- the ancestor's readable name (WordNet: its first lemma)
    PRIMARY KEY (dataset, label, depth)
);

-- Neuron ablation (after Morcos et al. 2018): one channel zeroed, per-class accuracy on a held-out split.
CREATE TABLE IF NOT EXISTS ablation (
    model VARCHAR NOT NULL,          -- model name
    dataset VARCHAR NOT NULL,        -- data set name
    layer VARCHAR NOT NULL,          -- dotted module name
    unit INTEGER NOT NULL,           -- the zeroed output channel
    label VARCHAR NOT NULL,          -- class
    n_images INTEGER NOT NULL,       -- held-out images of the class
    base_accuracy DOUBLE NOT NULL,   -- top-1 accuracy on them, intact network
    accuracy DOUBLE NOT NULL,        -- top-1 accuracy with the channel zeroed
    delta_accuracy DOUBLE NOT NULL,  -- accuracy − base_accuracy (negative: the class needs the channel)
    PRIMARY KEY (model, dataset, layer, unit, label)
);

-- Pictures made by optimisation or attribution (`neurocat visualize`, `neurocat gradcam`; docs/science.md §11).
CREATE TABLE IF NOT EXISTS visualizations (
    model VARCHAR NOT NULL,          -- model name
    dataset VARCHAR NOT NULL,        -- data set of the ingest the model belongs to
    layer VARCHAR NOT NULL,          -- dotted module name (for kind logit: the layer giving the logits)
    unit INTEGER NOT NULL,           -- output channel index (for kind logit: the class index)
    kind VARCHAR NOT NULL,           -- channel, unit or logit (activation maximisation), or gradcam
    rank INTEGER NOT NULL,           -- gradcam: rank of the top image; 0 otherwise
    image_id INTEGER,                -- gradcam: the top image; NULL otherwise
    label VARCHAR,                   -- kind logit: the class name, when known
    value DOUBLE,                    -- maximisation: objective on the final image; gradcam: the target's score
    start_value DOUBLE,              -- maximisation: objective on the initial image
    params VARCHAR,                  -- JSON: every setting that made the picture (steps, lr, seed, regularisers, ...)
    png BLOB,                        -- the picture (gradcam: heat map over the image)
    created_at TIMESTAMP,            -- when it was made (UTC)
    PRIMARY KEY (model, dataset, layer, unit, kind, rank)
);

-- Catalogued neurons' activations on images outside the data set (`neurocat probe`); view probe_neurons.
CREATE TABLE IF NOT EXISTS probe_activations (
    model VARCHAR NOT NULL,          -- model name
    dataset VARCHAR NOT NULL,        -- data set of the ingest whose network and a_max were used
    layer VARCHAR NOT NULL,          -- dotted module name
    unit INTEGER NOT NULL,           -- output channel index
    image_path VARCHAR NOT NULL,     -- the probed image file (absolute path when probed)
    image_sha256 VARCHAR NOT NULL,   -- SHA-256 of the file's bytes: probing the same content again replaces its rows
    activation DOUBLE NOT NULL,      -- spatial maximum of the unit's map on the image, seen as the ingest saw its images (docs/science.md §1)
    rel_activation DOUBLE,           -- activation / units.a_max, not clipped (< 0: below zero; > 1: above every data set image); NULL when a_max <= 0
    probed_at TIMESTAMP,             -- when the image was probed (UTC)
    PRIMARY KEY (model, dataset, layer, unit, image_sha256)
);

-- Orientation tuning curve of a neuron (`neurocat analyze orientation`; docs/science.md §21): its top images
-- receptive fields rotated about their centre; one row per angle, angle 0 included (retention 1).
CREATE TABLE IF NOT EXISTS orientation_tuning (
    model VARCHAR NOT NULL,          -- model name
    dataset VARCHAR NOT NULL,        -- data set name
    layer VARCHAR NOT NULL,          -- dotted module name
    unit INTEGER NOT NULL,           -- output channel index
    angle INTEGER NOT NULL,          -- rotation of the field, degrees counter-clockwise as displayed: 0, step, ..., 360 - step
    retention DOUBLE NOT NULL,       -- r(angle) = sum of max(a_angle, 0) / sum of max(a, 0) over the top images (docs/science.md §21)
    n_images INTEGER NOT NULL,       -- top images used (the first --rotation-top-n with a > 0)
    PRIMARY KEY (model, dataset, layer, unit, angle)
);

-- Retention of a neuron's response when its top images' receptive fields are mirrored (`neurocat analyze symmetry`; docs/science.md §21).
CREATE TABLE IF NOT EXISTS symmetry_axes (
    model VARCHAR NOT NULL,          -- model name
    dataset VARCHAR NOT NULL,        -- data set name
    layer VARCHAR NOT NULL,          -- dotted module name
    unit INTEGER NOT NULL,           -- output channel index
    axis INTEGER NOT NULL,           -- mirror axis through the field's centre: 0 horizontal, 90 vertical, 45 and 135 the diagonals (degrees counter-clockwise)
    retention DOUBLE NOT NULL,       -- sum of max(a_mirrored, 0) / sum of max(a, 0) over the top images
    n_images INTEGER NOT NULL,       -- top images used
    PRIMARY KEY (model, dataset, layer, unit, axis)
);

-- Each neuron's response to each image of the probe set: the first K images by id (`neurocat ingest
-- --keep-activations K`), float16 in the run's Parquet file; what `neurocat compare --activations` matches (docs/science.md §23).
-- One row per (model, dataset, layer, unit, image_id); no key index, as the table is large (K x neurons rows).
CREATE TABLE IF NOT EXISTS image_activations (
    model VARCHAR NOT NULL,          -- model name
    dataset VARCHAR NOT NULL,        -- data set name
    layer VARCHAR NOT NULL,          -- dotted module name
    unit INTEGER NOT NULL,           -- output channel index
    image_id INTEGER NOT NULL,       -- images.image_id (the first K ids of the data set)
    max REAL NOT NULL,               -- spatial maximum of the unit's map on the image (as in docs/science.md §1), float16 precision
    mean REAL NOT NULL               -- spatial mean of the unit's map on the image, float16 precision
);

-- Unit-to-unit matches of two models on one data set by the Pearson r of their image activations
-- (`neurocat compare --activations`; docs/science.md §23). Both directions are stored.
CREATE TABLE IF NOT EXISTS unit_matches (
    dataset VARCHAR NOT NULL,        -- the shared data set
    model_a VARCHAR NOT NULL,        -- the model whose unit is matched
    layer_a VARCHAR NOT NULL,        -- its layer (dotted module name)
    unit_a INTEGER NOT NULL,         -- its output channel index
    model_b VARCHAR NOT NULL,        -- the model searched
    layer_b VARCHAR NOT NULL,        -- the matched unit's layer
    unit_b INTEGER NOT NULL,         -- the matched unit's output channel index
    correlation DOUBLE NOT NULL,     -- Pearson r over the probe images
    kind VARCHAR NOT NULL,           -- best: unit_b is unit_a's most correlated unit of model_b (one-to-many); one_to_one: the assignment of a layer pair
    measure VARCHAR NOT NULL,        -- max or mean: which per-image activation was correlated
    n_images INTEGER NOT NULL,       -- probe images used
    PRIMARY KEY (dataset, model_a, layer_a, unit_a, model_b, layer_b, kind)
);

-- Linear CKA of every layer pair of two models, and of each model with itself (docs/science.md §23).
CREATE TABLE IF NOT EXISTS layer_cka (
    dataset VARCHAR NOT NULL,        -- the shared data set
    model_a VARCHAR NOT NULL,        -- model name
    layer_a VARCHAR NOT NULL,        -- a layer of model_a
    model_b VARCHAR NOT NULL,        -- model_a itself for the within-model grid
    layer_b VARCHAR NOT NULL,        -- a layer of model_b
    cka DOUBLE,                      -- 0..1 (the unbiased estimator can stray slightly outside); NULL for a constant layer
    estimator VARCHAR NOT NULL,      -- full (whole-set) or unbiased (mean HSIC_1 over minibatches)
    measure VARCHAR NOT NULL,        -- max or mean
    n_images INTEGER NOT NULL,       -- probe images used
    PRIMARY KEY (dataset, model_a, layer_a, model_b, layer_b)
);

-- Fixed 0.1-wide bins for the per-layer histograms of Rafegas Fig. 5-6 (portable, no FLOOR()).
CREATE TABLE IF NOT EXISTS index_bins (
    bin INTEGER NOT NULL,            -- 0..9
    lo DOUBLE NOT NULL,              -- inclusive lower bound
    hi DOUBLE NOT NULL,              -- exclusive upper bound (the last bin includes 1.0)
    PRIMARY KEY (bin)
);
