//! The batch backend's stages: orchestration only. Each runs tessera-core's decisions over
//! the adapters (`raster`, and later inference, objects and the job store).

pub mod stitch;
