-- Forget a source's rejects of a stage before it records the current ones (rejects mirror the present state).
DELETE FROM etl_rejects WHERE stage = :stage AND source = :source;
