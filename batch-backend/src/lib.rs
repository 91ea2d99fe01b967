//! # tessera-batch
//!
//! The batch backend and the `tessera` command-line tool:
//! - [`preprocess`]: the file-system adapter of [`tessera_core::preprocess()`] behind
//!   `tessera preprocess`, writing the object-key layout of ARCHITECTURE.md under a folder;
//! - [`jobs`]: the job API and its SQLite store, which the edge triggers;
//! - [`up`]: `tessera up`, storage, edge, page and jobs in one process.

pub mod jobs;
pub mod preprocess;
pub mod up;
