//! The metadata store: the [`Store`] trait the router records uploads and images through, the
//! SQL both implementations run (D1 on Workers, SQLite natively; [`MIGRATIONS`]), and
//! [`conformance`], the one suite every implementation must pass.

use std::future::Future;

use tessera_core::Manifest;
use tessera_core::search::ImageQuery;

/// The SQL migrations, in order: applied to D1 by wrangler and to SQLite by
/// [`crate::sqlite`].
pub const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init.sql", include_str!("../migrations/0001_init.sql")),
    (
        "0002_upload_expiry.sql",
        include_str!("../migrations/0002_upload_expiry.sql"),
    ),
];

/// The SQL both stores run (D1 and SQLite), with `?N` parameters only.
pub(crate) mod sql {
    // Copies of records (`tessera migrate`), native stores only; PostgreSQL runs the same
    // text with `$N` (ids compared with `COLLATE "C"`: byte order, SQLite's default).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) const UPSERT_UPLOAD: &str = "INSERT INTO uploads \
         (upload_id, project, manifests, created_at, completed_at, job_id, expires_at, expired_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (upload_id) DO UPDATE SET \
         project = excluded.project, manifests = excluded.manifests, created_at = excluded.created_at, \
         completed_at = excluded.completed_at, job_id = excluded.job_id, \
         expires_at = excluded.expires_at, expired_at = excluded.expired_at";
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) const UPSERT_IMAGE: &str = "INSERT INTO images \
         (image_id, project, upload_id, acquired_on, latitude, longitude, manifest) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (image_id) DO UPDATE SET \
         project = excluded.project, upload_id = excluded.upload_id, \
         acquired_on = excluded.acquired_on, latitude = excluded.latitude, \
         longitude = excluded.longitude, manifest = excluded.manifest";
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) const UPLOADS_AFTER: &str = "SELECT upload_id, project, manifests, created_at, \
         completed_at, job_id, expires_at, expired_at FROM uploads \
         WHERE upload_id > ?1 ORDER BY upload_id LIMIT ?2";
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) const IMAGES_AFTER: &str = "SELECT image_id, project, upload_id, acquired_on, \
         latitude, longitude, manifest FROM images WHERE image_id > ?1 ORDER BY image_id LIMIT ?2";
    pub(crate) const INSERT_UPLOAD: &str = "INSERT INTO uploads \
         (upload_id, project, manifests, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)";
    /// Uploads whose URLs expired by ?1, neither completed nor announced, at most ?2, those
    /// expired first first.
    pub(crate) const EXPIRED_UPLOADS: &str = "SELECT upload_id, project, manifests, created_at, expires_at \
         FROM uploads WHERE completed_at IS NULL AND expired_at IS NULL AND expires_at <= ?1 \
         ORDER BY expires_at, upload_id LIMIT ?2";
    pub(crate) const MARK_EXPIRED: &str =
        "UPDATE uploads SET expired_at = ?2 WHERE upload_id = ?1 AND expired_at IS NULL";
    pub(crate) const UPLOAD: &str = "SELECT project, manifests, completed_at IS NOT NULL AS completed, job_id \
         FROM uploads WHERE upload_id = ?1";
    pub(crate) const MARK_COMPLETED: &str =
        "UPDATE uploads SET completed_at = ?2 WHERE upload_id = ?1 AND completed_at IS NULL";
    /// Idempotent: an image already recorded is left as it is.
    pub(crate) const INSERT_IMAGE: &str = "INSERT OR IGNORE INTO images \
         (image_id, project, upload_id, acquired_on, latitude, longitude, manifest) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
    pub(crate) const SET_JOB: &str =
        "UPDATE uploads SET job_id = ?2 WHERE upload_id = ?1 AND job_id IS NULL";
    pub(crate) const IMAGE: &str = "SELECT manifest FROM images WHERE image_id = ?1";
    /// The images among ?1, a JSON array of ids (one parameter however many ids: no limit
    /// on bound variables to meet).
    pub(crate) const IMAGES: &str =
        "SELECT manifest FROM images WHERE image_id IN (SELECT value FROM json_each(?1))";
    /// Images, keyset-paginated on (acquired_on, image_id). A NULL parameter disables its
    /// filter. ?4..?7 is the bounding box; min_lon > max_lon crosses the antimeridian.
    pub(crate) const SEARCH: &str = "
SELECT manifest FROM images
WHERE (?1 IS NULL OR project = ?1)
  AND (?2 IS NULL OR acquired_on >= ?2)
  AND (?3 IS NULL OR acquired_on <= ?3)
  AND (?4 IS NULL OR (
        latitude BETWEEN ?5 AND ?7
        AND CASE WHEN ?4 <= ?6 THEN longitude BETWEEN ?4 AND ?6
                 ELSE (longitude >= ?4 OR longitude <= ?6) END))
  AND (?8 IS NULL OR acquired_on > ?8 OR (acquired_on = ?8 AND image_id > ?9))
ORDER BY acquired_on, image_id
LIMIT ?10";
}

/// A failure of a store; logged, answered as `internal`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed an operation.
    #[error("{store} {operation}: {detail}")]
    Database {
        /// `sqlite` or `d1`.
        store: &'static str,
        /// What was being done, e.g. `complete_upload`.
        operation: &'static str,
        /// The database's message.
        detail: String,
    },
    /// A stored value does not parse: written by something else than this store.
    #[error("{store}: a stored {what} does not parse: {detail}")]
    Corrupt {
        /// `sqlite` or `d1`.
        store: &'static str,
        /// What, e.g. `manifest`.
        what: &'static str,
        /// The parser's message.
        detail: String,
    },
}

/// One stored upload.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadRow {
    /// The project.
    pub project: String,
    /// The planned manifests.
    pub manifests: Vec<Manifest>,
    /// Whether `complete` has recorded it.
    pub completed: bool,
    /// The triggered job, once there is one.
    pub job_id: Option<String>,
}

/// An upload whose presigned URLs expired before it was completed ([`Store::expired_uploads`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ExpiredUpload {
    /// The upload.
    pub upload_id: String,
    /// Its project.
    pub project: String,
    /// The planned manifests.
    pub manifests: Vec<Manifest>,
    /// When it was planned, Unix seconds.
    pub created_at_s: u64,
    /// When its URLs expired, Unix seconds.
    pub expires_at_s: u64,
}

/// The metadata store: D1 on Workers, SQLite natively, same SQL ([`MIGRATIONS`]). Every
/// implementation passes [`conformance`].
pub trait Store {
    /// Records a planned upload whose presigned URLs expire at `expires_at_s` (Unix
    /// seconds); an existing `upload_id` is an error.
    fn create_upload(
        &self,
        upload_id: &str,
        project: &str,
        manifests: &[Manifest],
        now_s: u64,
        expires_at_s: u64,
    ) -> impl Future<Output = Result<(), StoreError>>;
    /// One upload, if it exists.
    fn upload(
        &self,
        upload_id: &str,
    ) -> impl Future<Output = Result<Option<UploadRow>, StoreError>>;
    /// Inserts the upload's images and marks it completed, atomically. `Ok(false)` when it
    /// was already completed or does not exist (nothing is written twice).
    fn complete_upload(
        &self,
        upload_id: &str,
        now_s: u64,
    ) -> impl Future<Output = Result<bool, StoreError>>;
    /// Uploads whose URLs expired at or before `now_s`, not completed and not yet marked
    /// ([`Store::mark_expired`]): at most `limit`, those expired first first.
    fn expired_uploads(
        &self,
        now_s: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ExpiredUpload>, StoreError>>;
    /// Marks an upload's expiry announced; `Ok(false)` when it already was or does not exist.
    fn mark_expired(
        &self,
        upload_id: &str,
        now_s: u64,
    ) -> impl Future<Output = Result<bool, StoreError>>;
    /// Sets the job of an upload if it has none; `Ok(false)` if it had one.
    fn set_job(
        &self,
        upload_id: &str,
        job_id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>>;
    /// Recorded images matching the query, ordered by (date, id), at most `query.limit + 1`
    /// (so that [`tessera_core::search::cut_page`] can tell whether there is a next page).
    fn search(&self, query: &ImageQuery)
    -> impl Future<Output = Result<Vec<Manifest>, StoreError>>;
    /// One recorded image.
    fn image(&self, image_id: &str) -> impl Future<Output = Result<Option<Manifest>, StoreError>>;
    /// The recorded images among `image_ids`, in no particular order; unknown ids are left
    /// out. Callers pass at most [`IMAGES_PER_CALL`] ids.
    fn images(
        &self,
        image_ids: &[String],
    ) -> impl Future<Output = Result<Vec<Manifest>, StoreError>>;
}

/// The most ids one [`Store::images`] call takes (one query, its ids as one JSON parameter).
pub const IMAGES_PER_CALL: usize = 500;

/// A [`conformance`] check that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store conformance: {check}: {detail}")]
pub struct ConformanceFailure {
    /// Which check.
    pub check: &'static str,
    /// What was found instead.
    pub detail: String,
}

/// The project the suite records under.
pub const CONFORMANCE_PROJECT: &str = "conformance";

fn conformance_manifest(id: &str, date: &str, gps: Option<(f64, f64)>) -> Manifest {
    let gps = gps.map(
        |(latitude, longitude)| serde_json::json!({"latitude": latitude, "longitude": longitude}),
    );
    serde_json::from_value(serde_json::json!({
        "project": CONFORMANCE_PROJECT, "image_id": id, "file_name": format!("{id}.jpg"),
        "format": "jpeg", "date": date, "date_source": "exif",
        "exif": {"gps": gps}, "metadata_key": format!("metadata/{CONFORMANCE_PROJECT}/{id}.json"),
        "objects": []
    }))
    .expect("a valid manifest")
}

/// Runs the behaviour every [`Store`] must have against `store`: uploads recorded and read
/// back, completion atomic and once, the job set once, images found by project, date range,
/// bounding box (across the antimeridian too) and keyset cursor in (date, id) order, at most
/// `limit + 1` per call. It records under project [`CONFORMANCE_PROJECT`] with ids starting
/// `conformance-`, so `store` must hold none of those; other records are left alone.
///
/// # Errors
/// The first [`ConformanceFailure`]; a [`StoreError`] is reported as one too.
pub async fn conformance<S: Store>(store: &S) -> Result<(), ConformanceFailure> {
    #[expect(clippy::needless_pass_by_value, reason = "called with temporaries")]
    fn check<T: std::fmt::Debug + PartialEq>(
        check: &'static str,
        found: T,
        expected: T,
    ) -> Result<(), ConformanceFailure> {
        if found == expected {
            Ok(())
        } else {
            Err(ConformanceFailure {
                check,
                detail: format!("found {found:?}, expected {expected:?}"),
            })
        }
    }
    let fail = |check: &'static str| {
        move |e: StoreError| ConformanceFailure {
            check,
            detail: e.to_string(),
        }
    };
    let ids = |images: &[Manifest]| -> Vec<String> {
        images.iter().map(|m| m.image_id.to_string()).collect()
    };
    let search = |pairs: &[(&str, &str)]| {
        let mut pairs = pairs.to_vec();
        pairs.push(("project", CONFORMANCE_PROJECT));
        tessera_core::search::parse_image_query(pairs).expect("a valid query")
    };

    // Two uploads: a (two images) and b (one image, no GPS).
    let a1 = conformance_manifest("conformance-a1", "2024-05-02", Some((5.5, -0.5)));
    let a2 = conformance_manifest("conformance-a2", "2024-05-01", Some((2.0, 179.5)));
    let b1 = conformance_manifest("conformance-b1", "2024-05-02", None);
    let (a, b) = ("conformance-upload-a", "conformance-upload-b");

    check(
        "an unknown upload is absent",
        store.upload(a).await.map_err(fail("upload"))?,
        None,
    )?;
    store
        .create_upload(
            a,
            CONFORMANCE_PROJECT,
            &[a1.clone(), a2.clone()],
            1_700_000_000,
            1_700_003_600,
        )
        .await
        .map_err(fail("create_upload"))?;
    store
        .create_upload(
            b,
            CONFORMANCE_PROJECT,
            std::slice::from_ref(&b1),
            1_700_000_001,
            1_700_000_101,
        )
        .await
        .map_err(fail("create_upload"))?;
    check(
        "an upload id is recorded once",
        store
            .create_upload(a, CONFORMANCE_PROJECT, &[], 1_700_000_002, 1_700_000_003)
            .await
            .is_err(),
        true,
    )?;
    let planned = UploadRow {
        project: CONFORMANCE_PROJECT.to_owned(),
        manifests: vec![a1.clone(), a2.clone()],
        completed: false,
        job_id: None,
    };
    check(
        "a planned upload reads back as written",
        store.upload(a).await.map_err(fail("upload"))?,
        Some(planned.clone()),
    )?;
    check(
        "images are not searchable before complete",
        ids(&store.search(&search(&[])).await.map_err(fail("search"))?),
        vec![],
    )?;

    // b's URLs expire first (…101), a's at …3600. Other records' uploads are left out.
    let expired = |now_s| async move {
        store
            .expired_uploads(now_s, 100)
            .await
            .map(|rows| {
                rows.into_iter()
                    .filter(|u| u.upload_id.starts_with("conformance-"))
                    .map(|u| (u.upload_id, u.created_at_s, u.expires_at_s))
                    .collect::<Vec<_>>()
            })
            .map_err(fail("expired_uploads"))
    };
    check(
        "an upload is not expired before its URLs expire",
        expired(1_700_000_100).await?,
        vec![],
    )?;
    check(
        "expired uploads are found, expired first first, with their times",
        expired(1_700_003_600).await?,
        vec![
            (b.to_owned(), 1_700_000_001, 1_700_000_101),
            (a.to_owned(), 1_700_000_000, 1_700_003_600),
        ],
    )?;
    check(
        "an expiry is marked once",
        (
            store
                .mark_expired(b, 1_700_003_601)
                .await
                .map_err(fail("mark_expired"))?,
            store
                .mark_expired(b, 1_700_003_602)
                .await
                .map_err(fail("mark_expired"))?,
        ),
        (true, false),
    )?;
    check(
        "a marked upload is not found again",
        expired(1_700_003_600).await?,
        vec![(a.to_owned(), 1_700_000_000, 1_700_003_600)],
    )?;

    check(
        "complete records once",
        (
            store
                .complete_upload(a, 1_700_000_010)
                .await
                .map_err(fail("complete_upload"))?,
            store
                .complete_upload(a, 1_700_000_011)
                .await
                .map_err(fail("complete_upload"))?,
            store
                .complete_upload("conformance-upload-none", 1_700_000_012)
                .await
                .map_err(fail("complete_upload"))?,
        ),
        (true, false, false),
    )?;
    store
        .complete_upload(b, 1_700_000_013)
        .await
        .map_err(fail("complete_upload"))?;
    check(
        "a completed upload is not expired, nor is one completed after its expiry",
        expired(1_800_000_000).await?,
        vec![],
    )?;
    check(
        "a completed upload reads back completed",
        store.upload(a).await.map_err(fail("upload"))?,
        Some(UploadRow {
            completed: true,
            ..planned.clone()
        }),
    )?;
    check(
        "an image reads back as recorded",
        store.image("conformance-a2").await.map_err(fail("image"))?,
        Some(a2.clone()),
    )?;
    check(
        "an unknown image is absent",
        store.image("conformance-zz").await.map_err(fail("image"))?,
        None,
    )?;
    let asked = ["conformance-zz", "conformance-a2", "conformance-a2"].map(String::from);
    check(
        "images reads the known among several ids, each once",
        store.images(&asked).await.map_err(fail("images"))?,
        vec![a2.clone()],
    )?;

    check(
        "the job is set once",
        (
            store
                .set_job(a, "job-first")
                .await
                .map_err(fail("set_job"))?,
            store
                .set_job(a, "job-second")
                .await
                .map_err(fail("set_job"))?,
        ),
        (true, false),
    )?;
    check(
        "the first job stays",
        store
            .upload(a)
            .await
            .map_err(fail("upload"))?
            .and_then(|u| u.job_id),
        Some("job-first".to_owned()),
    )?;

    let found = |pairs: &'static [(&'static str, &'static str)]| {
        let query = search(pairs);
        async move { store.search(&query).await.map(|m| ids(&m)) }
    };
    /// A search check: its name, the query's pairs, the ids expected in order.
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static [&'static str],
    );
    let cases: [Case; 7] = [
        (
            "search orders by (date, id)",
            &[],
            &["conformance-a2", "conformance-a1", "conformance-b1"],
        ),
        (
            "search by date range, inclusive",
            &[("from", "2024-05-02"), ("to", "2024-05-02")],
            &["conformance-a1", "conformance-b1"],
        ),
        (
            "search by bounding box leaves out images without GPS",
            &[("bbox", "-1,5,0,6")],
            &["conformance-a1"],
        ),
        (
            "a bounding box across the antimeridian",
            &[("bbox", "179,0,-179,3")],
            &["conformance-a2"],
        ),
        (
            "a bounding box's edges are inclusive",
            &[("bbox", "-0.5,5.5,-0.5,5.5")],
            &["conformance-a1"],
        ),
        (
            "a page is at most limit + 1",
            &[("limit", "1")],
            &["conformance-a2", "conformance-a1"],
        ),
        (
            "a date range without images finds none",
            &[("from", "2099-01-01")],
            &[],
        ),
    ];
    for (name, pairs, expected) in cases {
        let found = found(pairs).await.map_err(fail(name))?;
        check(
            name,
            found,
            expected.iter().map(|s| (*s).to_owned()).collect(),
        )?;
    }
    let mut query = search(&[]);
    query.cursor = Some(tessera_core::search::SearchCursor::after(&a1));
    check(
        "a cursor continues after its record, ties broken by id",
        ids(&store.search(&query).await.map_err(fail("search"))?),
        vec!["conformance-b1".to_owned()],
    )?;
    Ok(())
}
