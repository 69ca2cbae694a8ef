-- Images that are top images of a neuron of one model and of a neuron of another model on the same data set.
SELECT a.dataset, a.image_id,
    a.model AS model_a, a.layer AS layer_a, a.unit AS unit_a, a.rank AS rank_a,
    b.model AS model_b, b.layer AS layer_b, b.unit AS unit_b, b.rank AS rank_b
FROM top_images AS a
JOIN top_images AS b ON b.dataset = a.dataset AND b.image_id = a.image_id AND b.model <> a.model
