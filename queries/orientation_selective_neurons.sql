-- Orientation-selective neurons (docs/science.md §21): orientation_index >= 0.5, i.e. rotating the
-- receptive fields of their top images loses on average at least half of the response; with the
-- best-kept rotation (preferred_angle: 180 for a bar, 90 for a cross) and the circular-variance
-- style orientation_selectivity. Empty until `neurocat analyze orientation` has run.
SELECT n.model, n.dataset, n.layer, n.unit, n.orientation_index, n.preferred_angle, n.orientation_selectivity,
       n.symmetry_index, n.alpha, n.gamma, n.nf_png
FROM neurons AS n
WHERE n.orientation_index >= 0.5
