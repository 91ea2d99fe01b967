//! A job of many GeoTIFFs through `tessera up`: every input accounted for, one mosaic, and
//! the memory of the process that ran it. CI runs 200 files with 2 workers; the benchmark
//! (`batch-backend/benches/job_scale.sh`) runs the same test with `TESSERA_JOB_FILES=1000`
//! and 1 and 2 workers (`TESSERA_JOB_WORKERS`), and reads the `job_scale:` line it prints.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::jobs::{Image, tiled_vrt, upload, wait_for_end};
use crate::up::{credentials, start_up_with, stop};

/// Side of each tile, px (6 m at 0.1 m).
const TILE: usize = 60;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().map_or(default, |v| {
        v.parse().unwrap_or_else(|e| panic!("{name}={v}: {e}"))
    })
}

/// `count` GeoTIFFs of [`TILE`]² px cut side by side (40 to a row) from [`tiled_vrt`] by
/// `gdal_retile.py`, in row order.
fn tiles(dir: &Path, count: usize) -> Vec<PathBuf> {
    let per_row = 2400 / TILE;
    let rows = count.div_ceil(per_row);
    assert!(
        rows * TILE <= 2400,
        "{count} tiles do not fit in the 2,400² raster"
    );
    let strip = dir.join("strip.tif");
    crate::jobs::gdal_translate(
        &["-srcwin", "0", "0", "2400", &(rows * TILE).to_string()],
        &tiled_vrt(dir),
        &strip,
    );
    let out = dir.join("tiles");
    std::fs::create_dir_all(&out).unwrap();
    let size = TILE.to_string();
    let status = Command::new("gdal_retile.py")
        .args(["-q", "-ps", &size, &size, "-targetDir"])
        .arg(&out)
        .arg(&strip)
        .status()
        .expect("gdal_retile.py (Debian's python3-gdal)");
    assert!(status.success());
    // gdal_retile names them strip_{row}_{column}.tif, from 1, zero-padded.
    let mut tiles: Vec<((u32, u32), PathBuf)> = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
            let mut numbers = stem.rsplit('_').map(|n| n.parse::<u32>().unwrap());
            let (column, row) = (numbers.next().unwrap(), numbers.next().unwrap());
            ((row, column), path)
        })
        .collect();
    tiles.sort();
    assert!(tiles.len() >= count, "{} tiles", tiles.len());
    tiles
        .into_iter()
        .take(count)
        .map(|(_, path)| path)
        .collect()
}

/// The peak resident set of process `pid` so far (`VmHWM`), MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib / 1024.0
}

#[test]
fn a_job_of_many_geotiffs_accounts_for_every_input() {
    let count = env_or("TESSERA_JOB_FILES", 200);
    let workers = env_or("TESSERA_JOB_WORKERS", 2);
    let data = tempfile::tempdir().unwrap();
    let pieces = tempfile::tempdir().unwrap();
    let images: Vec<Image> = tiles(pieces.path(), count)
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            Image::of("survey", name, std::fs::read(p).unwrap())
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();

    // Uploaded 50 to a request with no worker running; each upload's own job is cancelled.
    let up = start_up_with(data.path(), &["--workers", "0"]);
    let (api, key) = (
        format!("http://{}", up.page),
        credentials(data.path())["api_key"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let uploads: Vec<String> = runtime.block_on(async {
        let mut uploads = Vec::new();
        for batch in images.chunks(50) {
            let job_id = upload(&client, &api, &key, "survey", batch).await;
            let cancelled = client
                .post(format!("{api}/v1/jobs/{job_id}/cancel"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            assert_eq!(cancelled.status(), 200);
            let job: Value = client
                .get(format!("{api}/v1/jobs/{job_id}"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            uploads.push(job["upload_id"].as_str().unwrap().to_owned());
        }
        uploads
    });
    stop(up);

    // The job of every upload, run by `workers` in-process workers.
    let workers_arg = workers.to_string();
    let mut up = start_up_with(data.path(), &["--workers", &workers_arg]);
    let api = format!("http://{}", up.page);
    let start = Instant::now();
    let job = runtime.block_on(async {
        let created = client
            .post(format!("{api}/v1/jobs"))
            .bearer_auth(&key)
            .json(&json!({"project": "survey", "upload_ids": uploads}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let created: Value = created.json().await.unwrap();
        let job_id = created["job_id"].as_str().unwrap().to_owned();
        wait_for_end(
            &client,
            &api,
            &key,
            &job_id,
            Duration::from_secs(600),
            &mut up,
        )
        .await
    });
    let seconds = start.elapsed().as_secs_f64();
    let rss = peak_rss_mib(up.child.id());
    stop(up);

    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["progress"]["done"], count);
    assert_eq!(job["progress"]["failed"], 0);
    let inputs = job["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), count);
    assert!(inputs.iter().all(|i| i["state"] == "ok"), "{job:#}");
    // One mosaic of all of them, the width of 40 tiles.
    let job_id = job["job_id"].as_str().unwrap();
    let mosaic = data
        .path()
        .join(format!("s3/tessera/results/{job_id}/mosaic.tif"));
    let info = Command::new("gdalinfo")
        .arg("-json")
        .arg(&mosaic)
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["size"][0], 2400, "{info:#}");
    assert_eq!(info["size"][1], count.div_ceil(2400 / TILE) * TILE);
    println!(
        "job_scale: files={count} workers={workers} seconds={seconds:.1} \
         files_per_second={:.1} peak_rss_mib={rss:.0} windows={}",
        count as f64 / seconds,
        job["progress"]["windows_total"]
    );
    // Flat memory: the stitch reads through GDAL's block cache, detection a window batch at
    // a time; nothing grows with the file count.
    assert!(rss < 1024.0, "peak RSS {rss:.0} MiB for {count} files");
}
