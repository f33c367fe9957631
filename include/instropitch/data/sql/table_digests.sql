-- Rows and an md5 of the content of every warehouse table, in key order, leaving out when
-- and by which run a row was written (loaded_at, run_id, rejected_at): two loads of the same
-- sources give the same digests whichever executor, worker or retry wrote them.
SELECT 'tinysol_metadata' AS table_name, count(*) AS row_count, count(DISTINCT (source, path)) AS key_count,
    md5(coalesce(string_agg(concat_ws(':', source, path, fold, family, instrument_abbr, instrument_name,
        technique_abbr, technique_name, pitch, pitch_id, dynamics, dynamics_id, instance_id, string_id,
        needed_retuning), ',' ORDER BY source, path), '')) AS digest
FROM tinysol_metadata
UNION ALL
SELECT 'notes_spectrogram', count(*), count(DISTINCT (source, path)),
    md5(coalesce(string_agg(concat_ws(':', source, path, pitch, note, octave, midi, md5(spectrogram), shape::text,
        etag, feature_digest), ',' ORDER BY source, path), ''))
FROM notes_spectrogram
UNION ALL
SELECT 'instruments_spectrogram', count(*), count(DISTINCT (source, path)),
    md5(coalesce(string_agg(concat_ws(':', source, path, instrument, family, md5(spectrogram), shape::text,
        etag, feature_digest), ',' ORDER BY source, path), ''))
FROM instruments_spectrogram
UNION ALL
SELECT 'etl_rejects', count(*), count(DISTINCT (source, path, stage)),
    md5(coalesce(string_agg(concat_ws(':', source, path, stage, reason), ',' ORDER BY source, path, stage), ''))
FROM etl_rejects
UNION ALL
SELECT 'instruments_notes_spectrogram', count(*), count(DISTINCT (source, path)),
    md5(coalesce(string_agg(concat_ws(':', source, path, instrument, instrument_name, family, pitch, note, octave,
        midi, fold, dynamics, md5(pitch_spectrogram), pitch_shape::text, md5(instrument_spectrogram),
        instrument_shape::text, feature_digest), ',' ORDER BY source, path), ''))
FROM instruments_notes_spectrogram;
