-- Session-local staging tables a shard COPYs its rows into before one upsert per table.
CREATE TEMP TABLE notes_stage (LIKE notes_spectrogram INCLUDING DEFAULTS) ON COMMIT DROP;
CREATE TEMP TABLE instruments_stage (LIKE instruments_spectrogram INCLUDING DEFAULTS) ON COMMIT DROP;
