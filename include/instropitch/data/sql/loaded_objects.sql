-- Paths of a source whose two spectrograms are loaded, with the ETag and feature digest they were made from.
SELECT n.path, n.etag, n.feature_digest
FROM notes_spectrogram n
JOIN instruments_spectrogram i
    ON i.source = n.source AND i.path = n.path AND i.etag = n.etag AND i.feature_digest = n.feature_digest
WHERE n.source = :source;
