//! Presigned URLs for fixed inputs, and a presigning rate.
//!
//! ```text
//! presign-probe            print the URLs for the fixed inputs (compared native vs wasm in CI)
//! presign-probe --bench N  presign N PUT URLs (three signed headers) and print URLs per second
//! ```
//!
//! Built natively and for `wasm32-wasip1` (run by `node tests/wasi.mjs`), so the same inputs
//! can be compared byte for byte and timed on both. It lives beside [`tessera_core::presign`],
//! the code it checks.

use std::time::{Duration, Instant, UNIX_EPOCH};

use tessera_core::presign::{Addressing, Method, StorageTarget};

fn main() {
    let aws = StorageTarget {
        endpoint: "https://s3.amazonaws.com".into(),
        bucket: "examplebucket".into(),
        region: "us-east-1".into(),
        addressing: Addressing::VirtualHost,
        access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
    };
    let local = StorageTarget {
        endpoint: "http://127.0.0.1:9000".into(),
        addressing: Addressing::Path,
        ..aws.clone()
    };
    let at = UNIX_EPOCH + Duration::from_secs(1_369_353_600); // 2013-05-24T00:00:00Z
    let key = "processed/palms/0190b6c4/palms_img-0042_20240309_256x256.jpg";
    let headers = [
        ("content-type", "image/jpeg"),
        ("content-length", "18336"),
        (
            "x-amz-checksum-sha256",
            "e3FhVkMYroxnTUSDZ0u+SiF84YBUlSIB+ZJKnTGtlb8=",
        ),
    ];
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, n] = &args[..]
        && flag == "--bench"
    {
        let n: u32 = n.parse().expect("--bench N");
        let start = Instant::now();
        let mut bytes = 0;
        for i in 0..n {
            let t = at + Duration::from_secs(u64::from(i));
            bytes += local
                .presign(Method::Put, key, &headers, Duration::from_secs(900), t)
                .unwrap()
                .url
                .len();
        }
        let elapsed = start.elapsed().as_secs_f64();
        println!(
            "{:.0} presigned URLs/s ({n} in {elapsed:.3} s, {bytes} bytes)",
            f64::from(n) / elapsed
        );
        return;
    }
    let expires = Duration::from_secs(86_400);
    println!(
        "{}",
        aws.presign(Method::Get, "test.txt", &[], expires, at)
            .unwrap()
            .url
    );
    println!(
        "{}",
        local
            .presign(Method::Put, key, &headers, Duration::from_secs(900), at)
            .unwrap()
            .url
    );
    println!(
        "{}",
        local
            .presign(Method::Head, key, &[], Duration::from_secs(60), at)
            .unwrap()
            .url
    );
    println!(
        "{}",
        aws.presign(Method::Get, "a b/c+d/é.jpg", &[], expires, at)
            .unwrap()
            .url
    );
}
