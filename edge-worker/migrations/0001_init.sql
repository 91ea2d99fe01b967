-- Tessera's metadata index. Applied by `wrangler d1 migrations apply` on Workers (D1) and by
-- tessera-edge's SQLite store natively: keep it to SQL both accept. The database is an index
-- over the metadata sidecars in storage and can be rebuilt from them.

-- One POST /v1/uploads: the planned manifests, until completed.
CREATE TABLE uploads (
  upload_id    TEXT PRIMARY KEY,
  project      TEXT NOT NULL,
  manifests    TEXT NOT NULL,          -- JSON array of tessera_core::Manifest
  created_at   INTEGER NOT NULL,       -- unix seconds
  completed_at INTEGER,                -- unix seconds, NULL until complete
  job_id       TEXT                    -- the batch job triggered on completion
);

-- One completed image: searchable by acquisition date and GPS position.
CREATE TABLE images (
  image_id    TEXT PRIMARY KEY,
  project     TEXT NOT NULL,
  upload_id   TEXT NOT NULL REFERENCES uploads (upload_id),
  acquired_on TEXT NOT NULL,           -- YYYY-MM-DD: EXIF DateTimeOriginal, else upload date
  latitude    REAL,                    -- WGS 84 degrees, NULL without GPS
  longitude   REAL,
  manifest    TEXT NOT NULL            -- the sidecar JSON (tessera_core::Manifest)
);

CREATE INDEX images_by_date ON images (acquired_on, image_id);
CREATE INDEX images_by_project_date ON images (project, acquired_on, image_id);
CREATE INDEX images_by_position ON images (latitude, longitude);
