//! The batch backend's job API and store: `POST /v1/jobs` records a job, `GET /v1/jobs/{id}`
//! reports it. The edge triggers jobs through it, in-process in the local stack
//! ([`crate::up`]), over HTTP with a service token when deployed.
//!
//! A job's status is one of `queued`, `running`, `succeeded`, `failed`. The local stack
//! records and reports jobs; no worker picks them up yet, so they stay `queued`.

use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{Method, Request, Response, StatusCode};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The body of `POST /v1/jobs`, as the edge sends it when an upload completes.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct JobRequest {
    /// The completed upload.
    pub upload_id: String,
    /// Its project.
    pub project: String,
    /// One entry per image: `{image_id, metadata_key, original_key}`.
    pub images: Vec<Value>,
}

/// A job as `GET /v1/jobs/{id}` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct JobStatus {
    /// The job's id.
    pub job_id: String,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub status: String,
    /// The upload that triggered it.
    pub upload_id: String,
    /// Its project.
    pub project: String,
    /// Images in the job.
    pub images: i64,
    /// Images finished.
    pub images_done: i64,
    /// Unix seconds when it was recorded.
    pub created_at: i64,
}

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
               request TEXT NOT NULL)",
        )?;
        Ok(Self(Mutex::new(connection)))
    }

    /// Records a queued job and returns it.
    ///
    /// # Errors
    /// SQLite's.
    pub fn create(&self, request: &JobRequest) -> rusqlite::Result<JobStatus> {
        let job = JobStatus {
            job_id: uuid::Uuid::new_v4().to_string(),
            status: "queued".into(),
            upload_id: request.upload_id.clone(),
            project: request.project.clone(),
            images: i64::try_from(request.images.len()).unwrap_or(i64::MAX),
            images_done: 0,
            created_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        };
        let body = serde_json::to_string(request).expect("a job request serialises");
        self.connection().execute(
            "INSERT INTO jobs (job_id, upload_id, project, images, created_at, request)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                job.job_id,
                job.upload_id,
                job.project,
                job.images,
                job.created_at,
                body
            ],
        )?;
        Ok(job)
    }

    /// One job, if it exists.
    ///
    /// # Errors
    /// SQLite's.
    pub fn get(&self, job_id: &str) -> rusqlite::Result<Option<JobStatus>> {
        self.connection()
            .query_row(
                "SELECT job_id, status, upload_id, project, images, images_done, created_at
                 FROM jobs WHERE job_id = ?1",
                [job_id],
                |row| {
                    Ok(JobStatus {
                        job_id: row.get(0)?,
                        status: row.get(1)?,
                        upload_id: row.get(2)?,
                        project: row.get(3)?,
                        images: row.get(4)?,
                        images_done: row.get(5)?,
                        created_at: row.get(6)?,
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
            error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a service token is required",
            )
        } else if request.method() == Method::POST && path == "/v1/jobs" {
            match serde_json::from_slice::<JobRequest>(request.body()) {
                Err(e) => error(StatusCode::BAD_REQUEST, "bad_request", &e.to_string()),
                Ok(job) => match self.create(&job) {
                    Ok(job) => (StatusCode::CREATED, json!(job)),
                    Err(e) => internal(&e),
                },
            }
        } else if let (&Method::GET, Some(id)) = (request.method(), path.strip_prefix("/v1/jobs/"))
        {
            match self.get(id) {
                Ok(Some(job)) => (StatusCode::OK, json!(job)),
                Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "no such job"),
                Err(e) => internal(&e),
            }
        } else {
            error(StatusCode::NOT_FOUND, "not_found", "no such route")
        };
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string().into_bytes())
            .expect("valid response")
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> (StatusCode, Value) {
    (status, json!({"code": code, "message": message}))
}

fn internal(e: &rusqlite::Error) -> (StatusCode, Value) {
    eprintln!("tessera jobs: {e}");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; it has been logged",
    )
}
