-- Spectrogram bytes are stored as they are: STORAGE EXTERNAL (out of line, never pglz-compressed).
-- float32 spectrograms barely compress (pitch 0.4 %, instrument ~19 %, the -80 dB floor), and
-- trying cost PostgreSQL about half of its CPU per loaded note (bench/RESULTS.md, ETL).
-- Changes only how new rows are stored (existing rows stay readable as they are); altered
-- only when needed, so a DAG run does not take the table lock for nothing.
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = 'notes_spectrogram'::regclass AND attname = 'spectrogram' AND attstorage <> 'e'
    ) THEN
        ALTER TABLE notes_spectrogram ALTER COLUMN spectrogram SET STORAGE EXTERNAL;
    END IF;
    IF EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = 'instruments_spectrogram'::regclass AND attname = 'spectrogram' AND attstorage <> 'e'
    ) THEN
        ALTER TABLE instruments_spectrogram ALTER COLUMN spectrogram SET STORAGE EXTERNAL;
    END IF;
END
$$;
