-- The metadata CSV of a source is the truth for that source: upsert its good rows, drop the
-- rows of that source it no longer has. Other sources' rows are not touched.
INSERT INTO tinysol_metadata AS t
SELECT * FROM metadata_stage
ON CONFLICT (source, path) DO UPDATE SET
    fold = EXCLUDED.fold, family = EXCLUDED.family,
    instrument_abbr = EXCLUDED.instrument_abbr, instrument_name = EXCLUDED.instrument_name,
    technique_abbr = EXCLUDED.technique_abbr, technique_name = EXCLUDED.technique_name,
    pitch = EXCLUDED.pitch, pitch_id = EXCLUDED.pitch_id,
    dynamics = EXCLUDED.dynamics, dynamics_id = EXCLUDED.dynamics_id,
    instance_id = EXCLUDED.instance_id, string_id = EXCLUDED.string_id,
    needed_retuning = EXCLUDED.needed_retuning, loaded_at = now()
WHERE (t.fold, t.family, t.instrument_abbr, t.instrument_name, t.technique_abbr, t.technique_name,
       t.pitch, t.pitch_id, t.dynamics, t.dynamics_id, t.instance_id, t.string_id, t.needed_retuning)
   IS DISTINCT FROM
      (EXCLUDED.fold, EXCLUDED.family, EXCLUDED.instrument_abbr, EXCLUDED.instrument_name,
       EXCLUDED.technique_abbr, EXCLUDED.technique_name, EXCLUDED.pitch, EXCLUDED.pitch_id,
       EXCLUDED.dynamics, EXCLUDED.dynamics_id, EXCLUDED.instance_id, EXCLUDED.string_id,
       EXCLUDED.needed_retuning);
DELETE FROM tinysol_metadata t
WHERE t.source = :source
  AND NOT EXISTS (SELECT 1 FROM metadata_stage s WHERE s.source = t.source AND s.path = t.path);
