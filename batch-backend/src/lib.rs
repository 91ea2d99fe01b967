//! # tessera-batch
//!
//! The batch backend: [`jobs`], the job API and its SQLite store, which the edge triggers
//! (over HTTP with a service token, or in-process in the local stack through
//! [`jobs::LocalJobs`]); the [`stages`] a job runs (stitch, detect), orchestration only, over
//! the adapters: [`raster`] (the only module that imports `gdal`) and [`inference`] (the only
//! one that imports `ort`). The `tessera` binary (`src/bin/tessera/`) composes it with the
//! edge and the core into the command-line tool. [`webhook`] delivers the signed webhooks
//! that the store's outbox records when jobs end; [`metrics`] is `/metrics` and `/ready`.
//! [`arrivals`] gives originals that any S3 client puts into storage the browser's treatment;
//! [`reindex`] rebuilds the edge's records from the sidecars.

pub mod arrivals;
pub mod inference;
pub mod jobs;
pub mod metrics;
pub mod objects;
pub mod raster;
pub mod reindex;
pub mod stages;
pub mod store;
pub mod tasks;
pub mod webhook;
pub mod worker;
