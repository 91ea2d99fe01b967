//! The edge's integration tests, in one binary: the router on its native host (`native`) and
//! under workerd (`workerd`), each against a real S3-compatible server (`support`). The
//! router's own rules are tested in-process, in milliseconds, beside it (`src/routes_tests.rs`).

mod native;
mod support;
mod workerd;
