-- Bring a warehouse created before sources existed to today's keys, keeping every row.
-- A table that still lacks `source` gets it, old rows filled with 'TinySOL' (the source name of
-- the old default prefix `TinySOL/`, where old rows came from unless the prefix param was
-- changed); the default is then dropped so new rows must name their source, and the primary
-- key on path (path, stage for etl_rejects) becomes (source, path) ((source, path, stage)).
-- One transaction with create_schema; safe on every run: a new or migrated table has `source`
-- and is left as it is. Static statements only (no dynamic SQL).
DO $migrate$
BEGIN
    IF to_regclass('tinysol_metadata') IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = to_regclass('tinysol_metadata') AND attname = 'source' AND NOT attisdropped
    ) THEN
        ALTER TABLE tinysol_metadata ADD COLUMN source text NOT NULL DEFAULT 'TinySOL';
        ALTER TABLE tinysol_metadata ALTER COLUMN source DROP DEFAULT;
        ALTER TABLE tinysol_metadata DROP CONSTRAINT IF EXISTS tinysol_metadata_pkey;
        ALTER TABLE tinysol_metadata ADD PRIMARY KEY (source, path);
    END IF;
    IF to_regclass('notes_spectrogram') IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = to_regclass('notes_spectrogram') AND attname = 'source' AND NOT attisdropped
    ) THEN
        ALTER TABLE notes_spectrogram ADD COLUMN source text NOT NULL DEFAULT 'TinySOL';
        ALTER TABLE notes_spectrogram ALTER COLUMN source DROP DEFAULT;
        ALTER TABLE notes_spectrogram DROP CONSTRAINT IF EXISTS notes_spectrogram_pkey;
        ALTER TABLE notes_spectrogram ADD PRIMARY KEY (source, path);
    END IF;
    IF to_regclass('instruments_spectrogram') IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = to_regclass('instruments_spectrogram') AND attname = 'source' AND NOT attisdropped
    ) THEN
        ALTER TABLE instruments_spectrogram ADD COLUMN source text NOT NULL DEFAULT 'TinySOL';
        ALTER TABLE instruments_spectrogram ALTER COLUMN source DROP DEFAULT;
        ALTER TABLE instruments_spectrogram DROP CONSTRAINT IF EXISTS instruments_spectrogram_pkey;
        ALTER TABLE instruments_spectrogram ADD PRIMARY KEY (source, path);
    END IF;
    IF to_regclass('etl_rejects') IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = to_regclass('etl_rejects') AND attname = 'source' AND NOT attisdropped
    ) THEN
        ALTER TABLE etl_rejects ADD COLUMN source text NOT NULL DEFAULT 'TinySOL';
        ALTER TABLE etl_rejects ALTER COLUMN source DROP DEFAULT;
        ALTER TABLE etl_rejects DROP CONSTRAINT IF EXISTS etl_rejects_pkey;
        ALTER TABLE etl_rejects ADD PRIMARY KEY (source, path, stage);
    END IF;
    IF to_regclass('instruments_notes_spectrogram') IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = to_regclass('instruments_notes_spectrogram') AND attname = 'source' AND NOT attisdropped
    ) THEN
        ALTER TABLE instruments_notes_spectrogram ADD COLUMN source text NOT NULL DEFAULT 'TinySOL';
        ALTER TABLE instruments_notes_spectrogram ALTER COLUMN source DROP DEFAULT;
        -- Its key is named after the build table (_build_pkey, _build_pkey1, ...), so the rows
        -- move to a copy without the old key, which takes the table's place.
        DROP TABLE IF EXISTS instruments_notes_spectrogram_migrated;
        CREATE TABLE instruments_notes_spectrogram_migrated (LIKE instruments_notes_spectrogram INCLUDING DEFAULTS);
        INSERT INTO instruments_notes_spectrogram_migrated SELECT * FROM instruments_notes_spectrogram;
        DROP TABLE instruments_notes_spectrogram;
        ALTER TABLE instruments_notes_spectrogram_migrated RENAME TO instruments_notes_spectrogram;
        ALTER TABLE instruments_notes_spectrogram ADD PRIMARY KEY (source, path);
        CREATE INDEX ON instruments_notes_spectrogram (instrument);
        CREATE INDEX ON instruments_notes_spectrogram (midi);
    END IF;
END
$migrate$;
