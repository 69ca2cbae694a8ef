-- Per layer: mean similarity (Pearson) and dissimilarity (Euclidean) of CoF rows over all pairs (Sadeghi Fig. 5).
SELECT l.model, l.dataset, l.layer, l.layer_index, s.n_neurons, s.mean_pearson, s.mean_euclidean
FROM layers AS l
JOIN layer_similarity AS s ON s.model = l.model AND s.dataset = l.dataset AND s.layer = l.layer
