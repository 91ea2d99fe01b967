//! Originals that arrive by another route than the browser's: put into
//! `original-uploads/{project}/…` by any S3 client (`aws s3 cp`, a sync tool, a camera's
//! uploader). Storage announces them in an event notification; this module decides which
//! notifications name such an object ([`parse_notifications`]), which keys are arrivals
//! ([`classify`]) and the ids that make processing one idempotent ([`ArrivalIds`]). The
//! batch backend then treats the object as the browser would have: [`crate::preprocess()`],
//! derivatives and sidecar under the usual keys, the record, a job.
//!
//! Notification formats read (each also inside an SNS envelope, and several in a JSON array,
//! as a queue consumer forwards a batch):
//! - S3 event notifications, as S3 sends them to SQS, SNS or Lambda: `{"Records": [{"eventName":
//!   "ObjectCreated:Put", "s3": {"object": {"key", "size", "eTag"}}}]}`, keys URL-encoded
//!   (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html>);
//! - S3 events on EventBridge: `{"source": "aws.s3", "detail-type": "Object Created",
//!   "detail": {"object": {"key", "size", "etag"}}}`
//!   (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html>);
//! - R2 event notification messages: `{"action": "PutObject", "object": {"key", "size",
//!   "eTag"}}` (<https://developers.cloudflare.com/r2/buckets/event-notifications/>).
//!
//! Deletions and every other event are read and left out; `s3:TestEvent` names no object.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::keys::{ImageId, Project};
use crate::manifest::Sha256Digest;

/// The prefix under which any client may put originals.
pub const ORIGINALS_PREFIX: &str = "original-uploads/";

/// The URL lifetime given to the one-image upload that records an image found in storage (an
/// arrival, a reindexed sidecar). It is planned and completed at once and its URLs are never
/// handed out; a week is the margin before the edge's expiry sweep would announce a crash
/// between the two as `upload.expired` (the next notice completes it).
pub const RECORD_EXPIRES_IN: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// The version of an object that a settled arrival is remembered by: its ETag (quotes
/// trimmed) when storage gives one, else its size in bytes. A new version of a key is looked
/// at again.
#[must_use]
pub fn object_version(etag: Option<&str>, size_bytes: u64) -> String {
    etag.map_or_else(
        || size_bytes.to_string(),
        |e| e.trim_matches('"').to_owned(),
    )
}

/// An object that a notification says was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticedObject {
    /// Its key, decoded.
    pub key: String,
    /// Its length in bytes, when the notification says.
    pub size_bytes: Option<u64>,
    /// Its ETag without quotes, when the notification says.
    pub etag: Option<String>,
}

/// A body that is not a notification of a known format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotificationError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    InvalidJson(String),
    /// JSON of no known format.
    #[error(
        "not an S3 event notification (Records[].s3), an EventBridge S3 event (source aws.s3) \
         or an R2 event notification (action, object): {0}"
    )]
    Unrecognised(String),
}

/// The objects created according to `body`: one notification of a format the module docs
/// list, an SNS envelope around one, or a JSON array of them. Deletions are left out.
///
/// # Errors
/// [`NotificationError`] when `body` is not JSON or is of no known format.
pub fn parse_notifications(body: &[u8]) -> Result<Vec<NoticedObject>, NotificationError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| NotificationError::InvalidJson(e.to_string()))?;
    let mut objects = Vec::new();
    notified(&value, &mut objects)?;
    Ok(objects)
}

fn notified(value: &Value, objects: &mut Vec<NoticedObject>) -> Result<(), NotificationError> {
    let text = |v: &Value, name: &str| v.get(name).and_then(Value::as_str).map(str::to_owned);
    let object = |o: &Value, key: String, etag_field: &str| NoticedObject {
        key,
        size_bytes: o.get("size").and_then(Value::as_u64),
        etag: text(o, etag_field).map(|e| e.trim_matches('"').to_owned()),
    };
    let unrecognised = || {
        let mut shown = value.to_string();
        if shown.len() > 120 {
            let cut = (0..=120).rev().find(|i| shown.is_char_boundary(*i));
            shown.truncate(cut.unwrap_or(0));
            shown.push('…');
        }
        NotificationError::Unrecognised(shown)
    };
    if let Some(items) = value.as_array() {
        return items.iter().try_for_each(|item| notified(item, objects));
    }
    if let Some(records) = value.get("Records").and_then(Value::as_array) {
        for record in records {
            let created =
                text(record, "eventName").is_some_and(|n| n.starts_with("ObjectCreated:"));
            let o = record.pointer("/s3/object").ok_or_else(unrecognised)?;
            let key = text(o, "key").ok_or_else(unrecognised)?;
            if created {
                objects.push(object(o, decode_event_key(&key), "eTag"));
            }
        }
        return Ok(());
    }
    if text(value, "Type").as_deref() == Some("Notification") {
        let message = text(value, "Message").ok_or_else(unrecognised)?;
        let inner: Value = serde_json::from_str(&message)
            .map_err(|e| NotificationError::InvalidJson(format!("the SNS Message: {e}")))?;
        return notified(&inner, objects);
    }
    if text(value, "Event").as_deref() == Some("s3:TestEvent") {
        return Ok(());
    }
    if text(value, "source").as_deref() == Some("aws.s3") {
        let o = value.pointer("/detail/object").ok_or_else(unrecognised)?;
        let key = text(o, "key").ok_or_else(unrecognised)?;
        if text(value, "detail-type").as_deref() == Some("Object Created") {
            objects.push(object(o, key, "etag"));
        }
        return Ok(());
    }
    if let (Some(action), Some(o)) = (text(value, "action"), value.get("object")) {
        let key = text(o, "key").ok_or_else(unrecognised)?;
        if matches!(
            action.as_str(),
            "PutObject" | "CopyObject" | "CompleteMultipartUpload"
        ) {
            objects.push(object(o, key, "eTag"));
        }
        return Ok(());
    }
    Err(unrecognised())
}

/// An S3 event notification's key: URL-encoded as a form value (`+` for a space).
fn decode_event_key(key: &str) -> String {
    let plus_as_space = key.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8_lossy()
        .into_owned()
}

/// What a created key is to Tessera.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArrivalKey {
    /// An original put under `original-uploads/{project}/` by another route: to be processed.
    Arrival {
        /// The project, the key's first folder.
        project: Project,
        /// The last part of the key: the file's name, for the slug.
        file_name: String,
    },
    /// An original in Tessera's own layout
    /// (`original-uploads/{project}/{image_id}/{project}_{slug}_{YYYYMMDD}.{ext}`): part of
    /// an upload planned at the edge, recorded when that upload is completed.
    Planned,
    /// Outside `original-uploads/`, or a folder marker: not an original.
    Ignored,
    /// Under `original-uploads/` but its first folder is not a project name.
    BadProject {
        /// The folder.
        folder: String,
        /// Why it is not a project name.
        reason: String,
    },
}

/// What the object at `key` is: an arrival to process, part of a planned upload, or neither.
#[must_use]
pub fn classify(key: &str) -> ArrivalKey {
    let Some(rest) = key.strip_prefix(ORIGINALS_PREFIX) else {
        return ArrivalKey::Ignored;
    };
    let Some((folder, path)) = rest.split_once('/') else {
        return ArrivalKey::Ignored; // directly under the prefix: no project
    };
    if path.is_empty() || path.ends_with('/') {
        return ArrivalKey::Ignored;
    }
    let project = match Project::new(folder) {
        Ok(project) => project,
        Err(e) => {
            return ArrivalKey::BadProject {
                folder: folder.to_owned(),
                reason: e.to_string(),
            };
        }
    };
    if is_planned(&project, path) {
        return ArrivalKey::Planned;
    }
    let file_name = path.rsplit('/').next().unwrap_or(path).to_owned();
    ArrivalKey::Arrival { project, file_name }
}

/// Whether `path` (the key after `original-uploads/{project}/`) is
/// `{image_id}/{project}_{slug}_{YYYYMMDD}.{jpg|png|tif}` ([`crate::keys::ObjectNaming`]).
fn is_planned(project: &Project, path: &str) -> bool {
    let Some((image_id, name)) = path.split_once('/') else {
        return false;
    };
    let Some((base, ext)) = name.rsplit_once('.') else {
        return false;
    };
    let Some(rest) = base.strip_prefix(&format!("{project}_")) else {
        return false;
    };
    let Some((slug, date)) = rest.rsplit_once('_') else {
        return false;
    };
    ImageId::new(image_id).is_ok()
        && matches!(ext, "jpg" | "png" | "tif")
        && !slug.is_empty()
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && date.len() == 8
        && date.bytes().all(|b| b.is_ascii_digit())
}

/// The ids of an arrival, all from its project and its bytes' SHA-256, so that the same
/// file noticed twice (two events, an event and the reconciliation, two keys) is recorded
/// once: the image id, and the id of the one-image upload that records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrivalIds {
    /// The first 32 hex digits of SHA-256(`{project}/{sha256 hex}`): the same file in two
    /// projects is two images.
    pub image_id: ImageId,
    /// `s3-{image_id}`: the upload under which the metadata store records it, and whose job
    /// the batch backend creates once.
    pub upload_id: String,
}

impl ArrivalIds {
    /// The ids of the file with `sha256` arriving in `project`.
    #[must_use]
    pub fn of(project: &Project, sha256: &Sha256Digest) -> Self {
        let scoped = Sha256Digest::of(format!("{project}/{}", sha256.hex).as_bytes());
        let image_id = ImageId::from_sha256_hex(&scoped.hex);
        let upload_id = format!("s3-{image_id}");
        Self {
            image_id,
            upload_id,
        }
    }
}

/// The id under which a refused arrival is announced once: `s3-failed-` and 32 hex digits of
/// SHA-256 over its key and version (its ETag, else its size), so that the same bad object
/// noticed twice is announced once, and a corrected file put at the same key is looked at
/// again.
#[must_use]
pub fn failure_id(key: &str, version: &str) -> String {
    let digest = Sha256Digest::of(format!("{key}\n{version}").as_bytes());
    format!("s3-failed-{}", &digest.hex[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(body: &str) -> Vec<String> {
        parse_notifications(body.as_bytes())
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect()
    }

    #[test]
    fn s3_event_notifications_are_read_with_their_keys_decoded() {
        // The shape of AWS's documented example (notification-content-structure.html).
        let body = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-west-2",
          "eventTime":"1970-01-01T00:00:00.000Z","eventName":"ObjectCreated:Put",
          "s3":{"s3SchemaVersion":"1.0","configurationId":"testConfigRule",
                "bucket":{"name":"mybucket","arn":"arn:aws:s3:::mybucket"},
                "object":{"key":"original-uploads/farm/Field+A/IMG%20%281%29.jpg","size":1024,
                          "eTag":"0123456789abcdef0123456789abcdef","sequencer":"0A1B2C3D4E5F678901"}}},
          {"eventName":"ObjectRemoved:Delete","s3":{"object":{"key":"original-uploads/farm/x.jpg"}}}]}"#;
        let objects = parse_notifications(body.as_bytes()).unwrap();
        assert_eq!(
            objects,
            vec![NoticedObject {
                key: "original-uploads/farm/Field A/IMG (1).jpg".into(),
                size_bytes: Some(1024),
                etag: Some("0123456789abcdef0123456789abcdef".into()),
            }]
        );
    }

    #[test]
    fn eventbridge_r2_sns_and_batches_are_read() {
        let eventbridge = r#"{"version":"0","detail-type":"Object Created","source":"aws.s3",
          "detail":{"bucket":{"name":"b"},"object":{"key":"original-uploads/p/a b.tif","size":5,"etag":"e-2"},
                    "reason":"CompleteMultipartUpload"}}"#;
        assert_eq!(keys(eventbridge), ["original-uploads/p/a b.tif"]);
        let r2 = r#"{"account":"3f4b","action":"CompleteMultipartUpload","bucket":"b",
          "object":{"key":"original-uploads/p/x.jpg","size":65536,"eTag":"c846"},"eventTime":"2024-05-24T19:36:44.379Z"}"#;
        assert_eq!(keys(r2), ["original-uploads/p/x.jpg"]);
        let r2_delete =
            r#"{"action":"DeleteObject","bucket":"b","object":{"key":"original-uploads/p/x.jpg"}}"#;
        assert!(keys(r2_delete).is_empty());
        let sns = serde_json::json!({"Type": "Notification", "Message": r2}).to_string();
        assert_eq!(keys(&sns), ["original-uploads/p/x.jpg"]);
        let batch = format!("[{r2}, {eventbridge}]");
        assert_eq!(keys(&batch).len(), 2);
        let test_event = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#;
        assert!(keys(test_event).is_empty());
    }

    #[test]
    fn other_bodies_are_refused_with_what_was_expected() {
        assert!(matches!(
            parse_notifications(b"{"),
            Err(NotificationError::InvalidJson(_))
        ));
        let e = parse_notifications(br#"{"hello":"world"}"#).unwrap_err();
        assert!(e.to_string().contains("Records[].s3"), "{e}");
        let e = parse_notifications(br#"{"Records":[{"eventName":"ObjectCreated:Put"}]}"#);
        assert!(e.is_err());
    }

    #[test]
    fn keys_are_arrivals_planned_or_ignored() {
        let project = Project::new("farm").unwrap();
        assert_eq!(
            classify("original-uploads/farm/2024/field a/DSC_0001.JPG"),
            ArrivalKey::Arrival {
                project: project.clone(),
                file_name: "DSC_0001.JPG".into()
            }
        );
        assert_eq!(
            classify("original-uploads/farm/photo.png"),
            ArrivalKey::Arrival {
                project,
                file_name: "photo.png".into()
            }
        );
        assert_eq!(
            classify("original-uploads/farm/0f3c9a/farm_img-0042_20240131.jpg"),
            ArrivalKey::Planned
        );
        // The layout's name in another project's folder is not that project's plan.
        assert!(matches!(
            classify("original-uploads/farm/0f3c9a/other_img_20240131.jpg"),
            ArrivalKey::Arrival { .. }
        ));
        for ignored in [
            "processed/farm/x.jpg",
            "original-uploads/x.jpg",
            "original-uploads/farm/",
            "original-uploads/farm/sub/",
        ] {
            assert_eq!(classify(ignored), ArrivalKey::Ignored, "{ignored}");
        }
        assert!(matches!(
            classify("original-uploads/Farm_1/x.jpg"),
            ArrivalKey::BadProject { folder, .. } if folder == "Farm_1"
        ));
    }

    #[test]
    fn arrival_ids_depend_on_project_and_bytes_only() {
        let sha = Sha256Digest::of(b"a photo");
        let a = ArrivalIds::of(&Project::new("farm").unwrap(), &sha);
        assert_eq!(a, ArrivalIds::of(&Project::new("farm").unwrap(), &sha));
        assert_ne!(
            a.image_id,
            ArrivalIds::of(&Project::new("other").unwrap(), &sha).image_id
        );
        assert_eq!(a.upload_id, format!("s3-{}", a.image_id));
        assert_eq!(a.image_id.as_str().len(), 32);
        assert_ne!(failure_id("k", "e1"), failure_id("k", "e2"));
        assert_eq!(object_version(Some("\"abc\""), 5), "abc");
        assert_eq!(object_version(None, 5), "5");
        assert!(failure_id("k", "e1").starts_with("s3-failed-"));
    }
}
