//! Webhook deliveries per second from the outbox to a local receiver: `N` upload jobs are
//! created (each records an `upload.completed` delivery, as a completed upload does), then
//! the delivery loop ([`tessera_batch::webhook::run`]) drains them, signing each, to a hyper
//! server on loopback answering 204; with 1 and 4 deliveries in flight, on SQLite. Also
//! Standard Webhooks signatures per second of one such body. Prints a Markdown table.
//!
//! ```sh
//! cargo run --release -p tessera-batch --example webhook_throughput -- 2000
//! ```

use std::convert::Infallible;
use std::time::{Duration, Instant};

use tessera_batch::store::Store;
use tessera_batch::webhook::{DeliveryOptions, register};
use tessera_core::job::{JobInput, JobRequest};
use tessera_core::keys::{ImageId, JobId, Project};
use tessera_core::webhook::{CreateWebhook, WebhookEvent, WebhookSecret, sign};

/// A receiver on loopback that answers every request 204; its address.
async fn receiver() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    let mut answer =
                        http::Response::new(http_body_util::Empty::<bytes::Bytes>::new());
                    *answer.status_mut() = http::StatusCode::NO_CONTENT;
                    Ok::<_, Infallible>(answer)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Deliveries per second with `concurrency` in flight: `n` events recorded, then drained.
async fn deliveries_per_second(n: usize, concurrency: usize, url: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite:{}", dir.path().join("b.sqlite").display()))
        .await
        .unwrap();
    let project = Project::new("bench").unwrap();
    let hook = CreateWebhook {
        project: project.as_str().to_owned(),
        url: url.to_owned(),
        events: vec![WebhookEvent::UploadCompleted],
    };
    register(&store, &hook, true).await.unwrap().unwrap();
    for i in 0..n {
        let request = JobRequest {
            upload_id: Some(format!("upload-{i}")),
            project: project.clone(),
            inputs: vec![JobInput {
                image_id: ImageId::new(format!("image-{i}")).unwrap(),
                original_key: format!("original-uploads/bench/image-{i}/x.jpg"),
                metadata_key: format!("metadata/bench/image-{i}.json"),
                media_type: "image/jpeg".into(),
                sha256: tessera_core::Sha256Digest::of(b"x"),
            }],
            webhook: None,
        };
        let job_id = JobId::new(format!("job-{i}")).unwrap();
        store.create_job(&job_id, &request, 0).await.unwrap();
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let options = DeliveryOptions {
        allow_local: true,
        concurrency,
        poll: Duration::from_millis(5),
        ..DeliveryOptions::default()
    };
    let started = Instant::now();
    let deliver = tokio::spawn(tessera_batch::webhook::run(
        store.clone(),
        "bench".into(),
        options,
        stopped,
    ));
    loop {
        let snapshot = store.snapshot(0).await.unwrap();
        let delivered = snapshot
            .deliveries
            .iter()
            .find(|(state, _)| state == "delivered")
            .map_or(0, |(_, count)| *count);
        if delivered as usize == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    deliver.await.unwrap();
    n as f64 / seconds
}

fn main() {
    let n: usize = std::env::args().nth(1).map_or(2000, |a| a.parse().unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let url = format!("http://{}/hook", receiver().await);
        let one = deliveries_per_second(n, 1, &url).await;
        let four = deliveries_per_second(n, 4, &url).await;
        let secret = WebhookSecret::from_bytes(&[7; 32]).unwrap();
        let body = vec![b'x'; 2048];
        let signs: u32 = 100_000;
        let started = Instant::now();
        for i in 0..signs {
            std::hint::black_box(sign(
                std::slice::from_ref(&secret),
                "msg_1",
                i64::from(i),
                &body,
            ));
        }
        let per_second = f64::from(signs) / started.elapsed().as_secs_f64();
        println!("| measure | per second |");
        println!("|---|---|");
        println!("| deliveries, 1 in flight ({n}) | {one:.0} |");
        println!("| deliveries, 4 in flight ({n}) | {four:.0} |");
        println!("| signatures of a 2 KB body (one core) | {per_second:.0} |");
    });
}
