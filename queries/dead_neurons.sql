-- Neurons that never fire on the data set (a_max <= 0): no Neuron Feature, NULL indexes.
SELECT model, dataset, layer, unit, a_max
FROM units
WHERE dead
