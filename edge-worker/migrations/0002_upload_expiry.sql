-- When an upload's presigned PUT URLs expire, and when its `upload.expired` webhook was
-- announced (tessera_edge::expiry): an upload planned but not completed by then is reported
-- once. Rows from before this migration have no expiry and are never reported.
ALTER TABLE uploads ADD COLUMN expires_at INTEGER;  -- unix seconds
ALTER TABLE uploads ADD COLUMN expired_at INTEGER;  -- unix seconds, NULL until announced

CREATE INDEX uploads_expiring ON uploads (expires_at)
  WHERE completed_at IS NULL AND expired_at IS NULL;
