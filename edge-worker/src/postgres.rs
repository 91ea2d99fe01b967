//! The native [`Store`] on PostgreSQL, through sqlx: several `tessera edge` instances (and the
//! batch backend's arrivals) share one database. The schema is `migrations-postgres/`, applied
//! once each, recorded in `edge_migrations` (not sqlx's own table, which the batch backend's
//! job store uses when both live in one database). Every value is a bound parameter; the
//! only SQL text is below, the same statements as [`crate::store`]'s in PostgreSQL's dialect.

use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Row as _};
use tessera_core::Manifest;
use tessera_core::search::ImageQuery;

use crate::metadata::{ImageRecord, UploadRecord};
use crate::{ExpiredUpload, Store, StoreError, UploadRow};

/// The migrations, in order.
pub const MIGRATIONS: &[(&str, &str)] = &[(
    "0001_init.sql",
    include_str!("../migrations-postgres/0001_init.sql"),
)];

mod sql {
    pub(super) const INSERT_UPLOAD: &str = "INSERT INTO uploads \
         (upload_id, project, manifests, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)";
    pub(super) const EXPIRED_UPLOADS: &str = "SELECT upload_id, project, manifests, created_at, expires_at \
         FROM uploads WHERE completed_at IS NULL AND expired_at IS NULL AND expires_at <= $1 \
         ORDER BY expires_at, upload_id LIMIT $2";
    pub(super) const MARK_EXPIRED: &str =
        "UPDATE uploads SET expired_at = $2 WHERE upload_id = $1 AND expired_at IS NULL";
    pub(super) const UPLOAD: &str = "SELECT project, manifests, completed_at IS NOT NULL AS completed, job_id \
         FROM uploads WHERE upload_id = $1";
    pub(super) const MARK_COMPLETED: &str = "UPDATE uploads SET completed_at = $2 \
         WHERE upload_id = $1 AND completed_at IS NULL RETURNING manifests";
    pub(super) const INSERT_IMAGE: &str = "INSERT INTO images \
         (image_id, project, upload_id, acquired_on, latitude, longitude, manifest) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (image_id) DO NOTHING";
    pub(super) const SET_JOB: &str =
        "UPDATE uploads SET job_id = $2 WHERE upload_id = $1 AND job_id IS NULL";
    pub(super) const IMAGE: &str = "SELECT manifest FROM images WHERE image_id = $1";
    pub(super) const IMAGES: &str = "SELECT manifest FROM images WHERE image_id = ANY($1)";
    /// As [`crate::store`]'s search: keyset-paginated on (acquired_on, image_id), a NULL
    /// parameter disables its filter, min_lon > max_lon crosses the antimeridian.
    pub(super) const SEARCH: &str = "
SELECT manifest FROM images
WHERE ($1::text IS NULL OR project = $1)
  AND ($2::text IS NULL OR acquired_on >= $2)
  AND ($3::text IS NULL OR acquired_on <= $3)
  AND ($4::float8 IS NULL OR (
        latitude BETWEEN $5 AND $7
        AND CASE WHEN $4 <= $6 THEN longitude BETWEEN $4 AND $6
                 ELSE (longitude >= $4 OR longitude <= $6) END))
  AND ($8::text IS NULL OR acquired_on > $8 OR (acquired_on = $8 AND image_id > $9))
ORDER BY acquired_on, image_id
LIMIT $10";
    pub(super) const UPSERT_UPLOAD: &str = "INSERT INTO uploads \
         (upload_id, project, manifests, created_at, completed_at, job_id, expires_at, expired_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (upload_id) DO UPDATE SET \
         project = excluded.project, manifests = excluded.manifests, created_at = excluded.created_at, \
         completed_at = excluded.completed_at, job_id = excluded.job_id, \
         expires_at = excluded.expires_at, expired_at = excluded.expired_at";
    pub(super) const UPSERT_IMAGE: &str = "INSERT INTO images \
         (image_id, project, upload_id, acquired_on, latitude, longitude, manifest) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (image_id) DO UPDATE SET \
         project = excluded.project, upload_id = excluded.upload_id, \
         acquired_on = excluded.acquired_on, latitude = excluded.latitude, \
         longitude = excluded.longitude, manifest = excluded.manifest";
    /// Byte order of ids (`COLLATE "C"`), as SQLite's, so that pages of both stores align.
    pub(super) const UPLOADS_AFTER: &str = "SELECT upload_id, project, manifests, created_at, \
         completed_at, job_id, expires_at, expired_at FROM uploads \
         WHERE upload_id COLLATE \"C\" > $1 ORDER BY upload_id COLLATE \"C\" LIMIT $2";
    pub(super) const IMAGES_AFTER: &str = "SELECT image_id, project, upload_id, acquired_on, \
         latitude, longitude, manifest FROM images \
         WHERE image_id COLLATE \"C\" > $1 ORDER BY image_id COLLATE \"C\" LIMIT $2";
    pub(super) const UPLOAD_COUNTS: &str = "SELECT CASE WHEN completed_at IS NOT NULL THEN 'completed' \
         WHEN expired_at IS NOT NULL THEN 'expired' ELSE 'planned' END AS state, \
         COUNT(*) AS n FROM uploads GROUP BY 1";
}

/// PostgreSQL metadata store: a connection pool.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

fn failed(operation: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| StoreError::Database {
        store: "postgres",
        operation,
        detail: e.to_string(),
    }
}

fn corrupt(what: &'static str) -> impl Fn(serde_json::Error) -> StoreError {
    move |e| StoreError::Corrupt {
        store: "postgres",
        what,
        detail: e.to_string(),
    }
}

/// Unix seconds as PostgreSQL's BIGINT.
fn unix_i64(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

fn manifest_of(row: &PgRow) -> Result<Manifest, StoreError> {
    let json: String = row.try_get("manifest").map_err(failed("read"))?;
    serde_json::from_str(&json).map_err(corrupt("manifest"))
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…`) and applies pending migrations, one transaction
    /// each; concurrent starts wait on an advisory lock so each is applied once.
    ///
    /// # Errors
    /// When the database cannot be reached or a migration fails.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(url)
            .await
            .map_err(failed("connect"))?;
        let mut tx = pool.begin().await.map_err(failed("migrate"))?;
        // One migrator at a time, across processes (a constant key: "tessera-edge").
        sqlx::query("SELECT pg_advisory_xact_lock(7415263101)")
            .execute(&mut *tx)
            .await
            .map_err(failed("migrate"))?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS edge_migrations (
               name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .execute(&mut *tx)
        .await
        .map_err(failed("migrate"))?;
        for (name, migration) in MIGRATIONS {
            let applied = sqlx::query("SELECT 1 FROM edge_migrations WHERE name = $1")
                .bind(*name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(failed("migrate"))?
                .is_some();
            if !applied {
                sqlx::raw_sql(AssertSqlSafe(*migration))
                    .execute(&mut *tx)
                    .await
                    .map_err(failed("migrate"))?;
                sqlx::query("INSERT INTO edge_migrations (name) VALUES ($1)")
                    .bind(*name)
                    .execute(&mut *tx)
                    .await
                    .map_err(failed("migrate"))?;
            }
        }
        tx.commit().await.map_err(failed("migrate"))?;
        Ok(Self { pool })
    }

    /// Uploads by state, for `/metrics` (as [`crate::sqlite::SqliteStore::upload_counts`]).
    ///
    /// # Errors
    /// On a database error.
    pub async fn upload_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(sql::UPLOAD_COUNTS)
            .fetch_all(&self.pool)
            .await
            .map_err(failed("upload_counts"))?;
        rows.iter()
            .map(|r| Ok((r.try_get("state")?, r.try_get("n")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(failed("upload_counts"))
    }
}

impl PostgresStore {
    /// Up to `limit` uploads after `after`, in id byte order.
    ///
    /// # Errors
    /// On a database error.
    pub async fn uploads_after(
        &self,
        after: &str,
        limit: u32,
    ) -> Result<Vec<UploadRecord>, StoreError> {
        let rows = sqlx::query(sql::UPLOADS_AFTER)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(failed("uploads_after"))?;
        rows.iter()
            .map(|r| {
                Ok(UploadRecord {
                    upload_id: r.try_get("upload_id")?,
                    project: r.try_get("project")?,
                    manifests: r.try_get("manifests")?,
                    created_at: r.try_get("created_at")?,
                    completed_at: r.try_get("completed_at")?,
                    job_id: r.try_get("job_id")?,
                    expires_at: r.try_get("expires_at")?,
                    expired_at: r.try_get("expired_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(failed("uploads_after"))
    }

    /// Up to `limit` images after `after`, in id byte order.
    ///
    /// # Errors
    /// On a database error.
    pub async fn images_after(
        &self,
        after: &str,
        limit: u32,
    ) -> Result<Vec<ImageRecord>, StoreError> {
        let rows = sqlx::query(sql::IMAGES_AFTER)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(failed("images_after"))?;
        rows.iter()
            .map(|r| {
                Ok(ImageRecord {
                    image_id: r.try_get("image_id")?,
                    project: r.try_get("project")?,
                    upload_id: r.try_get("upload_id")?,
                    acquired_on: r.try_get("acquired_on")?,
                    latitude: r.try_get("latitude")?,
                    longitude: r.try_get("longitude")?,
                    manifest: r.try_get("manifest")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(failed("images_after"))
    }

    /// Writes `records` over those with the same ids, in one transaction.
    ///
    /// # Errors
    /// On a database error.
    pub async fn put_uploads(&self, records: &[UploadRecord]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(failed("put_uploads"))?;
        for r in records {
            sqlx::query(sql::UPSERT_UPLOAD)
                .bind(&r.upload_id)
                .bind(&r.project)
                .bind(&r.manifests)
                .bind(r.created_at)
                .bind(r.completed_at)
                .bind(&r.job_id)
                .bind(r.expires_at)
                .bind(r.expired_at)
                .execute(&mut *tx)
                .await
                .map_err(failed("put_uploads"))?;
        }
        tx.commit().await.map_err(failed("put_uploads"))
    }

    /// Writes `records` over those with the same ids, in one transaction.
    ///
    /// # Errors
    /// On a database error (an image whose upload is missing).
    pub async fn put_images(&self, records: &[ImageRecord]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(failed("put_images"))?;
        for r in records {
            sqlx::query(sql::UPSERT_IMAGE)
                .bind(&r.image_id)
                .bind(&r.project)
                .bind(&r.upload_id)
                .bind(&r.acquired_on)
                .bind(r.latitude)
                .bind(r.longitude)
                .bind(&r.manifest)
                .execute(&mut *tx)
                .await
                .map_err(failed("put_images"))?;
        }
        tx.commit().await.map_err(failed("put_images"))
    }
}

impl Store for PostgresStore {
    async fn create_upload(
        &self,
        upload_id: &str,
        project: &str,
        manifests: &[Manifest],
        now_s: u64,
        expires_at_s: u64,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(manifests).expect("manifests serialise");
        sqlx::query(sql::INSERT_UPLOAD)
            .bind(upload_id)
            .bind(project)
            .bind(json)
            .bind(unix_i64(now_s))
            .bind(unix_i64(expires_at_s))
            .execute(&self.pool)
            .await
            .map_err(failed("create_upload"))?;
        Ok(())
    }

    async fn upload(&self, upload_id: &str) -> Result<Option<UploadRow>, StoreError> {
        let Some(row) = sqlx::query(sql::UPLOAD)
            .bind(upload_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("upload"))?
        else {
            return Ok(None);
        };
        let manifests: String = row.try_get("manifests").map_err(failed("upload"))?;
        Ok(Some(UploadRow {
            project: row.try_get("project").map_err(failed("upload"))?,
            manifests: serde_json::from_str(&manifests).map_err(corrupt("manifests"))?,
            completed: row.try_get("completed").map_err(failed("upload"))?,
            job_id: row.try_get("job_id").map_err(failed("upload"))?,
        }))
    }

    async fn complete_upload(&self, upload_id: &str, now_s: u64) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(failed("complete_upload"))?;
        let Some(row) = sqlx::query(sql::MARK_COMPLETED)
            .bind(upload_id)
            .bind(unix_i64(now_s))
            .fetch_optional(&mut *tx)
            .await
            .map_err(failed("complete_upload"))?
        else {
            return Ok(false);
        };
        let json: String = row
            .try_get("manifests")
            .map_err(failed("complete_upload"))?;
        let manifests: Vec<Manifest> = serde_json::from_str(&json).map_err(corrupt("manifests"))?;
        for m in &manifests {
            let gps = m.exif.gps;
            sqlx::query(sql::INSERT_IMAGE)
                .bind(m.image_id.as_str())
                .bind(m.project.as_str())
                .bind(upload_id)
                .bind(m.date.to_string())
                .bind(gps.map(|g| g.latitude))
                .bind(gps.map(|g| g.longitude))
                .bind(serde_json::to_string(m).expect("manifests serialise"))
                .execute(&mut *tx)
                .await
                .map_err(failed("complete_upload"))?;
        }
        tx.commit().await.map_err(failed("complete_upload"))?;
        Ok(true)
    }

    async fn expired_uploads(
        &self,
        now_s: u64,
        limit: u32,
    ) -> Result<Vec<ExpiredUpload>, StoreError> {
        let rows = sqlx::query(sql::EXPIRED_UPLOADS)
            .bind(unix_i64(now_s))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(failed("expired_uploads"))?;
        rows.iter()
            .map(|r| {
                let manifests: String =
                    r.try_get("manifests").map_err(failed("expired_uploads"))?;
                let seconds = |column: &str| -> Result<u64, StoreError> {
                    let v: i64 = r.try_get(column).map_err(failed("expired_uploads"))?;
                    Ok(u64::try_from(v).unwrap_or(0))
                };
                Ok(ExpiredUpload {
                    upload_id: r.try_get("upload_id").map_err(failed("expired_uploads"))?,
                    project: r.try_get("project").map_err(failed("expired_uploads"))?,
                    manifests: serde_json::from_str(&manifests).map_err(corrupt("manifests"))?,
                    created_at_s: seconds("created_at")?,
                    expires_at_s: seconds("expires_at")?,
                })
            })
            .collect()
    }

    async fn mark_expired(&self, upload_id: &str, now_s: u64) -> Result<bool, StoreError> {
        let done = sqlx::query(sql::MARK_EXPIRED)
            .bind(upload_id)
            .bind(unix_i64(now_s))
            .execute(&self.pool)
            .await
            .map_err(failed("mark_expired"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_job(&self, upload_id: &str, job_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(sql::SET_JOB)
            .bind(upload_id)
            .bind(job_id)
            .execute(&self.pool)
            .await
            .map_err(failed("set_job"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn search(&self, q: &ImageQuery) -> Result<Vec<Manifest>, StoreError> {
        let bbox = q.bbox;
        let rows = sqlx::query(sql::SEARCH)
            .bind(q.project.as_ref().map(|p| p.as_str().to_owned()))
            .bind(q.from.map(|d| d.to_string()))
            .bind(q.to.map(|d| d.to_string()))
            .bind(bbox.map(|b| b.min_lon))
            .bind(bbox.map(|b| b.min_lat))
            .bind(bbox.map(|b| b.max_lon))
            .bind(bbox.map(|b| b.max_lat))
            .bind(q.cursor.as_ref().map(|c| c.date.to_string()))
            .bind(q.cursor.as_ref().map(|c| c.image_id.as_str().to_owned()))
            .bind(i64::from(q.limit) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(failed("search"))?;
        rows.iter().map(manifest_of).collect()
    }

    async fn image(&self, image_id: &str) -> Result<Option<Manifest>, StoreError> {
        let row = sqlx::query(sql::IMAGE)
            .bind(image_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("image"))?;
        row.as_ref().map(manifest_of).transpose()
    }

    async fn images(&self, image_ids: &[String]) -> Result<Vec<Manifest>, StoreError> {
        let rows = sqlx::query(sql::IMAGES)
            .bind(image_ids)
            .fetch_all(&self.pool)
            .await
            .map_err(failed("images"))?;
        rows.iter().map(manifest_of).collect()
    }
}
