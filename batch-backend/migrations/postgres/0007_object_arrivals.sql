-- Originals put into original-uploads/{project}/ by another route than the edge (any S3
-- client), as last settled: one row per key, so that the same object noticed again (a second
-- event, the periodic reconciliation) is not looked at twice, while a new version of the key
-- (another ETag, else another size) is.
CREATE TABLE object_arrivals (
  object_key TEXT PRIMARY KEY,
  -- The ETag when storage gives one, else the size in bytes.
  version TEXT NOT NULL,
  project TEXT NOT NULL,
  -- 'recorded' (an image and its job) or 'refused' (announced by upload.failed).
  outcome TEXT NOT NULL,
  -- The one-image upload that records it ('s3-{image_id}'), or the refusal's id.
  upload_id TEXT NOT NULL,
  image_id TEXT,
  job_id TEXT,
  reason TEXT,
  settled_at BIGINT NOT NULL
);
