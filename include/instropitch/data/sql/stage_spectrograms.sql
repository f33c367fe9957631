-- Session-local staging tables a shard COPYs its rows into before one upsert per table
-- (dropped first, so several upserts can share one transaction), stored like their tables
-- (INCLUDING STORAGE: no compression attempt, see spectrogram_storage.sql).
DROP TABLE IF EXISTS pg_temp.notes_stage;
DROP TABLE IF EXISTS pg_temp.instruments_stage;
CREATE TEMP TABLE notes_stage (LIKE notes_spectrogram INCLUDING DEFAULTS INCLUDING STORAGE) ON COMMIT DROP;
CREATE TEMP TABLE instruments_stage (LIKE instruments_spectrogram INCLUDING DEFAULTS INCLUDING STORAGE) ON COMMIT DROP;
