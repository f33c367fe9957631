-- Tables of the InstroPitch warehouse. Idempotent: every statement is IF NOT EXISTS.
-- Spectrograms are stored as little-endian float32 bytes (bytea) with their shape (int[]):
-- compact, exact (bit for bit) and cheap to decode with numpy.frombuffer.

CREATE TABLE IF NOT EXISTS tinysol_metadata (
    path             text PRIMARY KEY,
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
    loaded_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS tinysol_metadata_instrument_idx ON tinysol_metadata (instrument_abbr);

CREATE TABLE IF NOT EXISTS notes_spectrogram (
    path            text PRIMARY KEY,
    pitch           text NOT NULL,
    note            text NOT NULL,
    octave          smallint NOT NULL,
    midi            smallint NOT NULL,
    spectrogram     bytea NOT NULL,
    shape           integer[] NOT NULL,
    etag            text NOT NULL,
    feature_digest  text NOT NULL,
    loaded_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS instruments_spectrogram (
    path            text PRIMARY KEY,
    instrument      text NOT NULL,
    family          text NOT NULL,
    spectrogram     bytea NOT NULL,
    shape           integer[] NOT NULL,
    etag            text NOT NULL,
    feature_digest  text NOT NULL,
    loaded_at       timestamptz NOT NULL DEFAULT now()
);

-- One row per (path, stage) that is currently refused; a later success removes it.
CREATE TABLE IF NOT EXISTS etl_rejects (
    path         text NOT NULL,
    stage        text NOT NULL,
    reason       text NOT NULL,
    run_id       text,
    rejected_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (path, stage)
);

CREATE TABLE IF NOT EXISTS instruments_notes_spectrogram (
    path                    text PRIMARY KEY,
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
    feature_digest          text NOT NULL
);
