-- The critical filters of each class's filter prediction tree, with the filter's NF and indexes.
SELECT t.model, t.dataset, t.label, t.node, t.parent, t.n_images, t.n_reachable, t.distance,
    t.layer, t.critical_unit, n.alpha, n.gamma, n.nf_png
FROM filter_tree_nodes AS t
LEFT JOIN neurons AS n
    ON n.model = t.model AND n.dataset = t.dataset AND n.layer = t.layer AND n.unit = t.critical_unit
WHERE t.critical_unit IS NOT NULL
