//! The task store's conformance suite, run on SQLite (a temporary file) and on a real
//! PostgreSQL 15 (`TESSERA_TEST_POSTGRES`, started by scripts/test.sh's `ensure_postgres`; each
//! test makes its own database): the same behaviour from both, as `tessera_core::queue` rules.

use std::collections::HashSet;

use sqlx::Connection as _;
use tessera_batch::store::{Dialect, Store};
use tessera_core::job::JobStage;
use tessera_core::keys::JobId;
use tessera_core::queue::{Attempt, LEASE, TaskKey, TaskState};

const JOB: &str = "0190b6c4-1a2b-7c3d-8e4f-001122334455";
const T0: i64 = 1_780_000_000_000;

fn key(shard: u32) -> TaskKey {
    TaskKey {
        job_id: JobId::new(JOB).unwrap(),
        stage: JobStage::Detect,
        shard,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The URL of a fresh, empty PostgreSQL database named after `name` and this process, on
/// the server of `TESSERA_TEST_POSTGRES`.
pub(crate) async fn postgres_database(name: &str) -> String {
    let admin = std::env::var("TESSERA_TEST_POSTGRES").expect(
        "TESSERA_TEST_POSTGRES: a PostgreSQL superuser URL (scripts/test.sh's ensure_postgres)",
    );
    let database = format!("tessera_{name}_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {database}"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&mut conn)
        .await
        .unwrap();
    format!("{}/{database}", admin.rsplit_once('/').unwrap().0)
}

/// A fresh store of each dialect, and the folder that keeps the SQLite file alive.
async fn stores(name: &str) -> (tempfile::TempDir, Vec<Store>) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::connect(&format!("sqlite:{}", dir.path().join("tasks.db").display()))
        .await
        .unwrap();
    let postgres = Store::connect(&postgres_database(name).await)
        .await
        .unwrap();
    assert_eq!(
        (sqlite.dialect(), postgres.dialect()),
        (Dialect::Sqlite, Dialect::Postgres)
    );
    (dir, vec![sqlite, postgres])
}

#[test]
fn a_key_is_enqueued_once_and_claimed_by_one_worker() {
    runtime().block_on(async {
        let (_dir, stores) = stores("once").await;
        for store in stores {
            let d = store.dialect();
            assert!(store.enqueue(&key(0), 5, T0).await.unwrap(), "{d:?}");
            assert!(!store.enqueue(&key(0), 5, T0).await.unwrap(), "{d:?}");
            let claimed = store.claim("w1", T0).await.unwrap().expect("a task");
            assert_eq!(
                (claimed.attempt, claimed.key.as_str()),
                (1, &*key(0).to_string())
            );
            assert_eq!(store.claim("w2", T0).await.unwrap(), None, "{d:?}");
            let state = store
                .finish(&claimed, "w1", &Attempt::Completed, T0 + 10, 0.5)
                .await
                .unwrap();
            assert_eq!(state, Some(TaskState::Completed), "{d:?}");
            let record = store.task(claimed.id).await.unwrap().unwrap();
            assert_eq!(record.state, TaskState::Completed);
            assert_eq!(store.claim("w2", T0 + 20).await.unwrap(), None, "{d:?}");
        }
    });
}

#[test]
fn failures_wait_their_backoff_then_are_discarded_with_their_last_error() {
    runtime().block_on(async {
        let (_dir, stores) = stores("retry").await;
        for store in stores {
            let d = store.dialect();
            store.enqueue(&key(1), 2, T0).await.unwrap();
            let first = store.claim("w1", T0).await.unwrap().unwrap();
            let failed = Attempt::Failed {
                error: "storage timed out".into(),
                retryable: true,
            };
            let state = store.finish(&first, "w1", &failed, T0, 0.5).await.unwrap();
            assert_eq!(state, Some(TaskState::Retryable), "{d:?}");
            // The first retry waits 1 s (1⁴ seconds, jitter at its midpoint).
            assert_eq!(store.claim("w1", T0 + 999).await.unwrap(), None, "{d:?}");
            let second = store.claim("w2", T0 + 1_000).await.unwrap().unwrap();
            assert_eq!((second.attempt, second.errors), (2, 1));
            let state = store
                .finish(&second, "w2", &failed, T0 + 1_100, 0.5)
                .await
                .unwrap();
            assert_eq!(state, Some(TaskState::Discarded), "{d:?}");
            let record = store.task(second.id).await.unwrap().unwrap();
            assert_eq!(
                (record.state, record.errors, record.last_error.as_deref()),
                (TaskState::Discarded, 2, Some("storage timed out"))
            );
            let outcomes: Vec<(String, Option<String>)> = store
                .attempts(second.id)
                .await
                .unwrap()
                .into_iter()
                .map(|a| (a.worker, a.outcome))
                .collect();
            assert_eq!(
                outcomes,
                [
                    ("w1".to_owned(), Some("failed".to_owned())),
                    ("w2".to_owned(), Some("failed".to_owned()))
                ]
            );
        }
    });
}

#[test]
fn an_expired_lease_is_rescued_and_its_old_holder_can_no_longer_finish() {
    runtime().block_on(async {
        let (_dir, stores) = stores("lease").await;
        let lease = i64::try_from(LEASE.as_millis()).unwrap();
        for store in stores {
            let d = store.dialect();
            store.enqueue(&key(2), 5, T0).await.unwrap();
            let lost = store.claim("dead", T0).await.unwrap().unwrap();
            // A heartbeat keeps the lease; without more, it runs out.
            assert!(store.heartbeat(&lost, "dead", T0 + 10_000).await.unwrap());
            assert_eq!(store.rescue(T0 + lease, 0.5).await.unwrap(), [], "{d:?}");
            assert_eq!(
                store.rescue(T0 + 10_001 + lease, 0.5).await.unwrap(),
                [(key(2).to_string(), TaskState::Retryable)],
                "{d:?}"
            );
            assert!(!store.heartbeat(&lost, "dead", T0 + 80_000).await.unwrap());
            let now = T0 + 10_001 + lease + 1_000;
            let taken = store.claim("alive", now).await.unwrap().unwrap();
            assert_eq!(taken.attempt, 2);
            // The dead worker's late answer changes nothing.
            let late = store
                .finish(&lost, "dead", &Attempt::Completed, now, 0.5)
                .await
                .unwrap();
            assert_eq!(late, None, "{d:?}");
            let done = store
                .finish(&taken, "alive", &Attempt::Completed, now + 5, 0.5)
                .await
                .unwrap();
            assert_eq!(done, Some(TaskState::Completed));
            let attempts = store.attempts(taken.id).await.unwrap();
            let seen: Vec<(&str, Option<&str>)> = attempts
                .iter()
                .map(|a| (a.worker.as_str(), a.outcome.as_deref()))
                .collect();
            assert_eq!(
                seen,
                [
                    ("dead", Some("lease_expired")),
                    ("alive", Some("completed"))
                ]
            );
        }
    });
}

#[test]
fn concurrent_claimers_never_take_the_same_task() {
    runtime().block_on(async {
        let (_dir, stores) = stores("concurrent").await;
        for store in stores {
            let d = store.dialect();
            for shard in 0..40 {
                store.enqueue(&key(shard), 5, T0).await.unwrap();
            }
            let claimers = (0..4).map(|w| {
                let store = store.clone();
                async move {
                    let worker = format!("w{w}");
                    let mut mine = Vec::new();
                    while let Some(task) = store.claim(&worker, T0).await.unwrap() {
                        mine.push(task.key.clone());
                        store
                            .finish(&task, &worker, &Attempt::Completed, T0, 0.5)
                            .await
                            .unwrap()
                            .expect("still held");
                    }
                    mine
                }
            });
            let all: Vec<String> = futures_util::future::join_all(claimers)
                .await
                .into_iter()
                .flatten()
                .collect();
            let unique: HashSet<&String> = all.iter().collect();
            assert_eq!((all.len(), unique.len()), (40, 40), "{d:?}");
        }
    });
}

/// The job store's SQLite (bundled with rusqlite and sqlx) and the system SQLite that GDAL
/// and PROJ link stay apart: PROJ's first use of its copy must not make the system copy's
/// VFS the store's default, which left connections opened before and after with separate
/// lock tables and a truncated WAL index (a malformed database, or SIGBUS). See
/// batch-backend/build.rs.
#[test]
#[allow(unsafe_code)]
fn gdal_and_proj_leave_the_store_s_sqlite_alone() {
    // SAFETY: sqlite3_vfs_find only reads SQLite's list of VFSes; null asks for the default.
    let default_vfs = || unsafe { rusqlite::ffi::sqlite3_vfs_find(std::ptr::null()) } as usize;
    let before = default_vfs();
    // A transformation between two CRSes opens PROJ's database through the system SQLite.
    let utm = gdal::spatial_ref::SpatialRef::from_epsg(32617).unwrap();
    let wgs84 = gdal::spatial_ref::SpatialRef::from_epsg(4326).unwrap();
    gdal::spatial_ref::CoordTransform::new(&utm, &wgs84).unwrap();
    assert_eq!(
        default_vfs(),
        before,
        "the store's SQLite took another copy's VFS as its default"
    );
}

/// Ten concurrent completions of one upload record one job: the database's unique upload
/// column decides, not a check before the insert; every caller is told the same job.
#[test]
fn concurrent_job_creation_for_one_upload_records_one_job() {
    use tessera_core::job::JobRequest;
    use tessera_core::keys::Project;
    runtime().block_on(async {
        let (_dir, stores) = stores("one_job_per_upload").await;
        for store in stores {
            let d = store.dialect();
            let request = JobRequest::for_upload("upload-1", &Project::new("palms").unwrap(), &[]);
            let creations = (0..10).map(|n| {
                let (store, request) = (store.clone(), request.clone());
                async move {
                    let job_id = JobId::new(format!("job-{n}")).unwrap();
                    store.create_job(&job_id, &request, T0).await.unwrap()
                }
            });
            let answers = futures_util::future::join_all(creations).await;
            let created = answers.iter().filter(|(_, created)| *created).count();
            let ids: HashSet<&str> = answers.iter().map(|(j, _)| j.job_id.as_str()).collect();
            assert_eq!((created, ids.len()), (1, 1), "{d:?}: {answers:#?}");
            let query = tessera_core::job::JobQuery {
                project: None,
                state: None,
                limit: 50,
                cursor: None,
            };
            let (listed, _) = store.list_jobs(&query, T0).await.unwrap();
            assert_eq!(listed.len(), 1, "{d:?}: {listed:#?}");
        }
    });
}

/// The edge's metadata store conformance suite on PostgreSQL (SQLite's is a unit test of the
/// edge, D1's runs under workerd), in a database the job store shares, twice connected: the
/// migrations apply once, and the job store's tables and the edge's live side by side.
#[test]
fn the_edge_metadata_store_passes_its_conformance_suite_on_postgres() {
    use tessera_edge::metadata::MetadataStore;
    runtime().block_on(async {
        let url = postgres_database("edge_metadata").await;
        let jobs = Store::connect(&url).await.unwrap();
        let first = MetadataStore::open(&url).await.unwrap();
        let again = MetadataStore::open(&url).await.unwrap();
        assert!(matches!(first, MetadataStore::Postgres(_)));
        tessera_edge::conformance(&first).await.unwrap();
        let counts = again.upload_counts().await.unwrap();
        assert!(
            counts
                .iter()
                .any(|(state, n)| state == "completed" && *n > 0),
            "{counts:?}"
        );
        assert!(jobs.arrival_counts().await.unwrap().is_empty());
    });
}
