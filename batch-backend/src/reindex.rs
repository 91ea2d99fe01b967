//! Rebuilds the edge's metadata records from the sidecars in storage
//! (`metadata/{project}/{image_id}.json`, the source of truth; the databases are indexes over
//! them): every sidecar whose image is not recorded is recorded again, as a one-image upload
//! `reindex-{image_id}`. Idempotent: a recorded image is left alone. A sidecar that cannot be
//! read or does not parse is named in the report and does not stop the others.

use futures_util::TryStreamExt as _;
use tessera_core::manifest::Manifest;

use crate::objects::Objects;

/// The sidecars' folder.
pub const SIDECARS_PREFIX: &str = "metadata/";

/// What [`reindex`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reindexed {
    /// Sidecars listed.
    pub sidecars: u64,
    /// Images recorded now.
    pub recorded: u64,
    /// Images that were already recorded.
    pub present: u64,
    /// Sidecars that could not be used: key and why.
    pub unreadable: Vec<(String, String)>,
}

/// Records every sidecar's image that `store` lacks. `progress` hears the sidecars looked at
/// so far.
///
/// # Errors
/// Listing storage, or the store, failed (what was recorded stays recorded; run it again).
pub async fn reindex<M: tessera_edge::Store>(
    objects: &Objects,
    store: &M,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<Reindexed> {
    let mut report = Reindexed::default();
    let mut listing = std::pin::pin!(objects.list(SIDECARS_PREFIX));
    while let Some(info) = listing.try_next().await? {
        report.sidecars += 1;
        progress(report.sidecars);
        let manifest = match objects.get(&info.key).await {
            Err(e) => Err(e.to_string()),
            Ok(body) => serde_json::from_slice::<Manifest>(&body)
                .map_err(|e| format!("not a Tessera sidecar: {e}"))
                .and_then(|m| {
                    if m.metadata_key == info.key {
                        Ok(m)
                    } else {
                        Err(format!("it names another sidecar key, {}", m.metadata_key))
                    }
                }),
        };
        let manifest = match manifest {
            Ok(manifest) => manifest,
            Err(why) => {
                report.unreadable.push((info.key.clone(), why));
                continue;
            }
        };
        if store.image(manifest.image_id.as_str()).await?.is_some() {
            report.present += 1;
            continue;
        }
        let upload_id = format!("reindex-{}", manifest.image_id);
        crate::arrivals::record_image(store, &upload_id, &manifest).await?;
        report.recorded += 1;
    }
    Ok(report)
}
