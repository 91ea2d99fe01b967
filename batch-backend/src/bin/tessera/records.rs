//! `tessera migrate` and `tessera reindex`: the edge's metadata records moved between
//! databases, or rebuilt from the sidecars in storage. Glue over
//! [`tessera_edge::metadata::copy_records`], [`tessera_edge::metadata::verify_copy`] and
//! [`tessera_batch::reindex`].

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tessera_batch::objects::Objects;
use tessera_edge::metadata::{MetadataStore, copy_records, verify_copy};

use crate::edge::redact;

#[derive(Args)]
pub(crate) struct MigrateArgs {
    /// The database to copy from: `sqlite:PATH` (or a path), or `postgres://…`.
    #[arg(long)]
    from: String,
    /// The database to copy to, migrated first: `postgres://…` (or `sqlite:PATH`).
    #[arg(long)]
    to: String,
}

#[derive(Args)]
pub(crate) struct ReindexArgs {
    /// The metadata database to rebuild: `sqlite:PATH` (or a path), or `postgres://…`.
    #[arg(long)]
    database: String,
}

fn spinner() -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}").expect("a template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

async fn open(url: &str) -> anyhow::Result<MetadataStore> {
    MetadataStore::open(url).await.with_context(|| redact(url))
}

/// Copies every record, then compares both databases record by record; exit 1 on any
/// difference.
pub(crate) fn migrate(args: &MigrateArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let from = open(&args.from).await?;
        let to = open(&args.to).await?;
        let bar = spinner();
        let copied = copy_records(&from, &to, |table, n| {
            bar.set_message(format!("copied {n} {table}"));
        })
        .await?;
        bar.set_message("verifying checksums");
        let mismatches = verify_copy(&from, &to).await?;
        bar.finish_and_clear();
        println!(
            "copied {} uploads and {} images from {} to {}",
            copied.uploads,
            copied.images,
            redact(&args.from),
            redact(&args.to)
        );
        if mismatches.is_empty() {
            println!("verified: the same records, every checksum equal");
            return Ok(ExitCode::SUCCESS);
        }
        for m in &mismatches {
            eprintln!("{} {}: {}", m.table, m.id, m.problem);
        }
        eprintln!("{} records differ", mismatches.len());
        Ok(ExitCode::FAILURE)
    })
}

/// Records every sidecar's image the database lacks; exit 1 when a sidecar could not be used.
pub(crate) fn reindex(args: &ReindexArgs) -> anyhow::Result<ExitCode> {
    let storage = tessera_edge::config::storage_from_lookup(|name| std::env::var(name).ok())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = open(&args.database).await?;
        let objects = Objects::s3(&storage)?;
        let bar = spinner();
        let report = tessera_batch::reindex::reindex(&objects, &store, |n| {
            bar.set_message(format!("{n} sidecars read"));
        })
        .await?;
        bar.finish_and_clear();
        println!(
            "{} sidecars: {} images recorded, {} already recorded, {} unreadable",
            report.sidecars,
            report.recorded,
            report.present,
            report.unreadable.len()
        );
        for (key, why) in &report.unreadable {
            eprintln!("{key}: {why}");
        }
        Ok(if report.unreadable.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}
