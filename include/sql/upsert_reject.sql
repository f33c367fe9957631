-- Record (or refresh) why a path was refused at a stage.
INSERT INTO etl_rejects (path, stage, reason, run_id, rejected_at)
VALUES (:path, :stage, :reason, :run_id, now())
ON CONFLICT (path, stage) DO UPDATE SET
    reason = EXCLUDED.reason, run_id = EXCLUDED.run_id, rejected_at = now();
