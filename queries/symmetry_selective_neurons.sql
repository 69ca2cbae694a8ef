-- Mirror-symmetric neurons (docs/science.md §21): symmetry_index >= 0.5, i.e. mirroring the receptive
-- fields of their top images about the four axes keeps on average at least half of the response; with
-- the retention per axis (0 horizontal, 45, 90 vertical, 135). Empty until `neurocat analyze symmetry` has run.
SELECT n.model, n.dataset, n.layer, n.unit, n.symmetry_index,
       s.axis_0, s.axis_45, s.axis_90, s.axis_135, n.orientation_index, n.nf_png
FROM neurons AS n
JOIN (
    SELECT model, dataset, layer, unit,
        MAX(CASE WHEN axis = 0 THEN retention END) AS axis_0,
        MAX(CASE WHEN axis = 45 THEN retention END) AS axis_45,
        MAX(CASE WHEN axis = 90 THEN retention END) AS axis_90,
        MAX(CASE WHEN axis = 135 THEN retention END) AS axis_135
    FROM symmetry_axes
    GROUP BY model, dataset, layer, unit
) AS s ON s.model = n.model AND s.dataset = n.dataset AND s.layer = n.layer AND s.unit = n.unit
WHERE n.symmetry_index >= 0.5
