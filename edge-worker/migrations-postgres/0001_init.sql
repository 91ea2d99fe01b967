-- Tessera's metadata index on PostgreSQL, for native edge hosts that share one database
-- (tessera_edge::postgres). The same tables as migrations/ (D1 and SQLite), in PostgreSQL's
-- types; the database is an index over the metadata sidecars in storage and can be rebuilt
-- from them (`tessera reindex`).

CREATE TABLE uploads (
  upload_id    TEXT PRIMARY KEY,
  project      TEXT NOT NULL,
  manifests    TEXT NOT NULL,          -- JSON array of tessera_core::Manifest
  created_at   BIGINT NOT NULL,        -- unix seconds
  completed_at BIGINT,                 -- unix seconds, NULL until complete
  job_id       TEXT,                   -- the batch job triggered on completion
  expires_at   BIGINT,                 -- unix seconds: when its presigned PUT URLs expire
  expired_at   BIGINT                  -- unix seconds, NULL until upload.expired was announced
);

CREATE TABLE images (
  image_id    TEXT PRIMARY KEY,
  project     TEXT NOT NULL,
  upload_id   TEXT NOT NULL REFERENCES uploads (upload_id),
  acquired_on TEXT NOT NULL,           -- YYYY-MM-DD: EXIF DateTimeOriginal, else upload date
  latitude    DOUBLE PRECISION,        -- WGS 84 degrees, NULL without GPS
  longitude   DOUBLE PRECISION,
  manifest    TEXT NOT NULL            -- the sidecar JSON (tessera_core::Manifest)
);

CREATE INDEX images_by_date ON images (acquired_on, image_id);
CREATE INDEX images_by_project_date ON images (project, acquired_on, image_id);
CREATE INDEX images_by_position ON images (latitude, longitude);
CREATE INDEX uploads_expiring ON uploads (expires_at)
  WHERE completed_at IS NULL AND expired_at IS NULL;
