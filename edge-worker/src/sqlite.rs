//! The native [`Store`]: SQLite through rusqlite, schema from [`MIGRATIONS`]. Every value is a
//! bound parameter; the only SQL text is below.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use tessera_core::Manifest;
use tessera_core::search::ImageQuery;

use crate::metadata::{ImageRecord, UploadRecord};
use crate::store::ExpiredUpload;
use crate::store::sql;
use crate::{MIGRATIONS, Store, StoreError, UploadRow};

/// SQLite metadata store. Calls run on the caller's thread (they take microseconds to a few
/// milliseconds); the native host is single-threaded per process, like a Workers isolate.
#[derive(Debug)]
pub struct SqliteStore {
    connection: Mutex<Connection>,
}

fn failed(operation: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::Database {
        store: "sqlite",
        operation,
        detail: e.to_string(),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    ///
    /// # Errors
    /// When the file cannot be opened or a migration fails.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::migrate(Connection::open(path).map_err(failed("open"))?)
    }

    /// An in-memory database, for tests and benchmarks.
    ///
    /// # Errors
    /// When a migration fails.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::migrate(Connection::open_in_memory().map_err(failed("open"))?)
    }

    fn migrate(connection: Connection) -> Result<Self, StoreError> {
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;
                 CREATE TABLE IF NOT EXISTS d1_migrations (
                   id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE,
                   applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL);",
            )
            .map_err(failed("migrate"))?;
        for (name, sql) in MIGRATIONS {
            let applied: bool = connection
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM d1_migrations WHERE name = ?1)",
                    [name],
                    |r| r.get(0),
                )
                .map_err(failed("migrate"))?;
            if !applied {
                connection.execute_batch(sql).map_err(failed("migrate"))?;
                connection
                    .execute("INSERT INTO d1_migrations (name) VALUES (?1)", [name])
                    .map_err(failed("migrate"))?;
            }
        }
        Ok(Self {
            connection: Mutex::new(connection),
        })
    }

    /// Runs `f` on the connection; its error is reported as `operation`'s.
    fn with<T>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        // A panic while holding the lock leaves no half-done write: each call is one
        // statement or one transaction, so the connection is still usable.
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut connection).map_err(failed(operation))
    }

    /// Uploads by state, for `/metrics`: `planned` (neither completed nor expired),
    /// `completed`, `expired` (announced, never completed); a state without uploads is left
    /// out.
    ///
    /// # Errors
    /// On a database error.
    pub fn upload_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.with("upload_counts", |c| {
            let mut statement = c.prepare_cached(
                "SELECT CASE WHEN completed_at IS NOT NULL THEN 'completed' \
                 WHEN expired_at IS NOT NULL THEN 'expired' ELSE 'planned' END AS state, \
                 COUNT(*) FROM uploads GROUP BY 1",
            )?;
            let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// Up to `limit` uploads after `after`, in id order ([`crate::metadata::MetadataStore::uploads_after`]).
    ///
    /// # Errors
    /// On a database error.
    pub fn uploads_after(&self, after: &str, limit: u32) -> Result<Vec<UploadRecord>, StoreError> {
        self.with("uploads_after", |c| {
            let mut statement = c.prepare_cached(sql::UPLOADS_AFTER)?;
            let rows = statement.query_map(params![after, limit], |r| {
                Ok(UploadRecord {
                    upload_id: r.get(0)?,
                    project: r.get(1)?,
                    manifests: r.get(2)?,
                    created_at: r.get(3)?,
                    completed_at: r.get(4)?,
                    job_id: r.get(5)?,
                    expires_at: r.get(6)?,
                    expired_at: r.get(7)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Up to `limit` images after `after`, in id order ([`crate::metadata::MetadataStore::images_after`]).
    ///
    /// # Errors
    /// On a database error.
    pub fn images_after(&self, after: &str, limit: u32) -> Result<Vec<ImageRecord>, StoreError> {
        self.with("images_after", |c| {
            let mut statement = c.prepare_cached(sql::IMAGES_AFTER)?;
            let rows = statement.query_map(params![after, limit], |r| {
                Ok(ImageRecord {
                    image_id: r.get(0)?,
                    project: r.get(1)?,
                    upload_id: r.get(2)?,
                    acquired_on: r.get(3)?,
                    latitude: r.get(4)?,
                    longitude: r.get(5)?,
                    manifest: r.get(6)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Writes `records` over those with the same ids, in one transaction.
    ///
    /// # Errors
    /// On a database error.
    pub fn put_uploads(&self, records: &[UploadRecord]) -> Result<(), StoreError> {
        self.with("put_uploads", |c| {
            let tx = c.transaction()?;
            for r in records {
                tx.execute(
                    sql::UPSERT_UPLOAD,
                    params![
                        r.upload_id,
                        r.project,
                        r.manifests,
                        r.created_at,
                        r.completed_at,
                        r.job_id,
                        r.expires_at,
                        r.expired_at
                    ],
                )?;
            }
            tx.commit()
        })
    }

    /// Writes `records` over those with the same ids, in one transaction.
    ///
    /// # Errors
    /// On a database error (an image whose upload is missing).
    pub fn put_images(&self, records: &[ImageRecord]) -> Result<(), StoreError> {
        self.with("put_images", |c| {
            let tx = c.transaction()?;
            for r in records {
                tx.execute(
                    sql::UPSERT_IMAGE,
                    params![
                        r.image_id,
                        r.project,
                        r.upload_id,
                        r.acquired_on,
                        r.latitude,
                        r.longitude,
                        r.manifest
                    ],
                )?;
            }
            tx.commit()
        })
    }

    /// Number of image records, for tests.
    ///
    /// # Errors
    /// On a database error.
    pub fn image_count(&self) -> Result<i64, StoreError> {
        self.with("image_count", |c| {
            c.query_row("SELECT COUNT(*) FROM images", [], |r| r.get(0))
        })
    }
}

/// SQLite integers are i64; unix seconds fit until the year 292 billion.
fn unix_i64(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

fn manifest(json: &str) -> rusqlite::Result<Manifest> {
    serde_json::from_str(json).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

impl Store for SqliteStore {
    async fn create_upload(
        &self,
        upload_id: &str,
        project: &str,
        manifests: &[Manifest],
        now_s: u64,
        expires_at_s: u64,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(manifests).expect("manifests serialise");
        self.with("create_upload", |c| {
            c.execute(
                sql::INSERT_UPLOAD,
                params![
                    upload_id,
                    project,
                    json,
                    unix_i64(now_s),
                    unix_i64(expires_at_s)
                ],
            )
            .map(drop)
        })
    }

    async fn expired_uploads(
        &self,
        now_s: u64,
        limit: u32,
    ) -> Result<Vec<ExpiredUpload>, StoreError> {
        self.with("expired_uploads", |c| {
            let mut statement = c.prepare_cached(sql::EXPIRED_UPLOADS)?;
            let rows = statement.query_map(params![unix_i64(now_s), limit], |r| {
                Ok(ExpiredUpload {
                    upload_id: r.get(0)?,
                    project: r.get(1)?,
                    manifests: serde_json::from_str(&r.get::<_, String>(2)?)
                        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
                    created_at_s: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                    expires_at_s: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
                })
            })?;
            rows.collect()
        })
    }

    async fn mark_expired(&self, upload_id: &str, now_s: u64) -> Result<bool, StoreError> {
        self.with("mark_expired", |c| {
            c.execute(sql::MARK_EXPIRED, params![upload_id, unix_i64(now_s)])
                .map(|n| n == 1)
        })
    }

    async fn upload(&self, upload_id: &str) -> Result<Option<UploadRow>, StoreError> {
        self.with("upload", |c| {
            c.query_row(sql::UPLOAD, [upload_id], |r| {
                Ok(UploadRow {
                    project: r.get(0)?,
                    manifests: serde_json::from_str(&r.get::<_, String>(1)?)
                        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
                    completed: r.get(2)?,
                    job_id: r.get(3)?,
                })
            })
            .optional()
        })
    }

    async fn complete_upload(&self, upload_id: &str, now_s: u64) -> Result<bool, StoreError> {
        self.with("complete_upload", |c| {
            let tx = c.transaction()?;
            let marked = tx.execute(sql::MARK_COMPLETED, params![upload_id, unix_i64(now_s)])?;
            if marked == 1 {
                let json: String = tx.query_row(
                    "SELECT manifests FROM uploads WHERE upload_id = ?1",
                    [upload_id],
                    |r| r.get(0),
                )?;
                let manifests: Vec<Manifest> = serde_json::from_str(&json)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                for m in &manifests {
                    let gps = m.exif.gps;
                    tx.execute(
                        sql::INSERT_IMAGE,
                        params![
                            m.image_id.as_str(),
                            m.project.as_str(),
                            upload_id,
                            m.date.to_string(),
                            gps.map(|g| g.latitude),
                            gps.map(|g| g.longitude),
                            serde_json::to_string(m).map_err(|e| {
                                rusqlite::Error::ToSqlConversionFailure(Box::new(e))
                            })?,
                        ],
                    )?;
                }
            }
            tx.commit()?;
            Ok(marked == 1)
        })
    }

    async fn set_job(&self, upload_id: &str, job_id: &str) -> Result<bool, StoreError> {
        self.with("set_job", |c| {
            c.execute(sql::SET_JOB, params![upload_id, job_id])
                .map(|n| n == 1)
        })
    }

    async fn search(&self, q: &ImageQuery) -> Result<Vec<Manifest>, StoreError> {
        let bbox = q.bbox;
        self.with("search", |c| {
            let mut statement = c.prepare_cached(sql::SEARCH)?;
            let rows = statement.query_map(
                params![
                    q.project.as_ref().map(|p| p.as_str().to_owned()),
                    q.from.map(|d| d.to_string()),
                    q.to.map(|d| d.to_string()),
                    bbox.map(|b| b.min_lon),
                    bbox.map(|b| b.min_lat),
                    bbox.map(|b| b.max_lon),
                    bbox.map(|b| b.max_lat),
                    q.cursor.as_ref().map(|c| c.date.to_string()),
                    q.cursor.as_ref().map(|c| c.image_id.as_str().to_owned()),
                    i64::from(q.limit) + 1,
                ],
                |r| manifest(&r.get::<_, String>(0)?),
            )?;
            rows.collect()
        })
    }

    async fn image(&self, image_id: &str) -> Result<Option<Manifest>, StoreError> {
        self.with("image", |c| {
            c.query_row(sql::IMAGE, [image_id], |r| {
                manifest(&r.get::<_, String>(0)?)
            })
            .optional()
        })
    }

    async fn images(&self, image_ids: &[String]) -> Result<Vec<Manifest>, StoreError> {
        let ids = serde_json::to_string(image_ids).expect("strings serialise");
        self.with("images", |c| {
            let mut statement = c.prepare_cached(sql::IMAGES)?;
            let rows = statement.query_map([ids], |r| manifest(&r.get::<_, String>(0)?))?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_passes_the_store_conformance_suite() {
        let store = SqliteStore::in_memory().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(crate::conformance(&store)).unwrap();
    }
}
