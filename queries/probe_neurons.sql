-- Neurons on images probed with `neurocat probe`, with their catalogued indexes: e.g. the colour-selective
-- neurons an image drives above half their a_max: WHERE rel_activation > 0.5 AND alpha > 0.5.
SELECT p.model, p.dataset, p.layer, p.unit, p.image_path, p.image_sha256, p.activation, p.rel_activation,
    n.alpha, n.gamma, n.hue, n.color_name, n.color_drop, n.a_max, n.dead, n.nf_png
FROM probe_activations AS p
JOIN neurons AS n ON n.model = p.model AND n.dataset = p.dataset AND n.layer = p.layer AND n.unit = p.unit
