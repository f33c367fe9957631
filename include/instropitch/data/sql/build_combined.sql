-- Build instruments_notes_spectrogram atomically: a new table is filled, then swapped in by
-- rename inside one transaction, so readers see the old table or the new one, never half.
-- Labels come from tinysol_metadata (the truth); rows currently rejected are left out.
-- It holds every source in the warehouse (not only the sources of this run): training
-- wants them all, and a source left out of a run keeps its rows until it is dropped.
SELECT pg_advisory_xact_lock(hashtext('instropitch.build_combined'));
DROP TABLE IF EXISTS instruments_notes_spectrogram_build;
CREATE TABLE instruments_notes_spectrogram_build AS
SELECT
    m.source,
    m.path,
    m.instrument_abbr AS instrument,
    m.instrument_name,
    m.family,
    m.pitch,
    n.note,
    n.octave,
    m.pitch_id AS midi,
    m.fold,
    m.dynamics,
    n.spectrogram AS pitch_spectrogram,
    n.shape AS pitch_shape,
    i.spectrogram AS instrument_spectrogram,
    i.shape AS instrument_shape,
    n.feature_digest
FROM tinysol_metadata m
JOIN notes_spectrogram n
    ON n.source = m.source AND n.path = m.path AND n.feature_digest = :feature_digest
JOIN instruments_spectrogram i
    ON i.source = m.source AND i.path = m.path AND i.feature_digest = :feature_digest
WHERE NOT EXISTS (
    SELECT 1 FROM etl_rejects r
    WHERE r.source = m.source AND r.path = m.path AND r.stage IN ('missing_object', 'transform')
);
ALTER TABLE instruments_notes_spectrogram_build ALTER COLUMN source SET NOT NULL;
ALTER TABLE instruments_notes_spectrogram_build ADD PRIMARY KEY (source, path);
CREATE INDEX ON instruments_notes_spectrogram_build (instrument);
CREATE INDEX ON instruments_notes_spectrogram_build (midi);
DROP TABLE IF EXISTS instruments_notes_spectrogram;
ALTER TABLE instruments_notes_spectrogram_build RENAME TO instruments_notes_spectrogram;
