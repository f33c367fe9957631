-- Record (or refresh) why a path of a source was refused at a stage.
INSERT INTO etl_rejects (source, path, stage, reason, run_id, rejected_at)
VALUES (:source, :path, :stage, :reason, :run_id, now())
ON CONFLICT (source, path, stage) DO UPDATE SET
    reason = EXCLUDED.reason, run_id = EXCLUDED.run_id, rejected_at = now();
