-- Figures the quality gate checks for one source: what was loaded, what was refused, which instruments.
SELECT
    (SELECT count(*) FROM instruments_notes_spectrogram WHERE source = :source) AS combined_rows,
    (SELECT count(*) FROM tinysol_metadata WHERE source = :source) AS metadata_rows,
    (SELECT count(DISTINCT path) FROM etl_rejects
     WHERE source = :source AND stage IN ('missing_object', 'transform')) AS rejected_rows,
    (SELECT count(*) FROM etl_rejects WHERE source = :source AND stage = 'metadata') AS bad_metadata_rows,
    (SELECT count(*) FROM etl_rejects WHERE source = :source AND stage = 'orphan_object') AS orphan_objects,
    (SELECT array_agg(DISTINCT instrument ORDER BY instrument)
     FROM instruments_notes_spectrogram WHERE source = :source) AS instruments,
    (SELECT array_agg(DISTINCT instrument_abbr ORDER BY instrument_abbr)
     FROM tinysol_metadata WHERE source = :source) AS listed_instruments;
