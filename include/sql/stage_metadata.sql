-- A session-local staging table the metadata CSV is COPYed into before the upsert.
CREATE TEMP TABLE metadata_stage (LIKE tinysol_metadata INCLUDING DEFAULTS) ON COMMIT DROP;
