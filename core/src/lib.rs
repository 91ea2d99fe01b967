//! # tessera-core
//!
//! Everything in Tessera that decides: limits and type sniffing, EXIF, orientation, the
//! 256×256 letterbox and its rotations, encoding, checksums, the object-key layout and the
//! manifest. Pure: no I/O, no clocks, no threads; it builds for native targets and for
//! `wasm32-unknown-unknown`, and the same input and [`Options`] give byte-identical output
//! everywhere.
//!
//! The whole browser-side job is [`preprocess()`]:
//!
//! 1. [`limits::probe`]: size ≤ 10 MiB, type by magic bytes (JPEG, PNG, TIFF), width, height
//!    and pixel count from the header alone (12,000 px a side, 100 megapixels).
//! 2. [`exif::read_exif`]: date taken, GPS, camera, orientation; bad EXIF is just absent.
//! 3. [`pixels::decode_rgb8`]: 8-bit RGB, alpha on white; JPEGs decoded straight at the
//!    smallest DCT scale that keeps twice the letterbox resolution.
//! 4. [`exif::Orientation::apply`] turns the pixels upright.
//! 5. [`pixels::letterbox`]: 256×256 on white, Lanczos3.
//! 6. [`pixels::Rotation`]: 90°, 180°, 270° counter-clockwise.
//! 7. [`pixels::encode_jpeg`]: baseline JPEG, quality 90.
//! 8. [`Sha256Digest`] of the original and each derivative.
//! 9. [`Manifest`]: keys from [`keys::ObjectNaming::key`], sizes, checksums, EXIF.
//!
//! The modules, in the order of the flow (ARCHITECTURE.md):
//!
//! | module | what it decides |
//! |---|---|
//! | [`limits`] | size, type by magic bytes, pixel limits against decompression bombs |
//! | [`exif`] | date taken, GPS, camera, orientation |
//! | [`pixels`] | decoding, orientation, the letterbox, rotations, JPEG encoding |
//! | [`preprocess`](mod@preprocess) | the steps above for one file, and why a file is refused |
//! | [`keys`] | the object-key layout and the ids and names keys are built from |
//! | [`manifest`] | the record of an image and its six objects (the metadata sidecar) |
//! | [`upload`] | what an upload request may declare, which keys it gets, how `complete` checks storage |
//! | [`arrival`] | originals put into storage by other routes: event notifications, which keys are arrivals, their ids |
//! | [`presign`] | presigned S3 requests (SigV4), the clock passed in |
//! | [`search`] | image search parameters, the keyset cursor and page, download URL lifetime |
//! | [`access`] | API keys stored as hashes, the per-key rate limit, CORS preflight caching |
//! | [`retry`] | which failures clients retry, and the backoff |
//! | [`job`] | the batch job contract: request, states, stages, progress, transitions |
//! | [`job_inputs`] | how a client names a job's inputs (image ids, upload ids, a search) and the limit per job |
//! | [`queue`] | the batch task queue: task states, leases and heartbeats, retries with backoff, the dead-letter rule |
//! | [`detect`] | detection: the window grid, model descriptions and normalisation, decoding, NMS in windows and in world coordinates |
//! | [`results`] | the files a detection run publishes: COCO JSON, GeoJSON, the STAC Item, the preview's outlines |
//! | [`mosaic`] | stitching GeoTIFFs: input checks, CRS and grid, overlap order, nodata, the COG, the 8-bit stretch |
//! | [`webhook`] | webhook signatures (Standard Webhooks), events and payloads, the delivery schedule, which URLs may receive them |
//! | [`error`] | one error vocabulary: stable codes and the error body of every API |

pub mod access;
pub mod arrival;
pub mod detect;
pub mod error;
pub mod exif;
pub mod job;
pub mod job_inputs;
mod json_integer;
pub mod keys;
pub mod limits;
pub mod manifest;
pub mod mosaic;
pub mod pixels;
pub mod preprocess;
pub mod presign;
pub mod queue;
pub mod results;
pub mod retry;
pub mod search;
pub mod upload;
pub mod uploader;
pub mod webhook;

pub use manifest::{DateSource, Manifest, ManifestObject, ObjectKind, Sha256Digest};
pub use preprocess::{Derivatives, Options, PreprocessError, preprocess};
