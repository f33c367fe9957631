-- Figures the quality gate checks: what was loaded, what was refused, which instruments.
SELECT
    (SELECT count(*) FROM instruments_notes_spectrogram) AS combined_rows,
    (SELECT count(*) FROM tinysol_metadata) AS metadata_rows,
    (SELECT count(DISTINCT path) FROM etl_rejects WHERE stage IN ('missing_object', 'transform')) AS rejected_rows,
    (SELECT count(*) FROM etl_rejects WHERE stage = 'metadata') AS bad_metadata_rows,
    (SELECT count(*) FROM etl_rejects WHERE stage = 'orphan_object') AS orphan_objects,
    (SELECT array_agg(DISTINCT instrument ORDER BY instrument) FROM instruments_notes_spectrogram) AS instruments;
