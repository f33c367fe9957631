-- Forget a source: its metadata, spectrograms and rejects (the next build_combined drops its rows).
DELETE FROM tinysol_metadata WHERE source = :source;
DELETE FROM notes_spectrogram WHERE source = :source;
DELETE FROM instruments_spectrogram WHERE source = :source;
DELETE FROM etl_rejects WHERE source = :source;
