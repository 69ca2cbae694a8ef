-- For each live neuron of model_a, the neuron of model_b whose top images overlap its own most (highest Jaccard;
-- ties to the lower layer name, then unit). Neurons sharing no top image with model_b have no row.
SELECT dataset, model_a, layer_a, unit_a, model_b, layer_b, unit_b, shared, jaccard
FROM (
    SELECT o.dataset, o.model_a, o.layer_a, o.unit_a, o.model_b, o.layer_b, o.unit_b, o.shared, o.jaccard,
        ROW_NUMBER() OVER (PARTITION BY o.dataset, o.model_a, o.layer_a, o.unit_a, o.model_b
            ORDER BY o.jaccard DESC, o.layer_b, o.unit_b) AS position
    FROM neuron_overlap AS o
) AS ranked
WHERE position = 1
