//! The batch backend's stages: orchestration only. Each runs tessera-core's decisions over
//! the adapters (`raster`, `inference`, and later objects and the job store).

pub mod detect;
pub mod stitch;
