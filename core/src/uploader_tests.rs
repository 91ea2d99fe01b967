//! The upload client's decisions, against a scripted edge: batching, the in-flight cap, retries,
//! refusals, expiry, offline spells, and a restore from saved state.

use std::collections::BTreeSet;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::exif::ExifMetadata;
use crate::presign::{Method, PresignedRequest};
use crate::upload::{DeclaredObject, DeclaredSha256};

const NOW: f64 = 1_800_000_000_000.0;

/// A declared image whose original's SHA-256 is `n` spelled in 64 hex digits.
fn image(n: u32) -> DeclaredImage {
    DeclaredImage {
        file_name: format!("photo-{n}.jpg"),
        exif: ExifMetadata::default(),
        objects: ObjectKind::ALL
            .into_iter()
            .map(|kind| DeclaredObject {
                kind,
                content_type: "image/jpeg".to_owned(),
                size_bytes: if kind == ObjectKind::Original {
                    1000
                } else {
                    100
                },
                sha256: DeclaredSha256 {
                    hex: format!("{n:0>60}{:04x}", kind as u32),
                },
                width: 256,
                height: 256,
            })
            .collect(),
    }
}

fn key(n: u32) -> String {
    format!("{n:0>60}0000")
}

/// What the edge answers a plan: image ids `{upload}-{i}`, six targets each, URLs valid for
/// `valid_s` seconds after `now_ms`.
fn answer(body: &UploadRequest, upload_id: &str, now_ms: f64, valid_s: u64) -> UploadCreated {
    let expires_at = UNIX_EPOCH + Duration::from_millis(now_ms as u64 + valid_s * 1000);
    UploadCreated {
        upload_id: upload_id.to_owned(),
        objects: body
            .files
            .iter()
            .enumerate()
            .flat_map(|(i, file)| {
                file.objects.iter().map(move |o| UploadTarget {
                    image_id: format!("{upload_id}-{i}"),
                    kind: o.kind,
                    key: format!("{upload_id}/{i}/{}", o.kind.as_str()),
                    request: PresignedRequest {
                        method: Method::Put,
                        url: format!("http://storage/{upload_id}/{i}"),
                        headers: Vec::new(),
                        expires_at,
                    },
                })
            })
            .collect(),
    }
}

fn completed(upload_id: &str) -> UploadCompleted {
    UploadCompleted {
        upload_id: upload_id.to_owned(),
        job_id: format!("job-{upload_id}"),
        images: Vec::new(),
    }
}

fn failure(status: u16) -> Failure {
    Failure {
        status,
        message: format!("status {status}"),
        retry_after_s: None,
    }
}

/// Drives `uploader` to the end against an edge and storage that accept everything, except
/// what `refuse` turns into a failure; returns the requests in the order sent.
fn drive(
    uploader: &mut Uploader,
    mut refuse: impl FnMut(&Request) -> Option<Failure>,
) -> Vec<Request> {
    let mut sent = Vec::new();
    let mut now = NOW;
    let mut uploads = 0;
    for _ in 0..10_000 {
        let mut batch = Vec::new();
        loop {
            match uploader.next(now) {
                Next::Send(request) => batch.push(request),
                Next::Wait { until_ms } => {
                    if batch.is_empty() {
                        now = until_ms.expect("something to wait for");
                    }
                    break;
                }
                Next::Finished => {
                    assert!(batch.is_empty());
                    return sent;
                }
                Next::Offline => panic!("offline"),
            }
        }
        assert!(batch.len() <= 4, "{} requests at once", batch.len());
        for request in batch {
            let refused = refuse(&request);
            match &request {
                Request::Plan { id, body } => {
                    uploads += 1;
                    let result = refused
                        .map_or_else(|| Ok(answer(body, &format!("u{uploads}"), now, 900)), Err);
                    uploader.planned(*id, result, now, 0.5);
                }
                Request::Put { id, .. } => {
                    uploader.stored(*id, refused.map_or(Ok(()), Err), now, 0.5);
                }
                Request::Complete { id, upload_id } => {
                    let result = refused.map_or_else(|| Ok(completed(upload_id)), Err);
                    uploader.completed(*id, result, now, 0.5);
                }
            }
            sent.push(request);
        }
        now += 10.0;
    }
    panic!("never finished");
}

fn plans(sent: &[Request]) -> Vec<usize> {
    sent.iter()
        .filter_map(|r| match r {
            Request::Plan { body, .. } => Some(body.files.len()),
            _ => None,
        })
        .collect()
}

fn puts(sent: &[Request]) -> usize {
    sent.iter()
        .filter(|r| matches!(r, Request::Put { .. }))
        .count()
}

fn state(uploader: &Uploader, n: u32) -> &ImageState {
    &uploader.image(&key(n)).unwrap().state
}

#[test]
fn images_are_planned_fifty_a_request_with_at_most_four_requests_in_flight() {
    let mut uploader = Uploader::new("site-a");
    for n in 0..120 {
        assert!(uploader.add(image(n)));
    }
    assert!(!uploader.add(image(7)), "the same original is added once");
    let sent = drive(&mut uploader, |_| None);
    assert_eq!(plans(&sent), [50, 50, 20]);
    assert_eq!(puts(&sent), 120 * 6);
    let summary = uploader.summary();
    assert_eq!((summary.done, summary.failed, summary.queued), (120, 0, 0));
    assert_eq!(summary.bytes_stored, 120 * 1500);
    assert_eq!(summary.bytes_total, 120 * 1500);
    match state(&uploader, 51) {
        ImageState::Done {
            upload_id,
            job_id,
            image_id,
        } => {
            assert_eq!((upload_id.as_str(), job_id.as_str()), ("u2", "job-u2"));
            assert_eq!(image_id, "u2-1");
        }
        other => panic!("{other:?}"),
    }
    // The first plan carries the first fifty added, in order.
    let Request::Plan { body, .. } = &sent[0] else {
        panic!()
    };
    assert_eq!(body.project, "site-a");
    assert_eq!(body.files[0].file_name, "photo-0.jpg");
    assert_eq!(body.files[49].file_name, "photo-49.jpg");
    // Completed: nothing more to send, even after new images of the same files.
    assert!(!uploader.add(image(3)));
    assert_eq!(uploader.next(NOW), Next::Finished);
}

#[test]
fn transient_failures_are_retried_after_the_backoff_and_given_up_after_the_last_retry() {
    let mut uploader = Uploader::new("p");
    uploader.add(image(1));
    let Next::Send(Request::Plan { id, body }) = uploader.next(NOW) else {
        panic!()
    };
    let busy = Failure {
        retry_after_s: Some(3.0),
        ..failure(503)
    };
    uploader.planned(id, Err(busy), NOW, 0.0);
    assert_eq!(
        uploader.next(NOW + 1.0),
        Next::Wait {
            until_ms: Some(NOW + 3000.0)
        },
        "Retry-After is a floor"
    );
    let Next::Send(Request::Plan { id, .. }) = uploader.next(NOW + 3000.0) else {
        panic!()
    };
    uploader.planned(id, Ok(answer(&body, "u1", NOW, 900)), NOW, 0.5);
    // The original's PUT fails with no answer every time: 1 try + 6 retries, then final.
    let mut tries = 0;
    let mut now = NOW + 3000.0;
    loop {
        match uploader.next(now) {
            Next::Send(Request::Put { id, target, .. }) if target.kind == ObjectKind::Original => {
                tries += 1;
                uploader.stored(id, Err(Failure::no_answer("connection reset")), now, 0.999);
            }
            Next::Send(Request::Put { id, .. }) => uploader.stored(id, Ok(()), now, 0.5),
            Next::Wait { until_ms: Some(at) } => {
                assert!(at > now);
                now = at;
            }
            Next::Finished => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(tries, 7);
    let ImageState::Failed { reason } = state(&uploader, 1) else {
        panic!()
    };
    assert_eq!(
        reason,
        "storage refused original: no answer: connection reset (gave up after 6 retries)"
    );
    // Retried by hand: planned again from the start.
    assert!(uploader.retry(&key(1)));
    assert!(matches!(
        uploader.next(now),
        Next::Send(Request::Plan { .. })
    ));
}

#[test]
fn an_object_refused_by_storage_fails_its_image_and_the_others_are_planned_again() {
    let mut uploader = Uploader::new("p");
    for n in 0..3 {
        uploader.add(image(n));
    }
    let sent = drive(&mut uploader, |request| match request {
        Request::Put { target, .. } if target.key == "u1/1/augmented-90" => Some(failure(403)),
        _ => None,
    });
    assert_eq!(plans(&sent), [3, 2]);
    assert!(matches!(state(&uploader, 0), ImageState::Done { upload_id, .. } if upload_id == "u2"));
    assert!(matches!(state(&uploader, 2), ImageState::Done { upload_id, .. } if upload_id == "u2"));
    assert_eq!(
        state(&uploader, 1),
        &ImageState::Failed {
            reason: "storage refused augmented-90: HTTP 403: status 403".to_owned()
        }
    );
    // u1 was never completed.
    assert!(
        !sent
            .iter()
            .any(|r| matches!(r, Request::Complete { upload_id, .. } if upload_id == "u1"))
    );
}

#[test]
fn a_refused_batch_is_planned_again_one_image_a_request_so_only_the_bad_one_fails() {
    let mut uploader = Uploader::new("p");
    for n in 0..3 {
        uploader.add(image(n));
    }
    let sent = drive(&mut uploader, |request| match request {
        Request::Plan { body, .. } if body.files.iter().any(|f| f.file_name == "photo-1.jpg") => {
            Some(Failure {
                status: 400,
                message: "file 1: bad EXIF".to_owned(),
                retry_after_s: None,
            })
        }
        _ => None,
    });
    assert_eq!(plans(&sent), [3, 1, 1, 1]);
    assert!(matches!(state(&uploader, 0), ImageState::Done { .. }));
    assert!(matches!(state(&uploader, 2), ImageState::Done { .. }));
    assert_eq!(
        state(&uploader, 1),
        &ImageState::Failed {
            reason: "the edge refused the upload: HTTP 400: file 1: bad EXIF".to_owned()
        }
    );
}

#[test]
fn an_upload_whose_urls_are_about_to_expire_is_abandoned_and_planned_again() {
    let mut uploader = Uploader::new("p");
    uploader.add(image(1));
    let Next::Send(Request::Plan { id, body }) = uploader.next(NOW) else {
        panic!()
    };
    uploader.planned(id, Ok(answer(&body, "u1", NOW, 60)), NOW, 0.5);
    // Two objects stored while the URLs are fresh.
    for _ in 0..2 {
        let Next::Send(Request::Put { id, .. }) = uploader.next(NOW) else {
            panic!()
        };
        uploader.stored(id, Ok(()), NOW, 0.5);
    }
    assert_eq!(uploader.summary().bytes_stored, 1100);
    // 31 s before expiry: still sent. 30 s before: abandoned, planned again.
    let mut in_flight = Vec::new();
    for _ in 0..2 {
        let Next::Send(Request::Put { id, .. }) = uploader.next(NOW + 29_000.0) else {
            panic!()
        };
        in_flight.push(id);
    }
    // The upload has PUTs in flight: it is abandoned once they answer.
    let later = NOW + 30_000.0;
    assert!(matches!(
        uploader.next(later),
        Next::Wait { until_ms: None }
    ));
    for id in in_flight {
        uploader.stored(id, Ok(()), later, 0.5);
    }
    let Next::Send(Request::Plan { body, .. }) = uploader.next(later) else {
        panic!("expected a new plan")
    };
    assert_eq!(body.files.len(), 1);
    assert_eq!(uploader.uploads().count(), 0, "the old upload is dropped");
    assert_eq!(uploader.summary().bytes_stored, 0);
}

#[test]
fn urls_signed_for_less_than_a_minute_are_still_used_for_half_their_life() {
    let mut uploader = Uploader::new("p");
    uploader.add(image(1));
    let Next::Send(Request::Plan { id, body }) = uploader.next(NOW) else {
        panic!()
    };
    // Valid 20 s: PUTs start until 10 s before expiry, not never.
    uploader.planned(id, Ok(answer(&body, "u1", NOW, 20)), NOW, 0.5);
    let Next::Send(Request::Put { id, .. }) = uploader.next(NOW + 9_000.0) else {
        panic!("a PUT 11 s before expiry")
    };
    uploader.stored(id, Ok(()), NOW + 9_000.0, 0.5);
    let sent = drive(&mut uploader, |_| None);
    assert_eq!(plans(&sent), Vec::<usize>::new());
    assert!(matches!(state(&uploader, 1), ImageState::Done { .. }));
}

#[test]
fn offline_nothing_starts_and_waiting_for_the_network_spends_no_retry() {
    let mut uploader = Uploader::new("p");
    uploader.add(image(1));
    uploader.set_online(false);
    assert_eq!(uploader.next(NOW), Next::Offline);
    uploader.set_online(true);
    let Next::Send(Request::Plan { id, .. }) = uploader.next(NOW) else {
        panic!()
    };
    uploader.set_online(false);
    assert_eq!(uploader.next(NOW), Next::Wait { until_ms: None });
    for _ in 0..20 {
        // Each offline failure leaves the plan due at once, without counting.
        uploader.planned(id, Err(Failure::no_answer("offline")), NOW, 0.5);
    }
    assert_eq!(uploader.next(NOW), Next::Offline);
    uploader.set_online(true);
    let Next::Send(Request::Plan { id, .. }) = uploader.next(NOW) else {
        panic!()
    };
    uploader.planned(id, Err(Failure::no_answer("offline")), NOW, 0.0);
    assert!(matches!(state(&uploader, 1), ImageState::Queued));
}

#[test]
fn a_restored_uploader_puts_only_what_is_missing_and_completes_once() {
    let mut uploader = Uploader::new("p");
    uploader.add(image(1));
    uploader.add(image(2));
    let Next::Send(Request::Plan { id, body }) = uploader.next(NOW) else {
        panic!()
    };
    uploader.planned(id, Ok(answer(&body, "u1", NOW, 900)), NOW, 0.5);
    // Five PUTs answered, three still in flight when the page reloads.
    let mut stored = 0;
    for _ in 0..4 {
        let Next::Send(Request::Put { id, .. }) = uploader.next(NOW) else {
            panic!()
        };
        uploader.stored(id, Ok(()), NOW, 0.5);
        stored += 1;
    }
    for _ in 0..3 {
        assert!(matches!(
            uploader.next(NOW),
            Next::Send(Request::Put { .. })
        ));
    }
    let saved = serde_json::to_string(&uploader).unwrap();
    let mut restored: Uploader = serde_json::from_str(&saved).unwrap();
    let sent = drive(&mut restored, |_| None);
    assert_eq!(plans(&sent), Vec::<usize>::new());
    assert_eq!(puts(&sent), 12 - stored);
    let completes = sent
        .iter()
        .filter(|r| matches!(r, Request::Complete { upload_id, .. } if upload_id == "u1"))
        .count();
    assert_eq!(completes, 1);
    assert!(matches!(state(&restored, 2), ImageState::Done { .. }));
}

#[test]
fn a_plan_answer_of_the_wrong_shape_is_not_trusted() {
    let mut uploader = Uploader::new("p");
    uploader.add(image(1));
    let Next::Send(Request::Plan { id, body }) = uploader.next(NOW) else {
        panic!()
    };
    let mut short = answer(&body, "u1", NOW, 900);
    short.objects.pop();
    uploader.planned(id, Ok(short), NOW, 0.5);
    assert_eq!(uploader.uploads().count(), 0);
    assert!(matches!(
        uploader.next(NOW),
        Next::Wait { until_ms: Some(_) }
    ));
}

#[test]
fn the_page_plans_one_file_a_request_so_each_file_has_its_own_job() {
    let mut uploader = Uploader::new("site-a").with_max_files(1);
    for n in 0..3 {
        uploader.add(image(n));
    }
    let sent = drive(&mut uploader, |_| None);
    assert_eq!(plans(&sent), [1, 1, 1]);
    let jobs: BTreeSet<&str> = (0..3)
        .map(|n| match state(&uploader, n) {
            ImageState::Done { job_id, .. } => job_id.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(jobs.len(), 3);
    // Never more than the edge takes, never none.
    let mut many = Uploader::new("site-a").with_max_files(500);
    for n in 0..60 {
        many.add(image(n));
    }
    assert_eq!(plans(&drive(&mut many, |_| None)), [50, 10]);
}

#[test]
fn stored_objects_counts_an_uploading_images_objects_as_they_land() {
    let mut uploader = Uploader::new("site-a");
    uploader.add(image(0));
    uploader.add(image(1));
    assert_eq!(uploader.stored_objects(&key(0)), 0);
    let Next::Send(Request::Plan { id, body }) = uploader.next(NOW) else {
        panic!()
    };
    uploader.planned(id, Ok(answer(&body, "u1", NOW, 900)), NOW, 0.5);
    let mut landed = 0;
    while let Next::Send(Request::Put { id, image, .. }) = uploader.next(NOW) {
        uploader.stored(id, Ok(()), NOW, 0.5);
        if image == key(0) {
            landed += 1;
            assert_eq!(uploader.stored_objects(&key(0)), landed);
        }
    }
    assert_eq!(uploader.stored_objects(&key(0)), 6);
    assert_eq!(uploader.stored_objects(&key(1)), 6);
    assert_eq!(uploader.stored_objects("unknown"), 0);
}

#[test]
fn restored_images_keep_done_and_failed_and_queue_the_rest() {
    let mut uploader = Uploader::new("site-a");
    let done = ImageState::Done {
        upload_id: "old".into(),
        job_id: "job-old".into(),
        image_id: "img-old".into(),
    };
    let failed = ImageState::Failed {
        reason: "storage refused original: HTTP 403".into(),
    };
    let uploading = ImageState::Uploading {
        upload_id: "never-seen".into(),
    };
    assert!(uploader.restore(image(0), done.clone()));
    assert!(uploader.restore(image(1), failed.clone()));
    assert!(uploader.restore(image(2), uploading));
    assert!(!uploader.restore(image(0), ImageState::Queued), "once");
    assert_eq!(state(&uploader, 0), &done);
    assert_eq!(state(&uploader, 1), &failed);
    assert_eq!(state(&uploader, 2), &ImageState::Queued);
    let sent = drive(&mut uploader, |_| None);
    assert_eq!(plans(&sent), [1], "only the unfinished image is uploaded");
    assert_eq!(state(&uploader, 0), &done);
}

/// The size of the plan `uploader` sends at `now_ms`, or when it says to wait until.
fn plan_or_wait(uploader: &mut Uploader, now_ms: f64) -> Result<usize, Option<f64>> {
    match uploader.next(now_ms) {
        Next::Send(Request::Plan { body, .. }) => Ok(body.files.len()),
        Next::Wait { until_ms } => Err(until_ms),
        other => panic!("{other:?}"),
    }
}

#[test]
fn while_more_are_coming_a_partial_batch_waits_for_a_pause_or_ten_seconds() {
    let quiet = duration_ms(BATCH_QUIET);
    let mut uploader = Uploader::new("site-a");
    uploader.set_more_coming(true);
    assert_eq!(
        plan_or_wait(&mut uploader, NOW),
        Err(None),
        "nothing yet, not finished"
    );

    // Images arriving faster than the pause: the batch waits for the stream to pause.
    uploader.add(image(0));
    assert_eq!(plan_or_wait(&mut uploader, NOW), Err(Some(NOW + quiet)));
    uploader.add(image(1));
    let later = NOW + 600.0;
    assert_eq!(plan_or_wait(&mut uploader, later), Err(Some(later + quiet)));
    assert_eq!(plan_or_wait(&mut uploader, later + quiet), Ok(2), "paused");

    // A trickle that never pauses long enough is planned after BATCH_MAX_WAIT.
    let start = NOW + 10_000.0;
    let mut now = start;
    let mut n = 2;
    let planned = loop {
        uploader.add(image(n));
        n += 1;
        match plan_or_wait(&mut uploader, now) {
            Ok(files) => break files,
            Err(until) => assert!(until.unwrap() <= start + duration_ms(BATCH_MAX_WAIT)),
        }
        now += quiet * 0.9;
    };
    assert!(
        now >= start + duration_ms(BATCH_MAX_WAIT),
        "{}",
        now - start
    );
    assert_eq!(planned, 13, "every image of the trickle so far");

    // A full batch goes at once; the rest is planned as soon as no more are coming.
    for m in 100..160 {
        uploader.add(image(m));
    }
    assert_eq!(plan_or_wait(&mut uploader, now), Ok(50));
    assert!(plan_or_wait(&mut uploader, now).is_err());
    uploader.set_more_coming(false);
    assert_eq!(plan_or_wait(&mut uploader, now), Ok(10));

    // Not finished while more are coming; finished once not.
    let mut uploader = Uploader::new("site-a");
    uploader.add(image(0));
    uploader.set_more_coming(true);
    let mut done = uploader.clone();
    done.set_more_coming(false);
    drive(&mut done, |_| None);
    assert!(done.is_finished());
    done.set_more_coming(true);
    assert_eq!(done.next(NOW), Next::Wait { until_ms: None });
    done.set_more_coming(false);
    assert_eq!(done.next(NOW), Next::Finished);
}
