-- Class frequencies rolled up the class hierarchy (label_hierarchy): per neuron, every generic class with the
-- summed counts and f of its leaf classes among the top images (the papers' tag clouds of all ontology classes).
SELECT cf.model, cf.dataset, cf.layer, cf.unit, h.ancestor, MAX(h.name) AS name, MIN(h.depth) AS min_depth,
    SUM(cf.count) AS count, SUM(cf.frequency) AS frequency
FROM class_frequencies AS cf
JOIN label_hierarchy AS h ON h.dataset = cf.dataset AND h.label = cf.label
GROUP BY cf.model, cf.dataset, cf.layer, cf.unit, h.ancestor
