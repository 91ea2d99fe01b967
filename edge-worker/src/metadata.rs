//! The native hosts' metadata database, chosen by its URL: SQLite (a file, the local default)
//! or PostgreSQL (shared by several edge instances and the batch backend's arrivals). D1 is
//! the Workers host's. Each is a [`Store`] passing [`crate::conformance`].

use tessera_core::Manifest;
use tessera_core::search::ImageQuery;

use crate::postgres::PostgresStore;
use crate::sqlite::SqliteStore;
use crate::{ExpiredUpload, Store, StoreError, UploadRow};

/// A native metadata store.
#[derive(Debug)]
pub enum MetadataStore {
    /// A SQLite file.
    Sqlite(SqliteStore),
    /// A PostgreSQL database.
    Postgres(PostgresStore),
}

impl MetadataStore {
    /// Opens `url`: `postgres://…` (or `postgresql://…`), else `sqlite:PATH` or a bare path
    /// of a SQLite file (created if missing). Pending migrations are applied.
    ///
    /// # Errors
    /// When the database cannot be opened or reached, or a migration fails.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(PostgresStore::connect(url).await?));
        }
        let path = url.strip_prefix("sqlite:").unwrap_or(url);
        Ok(Self::Sqlite(SqliteStore::open(std::path::Path::new(path))?))
    }

    /// Uploads by state, for `/metrics`: `planned`, `completed`, `expired`.
    ///
    /// # Errors
    /// On a database error.
    pub async fn upload_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        match self {
            Self::Sqlite(s) => s.upload_counts(),
            Self::Postgres(p) => p.upload_counts().await,
        }
    }
}

/// Calls `$method` on whichever store it is.
macro_rules! each {
    ($self:ident.$method:ident($($arg:expr),*)) => {
        match $self {
            Self::Sqlite(s) => s.$method($($arg),*).await,
            Self::Postgres(p) => p.$method($($arg),*).await,
        }
    };
}

impl Store for MetadataStore {
    async fn create_upload(
        &self,
        upload_id: &str,
        project: &str,
        manifests: &[Manifest],
        now_s: u64,
        expires_at_s: u64,
    ) -> Result<(), StoreError> {
        each!(self.create_upload(upload_id, project, manifests, now_s, expires_at_s))
    }

    async fn upload(&self, upload_id: &str) -> Result<Option<UploadRow>, StoreError> {
        each!(self.upload(upload_id))
    }

    async fn complete_upload(&self, upload_id: &str, now_s: u64) -> Result<bool, StoreError> {
        each!(self.complete_upload(upload_id, now_s))
    }

    async fn expired_uploads(
        &self,
        now_s: u64,
        limit: u32,
    ) -> Result<Vec<ExpiredUpload>, StoreError> {
        each!(self.expired_uploads(now_s, limit))
    }

    async fn mark_expired(&self, upload_id: &str, now_s: u64) -> Result<bool, StoreError> {
        each!(self.mark_expired(upload_id, now_s))
    }

    async fn set_job(&self, upload_id: &str, job_id: &str) -> Result<bool, StoreError> {
        each!(self.set_job(upload_id, job_id))
    }

    async fn search(&self, query: &ImageQuery) -> Result<Vec<Manifest>, StoreError> {
        each!(self.search(query))
    }

    async fn image(&self, image_id: &str) -> Result<Option<Manifest>, StoreError> {
        each!(self.image(image_id))
    }

    async fn images(&self, image_ids: &[String]) -> Result<Vec<Manifest>, StoreError> {
        each!(self.images(image_ids))
    }
}
