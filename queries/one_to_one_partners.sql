-- Neurons of model_a with a one-to-one partner in model_b (the assignment of their layer pair, table unit_matches,
-- `neurocat compare --activations`) whose activations correlate at r > 0.8 over the probe images, with both
-- Neuron Features and indexes (docs/science.md §23). The threshold is catalog.compare.MATCH_THRESHOLD.
SELECT m.dataset, m.model_a, m.layer_a, m.unit_a, m.model_b, m.layer_b, m.unit_b, m.correlation,
    ua.nf_png AS nf_png_a, ub.nf_png AS nf_png_b, ua.alpha AS alpha_a, ub.alpha AS alpha_b,
    ua.gamma AS gamma_a, ub.gamma AS gamma_b
FROM unit_matches AS m
JOIN neurons AS ua ON ua.model = m.model_a AND ua.dataset = m.dataset AND ua.layer = m.layer_a AND ua.unit = m.unit_a
JOIN neurons AS ub ON ub.model = m.model_b AND ub.dataset = m.dataset AND ub.layer = m.layer_b AND ub.unit = m.unit_b
WHERE m.kind = 'one_to_one' AND m.correlation > 0.8
