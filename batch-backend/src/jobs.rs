//! The batch backend's job API and store: `POST /v1/jobs` records a job, `GET /v1/jobs/{id}`
//! reports it, in the contract of [`tessera_core::job`]. The edge reaches it through its
//! [`Jobs`] trait: in-process in the local stack ([`LocalJobs`], used by `tessera up`), over
//! HTTP with a service token when deployed ([`JobStore::answer`] is that API over `http`
//! types).
//!
//! The local stack records and reports jobs; no worker picks them up yet, so they stay
//! `queued`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use http::{Method, Request, Response, StatusCode};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};
use tessera_core::error::{ErrorBody, ErrorCode};
use tessera_core::job::{JobRequest, JobState, JobStatus, Progress};
use tessera_core::keys::{JobId, Project};
use tessera_edge::{Jobs, JobsError};

/// Jobs in SQLite (one table, created if missing).
#[derive(Debug)]
pub struct JobStore(Mutex<Connection>);

impl JobStore {
    /// Opens or creates the store at `path`.
    ///
    /// # Errors
    /// SQLite's, when the file cannot be opened or migrated.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let connection = Connection::open(path)?;
        connection.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS jobs (
               job_id TEXT PRIMARY KEY,
               status TEXT NOT NULL DEFAULT 'queued',
               upload_id TEXT NOT NULL,
               project TEXT NOT NULL,
               images INTEGER NOT NULL,
               images_done INTEGER NOT NULL DEFAULT 0,
               created_at INTEGER NOT NULL,
               request TEXT NOT NULL);
             -- Versions before the unique index could record several jobs per upload
             -- (concurrent completions); keep the first of each.
             DELETE FROM jobs WHERE rowid NOT IN
               (SELECT MIN(rowid) FROM jobs GROUP BY upload_id);
             CREATE UNIQUE INDEX IF NOT EXISTS jobs_upload_id ON jobs (upload_id);",
        )?;
        Ok(Self(Mutex::new(connection)))
    }

    /// Records the job of `request`'s upload, queued, unless that upload has one: one job per
    /// upload, enforced by a unique index, so concurrent completions of one upload (in this
    /// process or another on the same file) all get the same job. `.1` is whether this call
    /// created it.
    ///
    /// # Errors
    /// When the database fails.
    pub fn create(&self, request: &JobRequest) -> rusqlite::Result<(JobStatus, bool)> {
        let job = JobStatus::queued(
            JobId::new(uuid::Uuid::new_v4().to_string()).expect("a UUID is a job id"),
            request,
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        );
        let body = serde_json::to_string(request).expect("a job request serialises");
        let connection = self.connection();
        let inserted = connection.execute(
            "INSERT INTO jobs (job_id, status, upload_id, project, images, created_at, request)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (upload_id) DO NOTHING",
            params![
                job.job_id.as_str(),
                job.state.as_str(),
                job.upload_id,
                job.project.as_str(),
                i64::try_from(job.progress.total).unwrap_or(i64::MAX),
                i64::try_from(job.created_at).unwrap_or(i64::MAX),
                body
            ],
        )?;
        if inserted == 1 {
            return Ok((job, true));
        }
        let existing: String = connection.query_row(
            "SELECT job_id FROM jobs WHERE upload_id = ?1",
            [&request.upload_id],
            |row| row.get(0),
        )?;
        drop(connection);
        let existing = JobId::new(existing.as_str()).map_err(|_| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                format!("job id {existing:?} in jobs").into(),
            )
        })?;
        let job = self
            .get(&existing)?
            .ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        Ok((job, false))
    }

    /// The job `job_id`, if recorded.
    ///
    /// # Errors
    /// SQLite's, or a row that does not parse.
    pub fn get(&self, job_id: &JobId) -> rusqlite::Result<Option<JobStatus>> {
        self.connection()
            .query_row(
                "SELECT status, upload_id, project, images, images_done, created_at
                 FROM jobs WHERE job_id = ?1",
                [job_id.as_str()],
                |row| {
                    let text = |i: usize, value: String| {
                        rusqlite::Error::FromSqlConversionFailure(
                            i,
                            rusqlite::types::Type::Text,
                            format!("{value:?} in jobs").into(),
                        )
                    };
                    let state: String = row.get(0)?;
                    let project: String = row.get(2)?;
                    // Counts and times are written from u64s; SQLite stores them as i64.
                    let unsigned =
                        |i: usize| row.get::<_, i64>(i).map(|v| u64::try_from(v).unwrap_or(0));
                    Ok(JobStatus {
                        job_id: job_id.clone(),
                        state: JobState::parse(&state).ok_or_else(|| text(0, state))?,
                        stage: None,
                        progress: Progress {
                            done: unsigned(4)?,
                            total: unsigned(3)?,
                        },
                        upload_id: row.get(1)?,
                        project: Project::new(project.as_str()).map_err(|_| text(2, project))?,
                        created_at: unsigned(5)?,
                    })
                },
            )
            .optional()
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The job API over `http` types: `POST /v1/jobs` (201 with the [`JobStatus`]) and
    /// `GET /v1/jobs/{id}` (200, or 404). Every request must carry
    /// `Authorization: Bearer {token}`. Errors are `{code, message}` like the edge's.
    pub fn answer(&self, token: &str, request: &Request<Vec<u8>>) -> Response<Vec<u8>> {
        let authorized = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            == Some(token);
        let path = request.uri().path();
        let (status, body) = if !authorized {
            error(ErrorCode::Unauthorized, "a service token is required")
        } else if request.method() == Method::POST && path == "/v1/jobs" {
            match serde_json::from_slice::<JobRequest>(request.body()) {
                Err(e) => error(ErrorCode::InvalidJson, &format!("request body: {e}")),
                Ok(job) => match self.create(&job) {
                    Ok((job, true)) => (StatusCode::CREATED, json!(job)),
                    Ok((job, false)) => (StatusCode::OK, json!(job)),
                    Err(e) => internal(&e),
                },
            }
        } else if let (&Method::GET, Some(id)) = (request.method(), path.strip_prefix("/v1/jobs/"))
        {
            match JobId::new(id).map(|id| self.get(&id)) {
                Ok(Ok(Some(job))) => (StatusCode::OK, json!(job)),
                Ok(Ok(None)) | Err(_) => error(ErrorCode::JobNotFound, &format!("no job {id}")),
                Ok(Err(e)) => internal(&e),
            }
        } else {
            error(ErrorCode::NotFound, &format!("no route for {path}"))
        };
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string().into_bytes())
            .expect("valid response")
    }
}

/// The edge's [`Jobs`] answered in-process by a [`JobStore`] (the local stack).
#[derive(Debug, Clone)]
pub struct LocalJobs(pub Arc<JobStore>);

impl Jobs for LocalJobs {
    async fn create(&self, request: &JobRequest) -> Result<JobStatus, JobsError> {
        self.0
            .create(request)
            .map(|(job, _created)| job)
            .map_err(|e| JobsError::Backend(Box::new(e)))
    }

    async fn status(&self, job_id: &JobId) -> Result<Option<JobStatus>, JobsError> {
        self.0
            .get(job_id)
            .map_err(|e| JobsError::Backend(Box::new(e)))
    }
}

/// An error answer in the API's one vocabulary ([`ErrorBody`]).
fn error(code: ErrorCode, message: &str) -> (StatusCode, Value) {
    let status = StatusCode::from_u16(code.http_status()).expect("a valid status");
    (status, json!(ErrorBody::new(code, message)))
}

fn internal(e: &rusqlite::Error) -> (StatusCode, Value) {
    tracing::error!(error = %e, "job store");
    error(ErrorCode::Internal, "internal error; it has been logged")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::Sha256Digest;
    use tessera_core::job::JobInput;
    use tessera_core::keys::ImageId;
    use tessera_edge::{HttpJobs, Outbound, OutboundError};

    /// Outbound HTTP answered by a job store's API in-process, so that the edge's HTTP client
    /// and the backend's job API are checked against each other.
    struct Loopback(Arc<JobStore>);

    impl Outbound for Loopback {
        async fn send(
            &self,
            request: Request<Vec<u8>>,
        ) -> Result<Response<Vec<u8>>, OutboundError> {
            Ok(self.0.answer("service-token", &request))
        }
    }

    fn request() -> JobRequest {
        JobRequest {
            upload_id: "upload-1".into(),
            project: Project::new("palms").unwrap(),
            inputs: vec![JobInput {
                image_id: ImageId::new("img-1").unwrap(),
                original_key: "original-uploads/palms/img-1/palms_a_20240309.jpg".into(),
                metadata_key: "metadata/palms/img-1.json".into(),
                media_type: "image/jpeg".into(),
                sha256: Sha256Digest::of(b"a"),
            }],
        }
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    /// Ten completions of one upload at once, through two connections to one file (as two
    /// processes would have): one job, the same for all.
    #[test]
    fn one_upload_gets_one_job_under_concurrency() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.sqlite");
        let stores = [
            Arc::new(JobStore::open(&path).unwrap()),
            Arc::new(JobStore::open(&path).unwrap()),
        ];
        let barrier = Arc::new(std::sync::Barrier::new(10));
        let threads: Vec<_> = (0..10)
            .map(|i| {
                let (store, barrier) = (Arc::clone(&stores[i % 2]), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    store.create(&request()).unwrap()
                })
            })
            .collect();
        let jobs: Vec<(JobStatus, bool)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(jobs.iter().filter(|(_, created)| *created).count(), 1);
        assert!(jobs.iter().all(|(job, _)| job.job_id == jobs[0].0.job_id));
        let rows: i64 = stores[0]
            .connection()
            .query_row("SELECT COUNT(*) FROM jobs", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 1);
    }

    #[test]
    fn the_edge_http_client_and_the_job_api_agree() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(JobStore::open(&dir.path().join("jobs.sqlite")).unwrap());
        let http = HttpJobs::new(
            "http://jobs.internal/",
            "service-token",
            Loopback(Arc::clone(&store)),
        );
        block_on(async {
            let created = http.create(&request()).await.unwrap();
            assert_eq!(created.state, JobState::Queued);
            assert_eq!(created.progress, Progress { done: 0, total: 1 });
            assert_eq!(
                http.status(&created.job_id).await.unwrap(),
                Some(created.clone())
            );
            let local = LocalJobs(Arc::clone(&store));
            assert_eq!(local.status(&created.job_id).await.unwrap(), Some(created));
            let missing = JobId::new("no-such-job").unwrap();
            assert_eq!(http.status(&missing).await.unwrap(), None);

            let wrong_token = HttpJobs::new(
                "http://jobs.internal",
                "guess",
                Loopback(Arc::clone(&store)),
            );
            match wrong_token.create(&request()).await {
                Err(JobsError::Refused { status, .. }) => {
                    assert_eq!(status, StatusCode::UNAUTHORIZED);
                }
                other => panic!("{other:?}"),
            }
        });
    }
}
