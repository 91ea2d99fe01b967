-- Jobs and their inputs (tessera_core::job). Times are Unix milliseconds.
CREATE TABLE jobs (
  job_id TEXT PRIMARY KEY,
  -- The upload that triggered it (one job per upload); NULL for a job asked for by
  -- image ids, upload ids or a search.
  upload_id TEXT UNIQUE,
  project TEXT NOT NULL,
  state TEXT NOT NULL,
  stage TEXT,
  inputs_total BIGINT NOT NULL,
  windows_done BIGINT NOT NULL DEFAULT 0,
  windows_total BIGINT NOT NULL DEFAULT 0,
  -- Stage-weighted, only ever raised.
  fraction DOUBLE PRECISION NOT NULL DEFAULT 0,
  error TEXT,
  -- JobResults as JSON (keys only).
  results TEXT NOT NULL DEFAULT '{}',
  created_at BIGINT NOT NULL,
  started_at BIGINT,
  updated_at BIGINT NOT NULL
);
-- GET /v1/jobs: newest first, keyset on (created_at, job_id).
CREATE INDEX jobs_listed ON jobs (project, created_at, job_id);

CREATE TABLE job_inputs (
  job_id TEXT NOT NULL REFERENCES jobs (job_id),
  idx BIGINT NOT NULL,
  image_id TEXT NOT NULL,
  original_key TEXT NOT NULL,
  metadata_key TEXT NOT NULL,
  media_type TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending',
  -- 'raster' (a georeferenced GeoTIFF, stitched) or 'photo', once ingested.
  kind TEXT,
  reason TEXT,
  PRIMARY KEY (job_id, idx)
);
