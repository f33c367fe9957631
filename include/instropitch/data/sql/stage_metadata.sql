-- A session-local staging table the metadata CSV is COPYed into before the upsert
-- (dropped first, so several sources can be replaced in one transaction).
DROP TABLE IF EXISTS pg_temp.metadata_stage;
CREATE TEMP TABLE metadata_stage (LIKE tinysol_metadata INCLUDING DEFAULTS) ON COMMIT DROP;
