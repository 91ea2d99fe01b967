//! Object storage for the workers: the only module that moves objects, through the
//! `object_store` crate (S3 and S3-compatible servers, or a local folder in tests). Objects
//! are streamed to and from files, never held whole: a download hashes as it writes, an
//! upload over 10 MiB goes as a multipart upload.

use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path as Key;
use object_store::{Attribute, Attributes, ObjectMeta, ObjectStore, PutOptions, PutPayload};
use sha2::Digest as _;
use tessera_core::Sha256Digest;
use tessera_core::presign::{Addressing, StorageTarget};
use tokio::io::AsyncWriteExt as _;

/// Why an object could not be moved.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// There is no object at `key`.
    #[error("{key}: no such object")]
    NotFound {
        /// The key.
        key: String,
    },
    /// Storage or the network failed; trying again may succeed.
    #[error("{key}: {detail}")]
    Storage {
        /// The key.
        key: String,
        /// What failed.
        detail: String,
    },
    /// The object is larger than the caller takes.
    #[error("{key}: {size} bytes, over the limit of {max} bytes")]
    TooLarge {
        /// The key.
        key: String,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl ObjectError {
    /// Whether another attempt may succeed (a missing object will stay missing).
    #[must_use]
    pub const fn is_retryable(&self) -> bool {
        !matches!(self, Self::NotFound { .. } | Self::TooLarge { .. })
    }

    fn of(key: &str, e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => Self::NotFound {
                key: key.to_owned(),
            },
            other => Self::Storage {
                key: key.to_owned(),
                detail: other.to_string(),
            },
        }
    }
}

fn file_error(path: &Path) -> impl FnOnce(std::io::Error) -> ObjectError + '_ {
    move |source| ObjectError::File {
        path: path.display().to_string(),
        source,
    }
}

/// A bucket.
#[derive(Debug, Clone)]
pub struct Objects(Arc<dyn ObjectStore>);

/// What storage says of an object: a HEAD, or one entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its key.
    pub key: String,
    /// Its length in bytes.
    pub size_bytes: u64,
    /// Its ETag without quotes, when storage gives one.
    pub etag: Option<String>,
    /// When it was last written.
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

impl From<ObjectMeta> for ObjectInfo {
    fn from(meta: ObjectMeta) -> Self {
        Self {
            key: meta.location.to_string(),
            size_bytes: meta.size,
            etag: meta.e_tag.map(|e| e.trim_matches('"').to_owned()),
            last_modified: meta.last_modified,
        }
    }
}

impl Objects {
    /// The bucket of `target` (the edge's `TESSERA_S3_*` configuration).
    ///
    /// # Errors
    /// When `object_store` refuses the configuration.
    pub fn s3(target: &StorageTarget) -> anyhow::Result<Self> {
        let store = AmazonS3Builder::new()
            .with_endpoint(&target.endpoint)
            .with_bucket_name(&target.bucket)
            .with_region(&target.region)
            .with_access_key_id(&target.access_key_id)
            .with_secret_access_key(&target.secret_access_key)
            .with_virtual_hosted_style_request(target.addressing == Addressing::VirtualHost)
            .with_allow_http(target.endpoint.starts_with("http://"))
            .build()?;
        Ok(Self(Arc::new(store)))
    }

    /// A local folder as a bucket (keys are relative paths under it).
    ///
    /// # Errors
    /// When the folder cannot be created.
    pub fn folder(root: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)?;
        Ok(Self(Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(root)?,
        )))
    }

    /// Streams the object `key` into the file `to` (replaced), returning its SHA-256.
    ///
    /// # Errors
    /// [`ObjectError`]; [`ObjectError::TooLarge`] when storage says the object is over
    /// `max_bytes`, before any byte is read.
    pub async fn download(
        &self,
        key: &str,
        to: &Path,
        max_bytes: u64,
    ) -> Result<Sha256Digest, ObjectError> {
        let got = self
            .0
            .get(&Key::from(key))
            .await
            .map_err(|e| ObjectError::of(key, e))?;
        if got.meta.size > max_bytes {
            return Err(ObjectError::TooLarge {
                key: key.to_owned(),
                size: got.meta.size,
                max: max_bytes,
            });
        }
        let mut file = tokio::fs::File::create(to).await.map_err(file_error(to))?;
        let mut hasher = sha2::Sha256::new();
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ObjectError::of(key, e))?;
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(file_error(to))?;
        }
        file.flush().await.map_err(file_error(to))?;
        Ok(Sha256Digest::from_bytes(hasher.finalize().into()))
    }

    /// Whether storage answers: a HEAD of a key that need not exist (found or not found both
    /// say it is reachable and the credentials work).
    ///
    /// # Errors
    /// [`ObjectError::Storage`] when it does not answer or refuses.
    pub async fn reachable(&self) -> Result<(), ObjectError> {
        const PROBE: &str = "tessera-ready-probe";
        match self.0.head(&Key::from(PROBE)).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(ObjectError::of(PROBE, e)),
        }
    }

    /// The object `key`, whole (for small objects: sidecars).
    ///
    /// # Errors
    /// [`ObjectError`].
    pub async fn get(&self, key: &str) -> Result<bytes::Bytes, ObjectError> {
        let got = self
            .0
            .get(&Key::from(key))
            .await
            .map_err(|e| ObjectError::of(key, e))?;
        got.bytes().await.map_err(|e| ObjectError::of(key, e))
    }

    /// Writes `bytes` at `key` (replacing it).
    ///
    /// # Errors
    /// [`ObjectError`].
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), ObjectError> {
        self.0
            .put(&Key::from(key), PutPayload::from(bytes))
            .await
            .map_err(|e| ObjectError::of(key, e))?;
        Ok(())
    }

    /// Writes `bytes` at `key` (replacing it) with the media type `content_type`.
    ///
    /// # Errors
    /// [`ObjectError`].
    pub async fn put_typed(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<(), ObjectError> {
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, content_type.to_owned().into());
        let options = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        self.0
            .put_opts(&Key::from(key), PutPayload::from(bytes), options)
            .await
            .map_err(|e| ObjectError::of(key, e))?;
        Ok(())
    }

    /// What storage says of the object `key` (a HEAD).
    ///
    /// # Errors
    /// [`ObjectError`]; [`ObjectError::NotFound`] when there is none.
    pub async fn head(&self, key: &str) -> Result<ObjectInfo, ObjectError> {
        let meta = self
            .0
            .head(&Key::from(key))
            .await
            .map_err(|e| ObjectError::of(key, e))?;
        Ok(ObjectInfo::from(meta))
    }

    /// Every object under `prefix` (a folder: `original-uploads/`), as storage lists them,
    /// page by page.
    pub fn list(
        &self,
        prefix: &str,
    ) -> impl futures_util::Stream<Item = Result<ObjectInfo, ObjectError>> + use<> {
        let prefix_key = Key::from(prefix);
        let prefix = prefix.to_owned();
        self.0.list(Some(&prefix_key)).map(move |item| {
            item.map(ObjectInfo::from)
                .map_err(|e| ObjectError::of(&prefix, e))
        })
    }

    /// A writer of the object `key` from chunks as they come (a posted file): one PUT up to
    /// 10 MiB, a multipart upload of 10 MiB parts above, two in flight, so memory holds at
    /// most about 30 MiB of it. Nothing is stored under `key` until [`ObjectWriter::finish`];
    /// [`ObjectWriter::abort`] drops what was sent.
    #[must_use]
    pub fn writer(&self, key: &str) -> ObjectWriter {
        ObjectWriter {
            key: key.to_owned(),
            writer: BufWriter::with_capacity(Arc::clone(&self.0), Key::from(key), 10 << 20)
                .with_max_concurrency(2),
        }
    }

    /// Streams the file `from` to `key` (replacing it): one PUT up to 10 MiB, a multipart
    /// upload above.
    ///
    /// # Errors
    /// [`ObjectError`].
    pub async fn upload(&self, from: &Path, key: &str) -> Result<(), ObjectError> {
        let mut file = tokio::fs::File::open(from)
            .await
            .map_err(file_error(from))?;
        let mut writer = BufWriter::with_capacity(Arc::clone(&self.0), Key::from(key), 10 << 20);
        tokio::io::copy(&mut file, &mut writer)
            .await
            .map_err(|e| ObjectError::Storage {
                key: key.to_owned(),
                detail: e.to_string(),
            })?;
        writer.shutdown().await.map_err(|e| ObjectError::Storage {
            key: key.to_owned(),
            detail: e.to_string(),
        })
    }
}

/// An object being written chunk by chunk ([`Objects::writer`]).
pub struct ObjectWriter {
    key: String,
    writer: BufWriter,
}

impl std::fmt::Debug for ObjectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectWriter")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ObjectWriter {
    /// The object's key.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Sends `chunk` on.
    ///
    /// # Errors
    /// [`ObjectError::Storage`].
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), ObjectError> {
        self.writer
            .write_all(chunk)
            .await
            .map_err(|e| self.storage_error(&e))
    }

    /// Stores the object.
    ///
    /// # Errors
    /// [`ObjectError::Storage`].
    pub async fn finish(mut self) -> Result<(), ObjectError> {
        self.writer
            .shutdown()
            .await
            .map_err(|e| self.storage_error(&e))
    }

    /// Drops what was sent (a multipart upload is aborted); nothing is stored.
    pub async fn abort(mut self) {
        if let Err(e) = self.writer.abort().await {
            tracing::warn!(key = %self.key, error = %e, "aborting a partial object");
        }
    }

    fn storage_error(&self, e: &dyn std::fmt::Display) -> ObjectError {
        ObjectError::Storage {
            key: self.key.clone(),
            detail: e.to_string(),
        }
    }
}

/// Jobs posted with their files stream them to the bucket ([`tessera_edge::posted`]).
impl tessera_edge::posted::FileSink for Objects {
    type Writer = ObjectWriter;

    fn create(&self, key: &str) -> ObjectWriter {
        self.writer(key)
    }

    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), String> {
        Objects::put(self, key, body)
            .await
            .map_err(|e| e.to_string())
    }
}

impl tessera_edge::posted::FileWriter for ObjectWriter {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), String> {
        Self::write(self, chunk).await.map_err(|e| e.to_string())
    }

    async fn finish(self) -> Result<(), String> {
        Self::finish(self).await.map_err(|e| e.to_string())
    }

    async fn abort(self) {
        Self::abort(self).await;
    }
}
