//! # tessera-batch
//!
//! The batch backend: [`jobs`], the job API and its SQLite store, which the edge triggers
//! (over HTTP with a service token, or in-process in the local stack through
//! [`jobs::LocalJobs`]). The `tessera` binary (`src/bin/tessera/`) composes it with the edge
//! and the core into the command-line tool.

pub mod jobs;
pub mod raster;
pub mod stages;
