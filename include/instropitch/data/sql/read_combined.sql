-- The combined table as the training snapshot reads it: every source, or only those in :sources.
SELECT source, path, instrument, midi, fold, pitch_spectrogram, pitch_shape, instrument_spectrogram, instrument_shape,
       feature_digest
FROM instruments_notes_spectrogram
WHERE CAST(:sources AS text[]) IS NULL OR source = ANY(CAST(:sources AS text[]))
ORDER BY source, path;
