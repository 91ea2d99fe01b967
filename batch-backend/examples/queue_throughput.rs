//! Claim-and-complete throughput of the task store: `N` tasks enqueued, then `W` workers
//! (concurrent claim → finish loops over one store) drain them; tasks per second for SQLite
//! and Postgres with 1 and 2 workers. Prints a Markdown table (for BENCHMARKS.md through
//! `scripts/benchmarks.py queue`).
//!
//! ```sh
//! source scripts/env.sh && ensure_postgres
//! cargo run --release -p tessera-batch --example queue_throughput -- 2000 | python3 scripts/benchmarks.py queue queue_throughput
//! ```

use std::time::Instant;

use tessera_batch::store::Store;
use tessera_core::job::JobStage;
use tessera_core::keys::JobId;
use tessera_core::queue::{Attempt, TaskKey};

async fn drain(store: &Store, workers: usize) -> usize {
    let mut loops = tokio::task::JoinSet::new();
    for w in 0..workers {
        let store = store.clone();
        loops.spawn(async move {
            let name = format!("bench-{w}");
            let mut done = 0;
            while let Some(task) = store.claim(&name, 0).await.unwrap() {
                store
                    .finish(&task, &name, &Attempt::Completed, 0, 0.5)
                    .await
                    .unwrap();
                done += 1;
            }
            done
        });
    }
    let mut total = 0;
    while let Some(done) = loops.join_next().await {
        total += done.unwrap();
    }
    total
}

async fn run(url: &str, tasks: u32, workers: usize) -> f64 {
    let store = Store::connect(url).await.unwrap();
    let job = JobId::new(format!("bench-{workers}")).unwrap();
    for shard in 0..tasks {
        let key = TaskKey {
            job_id: job.clone(),
            stage: JobStage::Ingest,
            shard,
        };
        store.enqueue(&key, 5, 0).await.unwrap();
    }
    let start = Instant::now();
    let done = drain(&store, workers).await;
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(done, tasks as usize, "every task once");
    f64::from(tasks) / seconds
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let tasks: u32 = std::env::args().nth(1).map_or(2000, |n| n.parse().unwrap());
    let admin = std::env::var("TESSERA_TEST_POSTGRES")
        .expect("TESSERA_TEST_POSTGRES (source scripts/env.sh && ensure_postgres)");
    let dir = tempfile::tempdir().unwrap();
    println!(
        "Claim, then finish as completed, {tasks} tasks; tasks per second (higher is better).\n"
    );
    println!("| store | 1 worker | 2 workers | 2 ÷ 1 |");
    println!("|---|---|---|---|");
    for dialect in ["SQLite (WAL, file)", "PostgreSQL 15"] {
        let mut rates = Vec::new();
        for workers in [1, 2] {
            let url = if dialect.starts_with("SQLite") {
                format!(
                    "sqlite:{}",
                    dir.path().join(format!("q{workers}.db")).display()
                )
            } else {
                let name = format!("tessera_bench_{workers}_{}", std::process::id());
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                    .await
                    .unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
            };
            rates.push(run(&url, tasks, workers).await);
        }
        println!(
            "| {dialect} | {:.0} | {:.0} | {:.2}× |",
            rates[0],
            rates[1],
            rates[1] / rates[0]
        );
    }
}
