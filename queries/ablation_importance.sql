-- Per ablated neuron: accuracy lost over all held-out images and in its worst class, beside its class
-- selectivity γ and its most frequent top-image class (Morcos et al. 2018: is a selective neuron important?).
SELECT a.model, a.dataset, a.layer, a.unit,
    -SUM(a.delta_accuracy * a.n_images) / SUM(a.n_images) AS importance,
    MIN(a.delta_accuracy) AS worst_class_delta,
    (SELECT w.label FROM ablation AS w
     WHERE w.model = a.model AND w.dataset = a.dataset AND w.layer = a.layer AND w.unit = a.unit
     ORDER BY w.delta_accuracy, w.label LIMIT 1) AS worst_class,
    n.gamma, n.gamma_m,
    (SELECT f.label FROM class_frequencies AS f
     WHERE f.model = a.model AND f.dataset = a.dataset AND f.layer = a.layer AND f.unit = a.unit
     ORDER BY f.frequency DESC, f.label LIMIT 1) AS top_class
FROM ablation AS a
JOIN neurons AS n ON n.model = a.model AND n.dataset = a.dataset AND n.layer = a.layer AND n.unit = a.unit
GROUP BY a.model, a.dataset, a.layer, a.unit, n.gamma, n.gamma_m
