-- Session-local staging tables a shard COPYs its rows into before one upsert per table
-- (dropped first, so several upserts can share one transaction).
DROP TABLE IF EXISTS pg_temp.notes_stage;
DROP TABLE IF EXISTS pg_temp.instruments_stage;
CREATE TEMP TABLE notes_stage (LIKE notes_spectrogram INCLUDING DEFAULTS) ON COMMIT DROP;
CREATE TEMP TABLE instruments_stage (LIKE instruments_spectrogram INCLUDING DEFAULTS) ON COMMIT DROP;
