-- Tables of the InstroPitch warehouse. Idempotent: every statement is IF NOT EXISTS.
-- Spectrograms are stored as little-endian float32 bytes (bytea) with their shape (int[]):
-- compact, exact (bit for bit) and cheap to decode with numpy.frombuffer.
--
-- Every row carries its `source`: the name of the dataset (an S3 prefix in TinySOL layout)
-- it was loaded from. Sources share relative paths (the same TinySOL file names), so the
-- key of every table is (source, path). Databases created before sources existed are
-- brought to this shape by migrate_sources.sql, which create_schema runs after this file.

CREATE TABLE IF NOT EXISTS tinysol_metadata (
    source           text NOT NULL,
    path             text NOT NULL,
    fold             smallint NOT NULL CHECK (fold BETWEEN 0 AND 4),
    family           text NOT NULL,
    instrument_abbr  text NOT NULL,
    instrument_name  text NOT NULL,
    technique_abbr   text NOT NULL,
    technique_name   text NOT NULL,
    pitch            text NOT NULL,
    pitch_id         smallint NOT NULL CHECK (pitch_id BETWEEN 0 AND 127),
    dynamics         text NOT NULL,
    dynamics_id      smallint NOT NULL,
    instance_id      smallint NOT NULL,
    string_id        smallint,
    needed_retuning  boolean NOT NULL,
    loaded_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, path)
);
CREATE INDEX IF NOT EXISTS tinysol_metadata_instrument_idx ON tinysol_metadata (instrument_abbr);

CREATE TABLE IF NOT EXISTS notes_spectrogram (
    source          text NOT NULL,
    path            text NOT NULL,
    pitch           text NOT NULL,
    note            text NOT NULL,
    octave          smallint NOT NULL,
    midi            smallint NOT NULL,
    spectrogram     bytea NOT NULL,
    shape           integer[] NOT NULL,
    etag            text NOT NULL,
    feature_digest  text NOT NULL,
    loaded_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, path)
);

CREATE TABLE IF NOT EXISTS instruments_spectrogram (
    source          text NOT NULL,
    path            text NOT NULL,
    instrument      text NOT NULL,
    family          text NOT NULL,
    spectrogram     bytea NOT NULL,
    shape           integer[] NOT NULL,
    etag            text NOT NULL,
    feature_digest  text NOT NULL,
    loaded_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, path)
);

-- One row per (source, path, stage) that is currently refused; a later success removes it.
CREATE TABLE IF NOT EXISTS etl_rejects (
    source       text NOT NULL,
    path         text NOT NULL,
    stage        text NOT NULL,
    reason       text NOT NULL,
    run_id       text,
    rejected_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, path, stage)
);

CREATE TABLE IF NOT EXISTS instruments_notes_spectrogram (
    source                  text NOT NULL,
    path                    text NOT NULL,
    instrument              text NOT NULL,
    instrument_name         text NOT NULL,
    family                  text NOT NULL,
    pitch                   text NOT NULL,
    note                    text NOT NULL,
    octave                  smallint NOT NULL,
    midi                    smallint NOT NULL,
    fold                    smallint NOT NULL,
    dynamics                text NOT NULL,
    pitch_spectrogram       bytea NOT NULL,
    pitch_shape             integer[] NOT NULL,
    instrument_spectrogram  bytea NOT NULL,
    instrument_shape        integer[] NOT NULL,
    feature_digest          text NOT NULL,
    PRIMARY KEY (source, path)
);
