-- Every source the warehouse holds rows of, with its metadata and combined row counts.
SELECT s.source,
       (SELECT count(*) FROM tinysol_metadata m WHERE m.source = s.source) AS metadata_rows,
       (SELECT count(*) FROM instruments_notes_spectrogram c WHERE c.source = s.source) AS combined_rows
FROM (SELECT source FROM tinysol_metadata
      UNION SELECT source FROM notes_spectrogram
      UNION SELECT source FROM etl_rejects) s
ORDER BY s.source;
