-- A digest of the combined table's content: tells whether a rebuild changed anything.
SELECT
    count(*) AS row_count,
    md5(coalesce(string_agg(
        source || ':' || path || ':' || instrument || ':' || midi || ':' || fold || ':' || feature_digest || ':'
        || md5(pitch_spectrogram) || md5(instrument_spectrogram),
        ',' ORDER BY source, path), '')) AS digest
FROM instruments_notes_spectrogram;
