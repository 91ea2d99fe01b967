//! The native hosts' metadata database, chosen by its URL: SQLite (a file, the local default)
//! or PostgreSQL (shared by several edge instances and the batch backend's arrivals). D1 is
//! the Workers host's. Each is a [`Store`] passing [`crate::conformance`].

use serde::Serialize;
use tessera_core::search::ImageQuery;
use tessera_core::{Manifest, Sha256Digest};

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

/// One `uploads` row with every column, as [`copy_records`] copies it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UploadRecord {
    /// The upload.
    pub upload_id: String,
    /// Its project.
    pub project: String,
    /// Its planned manifests, the JSON text as stored.
    pub manifests: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, once completed.
    pub completed_at: Option<i64>,
    /// Its job, once triggered.
    pub job_id: Option<String>,
    /// Unix seconds: when its presigned URLs expire.
    pub expires_at: Option<i64>,
    /// Unix seconds, once `upload.expired` was announced.
    pub expired_at: Option<i64>,
}

/// One `images` row with every column, as [`copy_records`] copies it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageRecord {
    /// The image.
    pub image_id: String,
    /// Its project.
    pub project: String,
    /// The upload that recorded it.
    pub upload_id: String,
    /// `YYYY-MM-DD`.
    pub acquired_on: String,
    /// WGS 84 degrees.
    pub latitude: Option<f64>,
    /// WGS 84 degrees.
    pub longitude: Option<f64>,
    /// The manifest, the JSON text as stored.
    pub manifest: String,
}

/// A record's checksum: SHA-256 of its columns as JSON in declaration order.
fn checksum(record: &impl Serialize) -> Sha256Digest {
    Sha256Digest::of(&serde_json::to_vec(record).expect("records serialise"))
}

/// Records per page of [`copy_records`] and [`verify_copy`].
const PAGE: u32 = 500;

/// What [`copy_records`] copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    /// `uploads` rows written.
    pub uploads: u64,
    /// `images` rows written.
    pub images: u64,
}

/// A record that differs after a copy ([`verify_copy`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// `uploads` or `images`.
    pub table: &'static str,
    /// The record's id.
    pub id: String,
    /// `missing` at the destination, `extra` there, or `differs` (another checksum).
    pub problem: &'static str,
}

/// Copies every upload, then every image, from `from` to `to`, page by page in id order:
/// a record already at the destination is overwritten with the source's, so running it again
/// (after an interruption, or to catch up) is safe. `progress` hears each page: the table and
/// the records copied of it so far.
///
/// # Errors
/// Either store's.
pub async fn copy_records(
    from: &MetadataStore,
    to: &MetadataStore,
    mut progress: impl FnMut(&'static str, u64),
) -> Result<Copied, StoreError> {
    let mut copied = Copied::default();
    let mut after = String::new();
    loop {
        let page = from.uploads_after(&after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after.clone_from(&last.upload_id);
        to.put_uploads(&page).await?;
        copied.uploads += page.len() as u64;
        progress("uploads", copied.uploads);
    }
    after.clear();
    loop {
        let page = from.images_after(&after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after.clone_from(&last.image_id);
        to.put_images(&page).await?;
        copied.images += page.len() as u64;
        progress("images", copied.images);
    }
    Ok(copied)
}

/// Compares every record of `from` with `to` by id and checksum: empty when `to` holds
/// exactly `from`'s records (counts and contents).
///
/// # Errors
/// Either store's.
pub async fn verify_copy(
    from: &MetadataStore,
    to: &MetadataStore,
) -> Result<Vec<Mismatch>, StoreError> {
    let mut mismatches = Vec::new();
    let (a, b) = (
        digests_of_uploads(from).await?,
        digests_of_uploads(to).await?,
    );
    compare("uploads", &a, &b, &mut mismatches);
    let (a, b) = (digests_of_images(from).await?, digests_of_images(to).await?);
    compare("images", &a, &b, &mut mismatches);
    Ok(mismatches)
}

type Digests = std::collections::BTreeMap<String, Sha256Digest>;

async fn digests_of_uploads(store: &MetadataStore) -> Result<Digests, StoreError> {
    let mut digests = Digests::new();
    let mut after = String::new();
    loop {
        let page = store.uploads_after(&after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after.clone_from(&last.upload_id);
        digests.extend(page.iter().map(|r| (r.upload_id.clone(), checksum(r))));
    }
    Ok(digests)
}

async fn digests_of_images(store: &MetadataStore) -> Result<Digests, StoreError> {
    let mut digests = Digests::new();
    let mut after = String::new();
    loop {
        let page = store.images_after(&after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after.clone_from(&last.image_id);
        digests.extend(page.iter().map(|r| (r.image_id.clone(), checksum(r))));
    }
    Ok(digests)
}

fn compare(table: &'static str, from: &Digests, to: &Digests, out: &mut Vec<Mismatch>) {
    for (id, digest) in from {
        match to.get(id) {
            None => out.push(Mismatch {
                table,
                id: id.clone(),
                problem: "missing",
            }),
            Some(other) if other != digest => {
                out.push(Mismatch {
                    table,
                    id: id.clone(),
                    problem: "differs",
                });
            }
            Some(_) => {}
        }
    }
    for id in to.keys().filter(|id| !from.contains_key(*id)) {
        out.push(Mismatch {
            table,
            id: id.clone(),
            problem: "extra",
        });
    }
}

impl MetadataStore {
    /// Up to `limit` uploads with ids after `after` (`""`: from the first), in byte order of
    /// their ids.
    ///
    /// # Errors
    /// On a database error.
    pub async fn uploads_after(
        &self,
        after: &str,
        limit: u32,
    ) -> Result<Vec<UploadRecord>, StoreError> {
        match self {
            Self::Sqlite(s) => s.uploads_after(after, limit),
            Self::Postgres(p) => p.uploads_after(after, limit).await,
        }
    }

    /// Up to `limit` images with ids after `after`, in byte order of their ids.
    ///
    /// # Errors
    /// On a database error.
    pub async fn images_after(
        &self,
        after: &str,
        limit: u32,
    ) -> Result<Vec<ImageRecord>, StoreError> {
        match self {
            Self::Sqlite(s) => s.images_after(after, limit),
            Self::Postgres(p) => p.images_after(after, limit).await,
        }
    }

    /// Writes `records`, replacing those with the same ids, in one transaction.
    ///
    /// # Errors
    /// On a database error.
    pub async fn put_uploads(&self, records: &[UploadRecord]) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.put_uploads(records),
            Self::Postgres(p) => p.put_uploads(records).await,
        }
    }

    /// Writes `records` (their uploads must be there), replacing those with the same ids,
    /// in one transaction.
    ///
    /// # Errors
    /// On a database error.
    pub async fn put_images(&self, records: &[ImageRecord]) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.put_images(records),
            Self::Postgres(p) => p.put_images(records).await,
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
