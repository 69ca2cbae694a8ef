-- For each live neuron of model_a, the neuron of model_b whose top images overlap its own most (highest Jaccard;
-- ties to the lower layer name, then unit). Neurons sharing no top image with model_b have no row.
-- Beside it, when `neurocat compare --activations` ran: the neuron of model_b most correlated with it over the
-- probe images (r_layer_b, r_unit_b, correlation; table unit_matches, docs/science.md §23), else NULL.
SELECT ranked.dataset, ranked.model_a, ranked.layer_a, ranked.unit_a, ranked.model_b, ranked.layer_b, ranked.unit_b,
    ranked.shared, ranked.jaccard, m.layer_b AS r_layer_b, m.unit_b AS r_unit_b, m.correlation
FROM (
    SELECT o.dataset, o.model_a, o.layer_a, o.unit_a, o.model_b, o.layer_b, o.unit_b, o.shared, o.jaccard,
        ROW_NUMBER() OVER (PARTITION BY o.dataset, o.model_a, o.layer_a, o.unit_a, o.model_b
            ORDER BY o.jaccard DESC, o.layer_b, o.unit_b) AS position
    FROM neuron_overlap AS o
) AS ranked
LEFT JOIN unit_matches AS m ON m.kind = 'best' AND m.dataset = ranked.dataset AND m.model_a = ranked.model_a
    AND m.layer_a = ranked.layer_a AND m.unit_a = ranked.unit_a AND m.model_b = ranked.model_b
WHERE ranked.position = 1
