-- The combined table as the training snapshot reads it.
SELECT path, instrument, midi, fold, pitch_spectrogram, pitch_shape, instrument_spectrogram, instrument_shape, feature_digest
FROM instruments_notes_spectrogram
ORDER BY path;
