//! # tessera-batch
//!
//! The batch backend and the `tessera` command-line tool. For now: the file-system adapter of
//! [`tessera_core::preprocess`] behind `tessera preprocess`, which writes the object-key
//! layout of ARCHITECTURE.md under a local folder.

pub mod preprocess;
