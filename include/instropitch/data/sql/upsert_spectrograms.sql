-- Upsert a shard's staged rows by (source, path) (re-running a shard rewrites the same rows).
INSERT INTO notes_spectrogram AS t
SELECT * FROM notes_stage
ON CONFLICT (source, path) DO UPDATE SET
    pitch = EXCLUDED.pitch, note = EXCLUDED.note, octave = EXCLUDED.octave, midi = EXCLUDED.midi,
    spectrogram = EXCLUDED.spectrogram, shape = EXCLUDED.shape, etag = EXCLUDED.etag,
    feature_digest = EXCLUDED.feature_digest, loaded_at = now();
INSERT INTO instruments_spectrogram AS t
SELECT * FROM instruments_stage
ON CONFLICT (source, path) DO UPDATE SET
    instrument = EXCLUDED.instrument, family = EXCLUDED.family,
    spectrogram = EXCLUDED.spectrogram, shape = EXCLUDED.shape, etag = EXCLUDED.etag,
    feature_digest = EXCLUDED.feature_digest, loaded_at = now();
DELETE FROM etl_rejects r USING notes_stage s
WHERE r.source = s.source AND r.path = s.path AND r.stage = 'transform';
