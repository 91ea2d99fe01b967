//! The OpenAPI 3.1 document served at `GET /v1/openapi.json`. Schemas are derived with utoipa
//! from the same types the router serialises, so the document cannot drift from them; the
//! rules the server enforces beyond the types (patterns, ranges, the six objects of an image
//! in order, the limits of [`UploadPolicy`]) are then written into it from the same constants
//! tessera-core checks against, and every status a route answers is listed. A request the
//! document describes is answered 2xx (or 404/409 for ids and objects that do not exist); one
//! it does not describe is refused with 4xx. Schemathesis holds the server to both in CI.

use serde_json::{Value, json};
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApiBuilder};

use crate::wire::{
    Download, ImageAnswer, SearchPage, UploadCompleted, UploadCreated, UploadTarget,
};
use tessera_core::error::{ErrorBody, ErrorCode, ObjectProblem};
use tessera_core::exif::{DATE_PATTERN, ExifMetadata, GpsPosition, taken_at_pattern};
use tessera_core::job::{
    InputOutcome, InputState, JobCursor, JobPage, JobQuery, JobResults, JobStage, JobState,
    JobStatus, PhotoResult, Progress, ResultObject,
};
use tessera_core::job_inputs::{
    CreateJob, FORM_FILES, FORM_PROJECT, JobPosted, JobSearch, MAX_JOB_INPUTS, RefusedFile,
};
use tessera_core::keys::Project;
use tessera_core::limits::ImageFormat;
use tessera_core::presign::{Method, PresignedRequest};
use tessera_core::search::{ImageQuery, SearchCursor};
use tessera_core::upload::{
    DERIVATIVE_CONTENT_TYPE, DeclaredImage, DeclaredObject, DeclaredSha256, FILE_NAME_CHARS,
    ORIGINAL_FORMATS, UploadPolicy, UploadRequest,
};
use tessera_core::webhook::{
    CreateWebhook, DeliveryPage, DeliveryState, MAX_DELIVERY_PAGE, MAX_URL_BYTES, WebhookDelivery,
    WebhookEndpoint, WebhookEvent,
};
use tessera_core::{DateSource, Manifest, ManifestObject, ObjectKind, Sha256Digest};

/// The error answers of a route: status → description.
fn errors(statuses: &[(&str, &str)]) -> Value {
    let mut responses = serde_json::Map::new();
    for (status, description) in statuses {
        let mut response = json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        });
        if *status == "429" {
            response["headers"] = json!({"Retry-After": {
                "description": "seconds until a request is accepted again",
                "required": true,
                "schema": {"type": "integer", "minimum": 0},
            }});
        }
        responses.insert((*status).to_owned(), response);
    }
    Value::Object(responses)
}

/// The statuses every route behind the API key may answer besides its own.
const KEYED: [(&str, &str); 6] = [
    ("401", "missing or unknown API key"),
    (
        "403",
        "the API key does not reach the project the request concerns",
    ),
    ("408", "the request body did not arrive in time"),
    ("413", "request body over the limit"),
    (
        "429",
        "rate limited (per API key, or per client address after failed authentications); see Retry-After",
    ),
    (
        "500",
        "an internal failure; logged with its details, answered without them",
    ),
];

/// An operation behind the API key: `ok` is (status, description, schema name), `own` the
/// errors it answers besides [`KEYED`].
fn keyed(summary: &str, ok: (&str, &str, &str), own: &[(&str, &str)]) -> Value {
    let (status, description, schema) = ok;
    let mut responses = errors(&[own, &KEYED[..]].concat());
    responses[status] = json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}},
    });
    json!({
        "summary": summary,
        "security": [{"api_key": []}],
        "responses": responses,
    })
}

fn path_id(description: &str) -> Value {
    json!({"name": "id", "in": "path", "required": true, "description": description,
           "schema": {"type": "string", "minLength": 1}})
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    let mut parameter =
        json!({"name": name, "in": "query", "required": false, "description": description});
    parameter["schema"] = schema;
    parameter
}

fn paths() -> Value {
    let bad_request = ("400", "the request is invalid: `code` says which rule");
    let date = json!({"type": "string", "pattern": format!("^{DATE_PATTERN}$")});
    let longitude = json!({"type": "number", "minimum": -180, "maximum": 180});
    let latitude = json!({"type": "number", "minimum": -90, "maximum": 90});

    let mut create = keyed(
        "Validate the client's manifests, decide every key, presign one PUT per object",
        ("201", "presigned PUTs, six per image", "UploadCreated"),
        &[bad_request],
    );
    create["requestBody"] = json!({
        "required": true,
        "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/UploadRequest"},
            "example": example_upload(),
        }},
    });
    create["responses"]["201"]["links"] = json!({
        "complete": {
            "operationId": "completeUpload",
            "parameters": {"id": "$response.body#/upload_id"},
        },
        "image": {
            "operationId": "getImage",
            "parameters": {"id": "$response.body#/objects/0/image_id"},
        },
    });
    create["operationId"] = json!("createUpload");

    let mut complete = keyed(
        "HEAD-verify every object, write the sidecars, record the images, trigger a batch job (idempotent)",
        ("200", "recorded; the job id", "UploadCompleted"),
        &[
            ("404", "no such upload"),
            (
                "409",
                "objects missing or different from the declared size or SHA-256; listed in `objects`",
            ),
            (
                "502",
                "the batch backend refused the job; complete again to retry",
            ),
        ],
    );
    complete["operationId"] = json!("completeUpload");
    complete["parameters"] = json!([path_id("the upload_id from POST /v1/uploads")]);
    complete["responses"]["200"]["links"] = json!({
        "job": {"operationId": "getJob", "parameters": {"id": "$response.body#/job_id"}},
        "image": {"operationId": "getImage", "parameters": {"id": "$response.body#/images/0"}},
    });

    let mut search = keyed(
        "Search records by acquisition date and GPS bounding box",
        ("200", "a page of records", "SearchPage"),
        &[bad_request],
    );
    search["operationId"] = json!("searchImages");
    let mut bbox = query(
        "bbox",
        "minLon,minLat,maxLon,maxLat in WGS 84 degrees; minLon > maxLon crosses the antimeridian, minLat > maxLat finds nothing",
        json!({"type": "array", "prefixItems": [longitude, latitude, longitude, latitude],
                   "items": false, "minItems": 4, "maxItems": 4}),
    );
    bbox["style"] = json!("form");
    bbox["explode"] = json!(false);

    search["parameters"] = json!([
        query(
            "project",
            "only this project",
            json!({"type": "string", "pattern": Project::pattern()})
        ),
        query(
            "from",
            "acquired on or after this date, YYYY-MM-DD from 1826-01-01 to 2199-12-31",
            date.clone()
        ),
        query(
            "to",
            "acquired on or before this date (a `to` before `from` finds nothing)",
            date
        ),
        bbox,
        query(
            "limit",
            "page size",
            json!({"type": "integer", "minimum": 1,
            "maximum": ImageQuery::MAX_LIMIT, "default": ImageQuery::DEFAULT_LIMIT})
        ),
        query(
            "cursor",
            "next_cursor of the previous page",
            json!({"type": "string", "pattern": SearchCursor::PATTERN})
        ),
    ]);

    let mut image = keyed(
        "One record with presigned GET URLs for its objects",
        ("200", "the record", "ImageAnswer"),
        &[("404", "no such image")],
    );
    image["operationId"] = json!("getImage");
    image["parameters"] = json!([path_id("the image_id")]);

    let mut job = keyed(
        "The batch job's status",
        ("200", "its state, stage and progress", "JobStatus"),
        &[
            ("404", "no such job"),
            ("502", "the batch backend did not answer; try again"),
        ],
    );
    job["operationId"] = json!("getJob");
    job["parameters"] = json!([path_id("the job_id from complete")]);

    let mut jobs = keyed(
        "Jobs, newest first, filtered by project and state",
        ("200", "a page of jobs (without per-input lists)", "JobPage"),
        &[
            bad_request,
            ("502", "the batch backend did not answer; try again"),
        ],
    );
    jobs["operationId"] = json!("listJobs");
    let mut create_job = keyed(
        "A job of recorded images of one project, named by image ids, by upload ids or by a search; on the native hosts (tessera edge, tessera up) also a job posted with its files as multipart/form-data",
        (
            "201",
            "the job, queued, and any posted files left out of it",
            "JobPosted",
        ),
        &[
            bad_request,
            (
                "404",
                "named images or uploads with no record in the project, or a search that matches none",
            ),
            ("502", "the batch backend did not accept the job; try again"),
        ],
    );
    create_job["operationId"] = json!("createJob");
    create_job["requestBody"] = json!({
        "required": true,
        "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/CreateJob"},
            "example": {"project": "palm-survey", "search": {
                "from": "2026-05-01", "to": "2026-05-31", "bbox": [-82.1, 29.6, -81.9, 29.8]}},
        },
        // RFC 7578; streamed part by part to storage, each file checked as an upload's is.
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": [FORM_PROJECT, FORM_FILES],
                "properties": {
                    FORM_PROJECT: {"type": "string", "pattern": Project::pattern(),
                        "description": "the project; this field comes before the files"},
                    FORM_FILES: {"type": "array", "maxItems": MAX_JOB_INPUTS,
                        "description": "one part per file, with its filename: JPEG, PNG or TIFF by magic bytes, each up to the host's --max-input-bytes (8 GiB unless configured); a refused file is listed in `refused` and the others make the job",
                        "items": {"type": "string", "contentMediaType": "application/octet-stream"}},
                },
            },
        }},
    });
    create_job["responses"]["201"]["links"] = json!({
        "job": {"operationId": "getJob", "parameters": {"id": "$response.body#/job_id"}},
    });
    jobs["parameters"] = json!([
        query(
            "project",
            "only this project",
            json!({"type": "string", "pattern": Project::pattern()})
        ),
        query(
            "state",
            "only jobs in this state",
            json!({"$ref": "#/components/schemas/JobState"})
        ),
        query(
            "limit",
            "page size",
            json!({"type": "integer", "minimum": 1,
            "maximum": JobQuery::MAX_LIMIT, "default": JobQuery::DEFAULT_LIMIT})
        ),
        query(
            "cursor",
            "next_cursor of the previous page",
            json!({"type": "string", "pattern": JobCursor::PATTERN})
        ),
    ]);
    let action = |summary: &str, id: &str, conflict: &str| {
        let mut op = keyed(
            summary,
            ("200", "the job after the change", "JobStatus"),
            &[
                ("404", "no such job"),
                ("409", conflict),
                ("502", "the batch backend did not answer; try again"),
            ],
        );
        op["operationId"] = json!(id);
        op["parameters"] = json!([path_id("the job_id")]);
        op
    };
    let cancel = action(
        "Cancel a queued or running job: no new task of it starts",
        "cancelJob",
        "the job has already ended",
    );
    let retry = action(
        "Queue a failed or cancelled job again: what failed or was cancelled runs again",
        "retryJob",
        "the job is queued, running or succeeded",
    );

    let mut events = keyed(
        "The job's progress as server-sent events: `progress` with the status (no per-input list) when it changes, `end` with the full status when the job has ended, then the stream closes; `: keep-alive` comments in between. Hosts that cannot hold a response open (Workers) send one frame, and the client reconnects after `retry`",
        ("200", "", "JobStatus"),
        &[
            ("404", "no such job"),
            ("502", "the batch backend did not answer; try again"),
        ],
    );
    events["operationId"] = json!("jobEvents");
    events["parameters"] = json!([path_id("the job_id")]);
    events["responses"]["200"] = json!({
        "description": "a text/event-stream; each frame's `data` is a JobStatus",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    });

    let mut create_webhook = keyed(
        "Register a webhook endpoint for a project's events. Deliveries are signed as the Standard Webhooks specification says (`webhook-id`, `webhook-timestamp`, `webhook-signature`) with the secret answered here, once; retried on its schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h); only a 2xx counts, and a 410 disables the endpoint",
        ("201", "the endpoint, with its secret", "WebhookEndpoint"),
        &[
            (
                "400",
                "the URL is not https, or reaches a loopback, private or link-local address; no events; a bad project",
            ),
            ("502", "the batch backend did not answer; try again"),
        ],
    );
    create_webhook["operationId"] = json!("createWebhook");
    create_webhook["requestBody"] = json!({
        "required": true,
        "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/CreateWebhook"},
            "example": {"project": "palm-survey", "url": "https://hooks.example.com/tessera",
                "events": ["job.completed", "job.failed"]},
        }},
    });
    let mut deliveries = keyed(
        "Webhook deliveries, newest first; `state=failed` is the dead-letter list",
        ("200", "the deliveries", "DeliveryPage"),
        &[
            ("400", "a parameter the API does not have, or a bad value"),
            ("502", "the batch backend did not answer; try again"),
        ],
    );
    deliveries["operationId"] = json!("listDeliveries");
    deliveries["parameters"] = json!([
        query(
            "project",
            "only this project",
            json!({"type": "string", "pattern": Project::pattern()})
        ),
        query(
            "state",
            "only deliveries in this state",
            json!({"$ref": "#/components/schemas/DeliveryState"})
        ),
        query(
            "limit",
            "at most this many",
            json!({"type": "integer", "minimum": 1, "maximum": MAX_DELIVERY_PAGE,
                "default": MAX_DELIVERY_PAGE})
        ),
    ]);
    let mut replay = keyed(
        "Send a delivery again, with the same webhook-id and body and a fresh schedule",
        ("200", "the delivery, pending again", "WebhookDelivery"),
        &[
            ("404", "no such delivery"),
            ("502", "the batch backend did not answer; try again"),
        ],
    );
    replay["operationId"] = json!("replayDelivery");
    replay["parameters"] = json!([path_id("the delivery_id")]);

    json!({
        "/v1/webhooks": {"post": create_webhook},
        "/v1/webhooks/deliveries": {"get": deliveries},
        "/v1/webhooks/deliveries/{id}/replay": {"post": replay},
        "/v1/uploads": {"post": create},
        "/v1/uploads/{id}/complete": {"post": complete},
        "/v1/images": {"get": search},
        "/v1/images/{id}": {"get": image},
        "/v1/jobs": {"get": jobs, "post": create_job},
        "/v1/jobs/{id}": {"get": job},
        "/v1/jobs/{id}/events": {"get": events},
        "/v1/jobs/{id}/cancel": {"post": cancel},
        "/v1/jobs/{id}/retry": {"post": retry},
        "/v1/openapi.json": {"get": {
            "summary": "This document; no API key",
            "operationId": "openApi",
            "responses": {"200": {"description": "the OpenAPI 3.1 document",
                "content": {"application/json": {"schema": {"type": "object"}}}}},
        }},
        "/health": {"get": {
            "summary": "Liveness; no API key",
            "operationId": "health",
            "responses": {"200": {"description": "the server answers",
                "content": {"application/json": {"schema": {"type": "object",
                    "properties": {"status": {"const": "ok"}}, "required": ["status"]}}}}},
        }},
    })
}

/// A valid `POST /v1/uploads` body: one image with its six objects.
fn example_upload() -> Value {
    let objects: Vec<Value> = ObjectKind::ALL
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            let original = *kind == ObjectKind::Original;
            json!({
                "kind": kind,
                "content_type": "image/jpeg",
                "size_bytes": if original { 2_482_113 } else { 9_000 + i },
                "sha256": {"hex": Sha256Digest::of(format!("example {i}").as_bytes()).hex},
                "width": if original { 4000 } else { 256 },
                "height": if original { 3000 } else { 256 },
            })
        })
        .collect();
    json!({
        "project": "palm-survey",
        "files": [{
            "file_name": "IMG_0042.JPG",
            "exif": {"taken_at": "2024-03-09T10:00:00",
                     "gps": {"latitude": 5.55, "longitude": -0.2, "altitude_m": 61.0}},
            "objects": objects,
        }],
    })
}

/// Writes into the derived schemas the rules the server checks beyond the types.
fn constrain(schemas: &mut Value) {
    let policy = UploadPolicy::default();
    let request = &mut schemas["UploadRequest"]["properties"];
    request["project"]["pattern"] = json!(Project::pattern());
    request["files"]["minItems"] = json!(1);
    request["files"]["maxItems"] = json!(policy.max_files);

    let image = &mut schemas["DeclaredImage"]["properties"];
    image["file_name"]["minLength"] = json!(FILE_NAME_CHARS.start());
    image["file_name"]["maxLength"] = json!(FILE_NAME_CHARS.end());
    let declared_object = &mut schemas["DeclaredObject"]["properties"];
    for side in ["width", "height"] {
        declared_object[side] = json!({"type": "integer", "minimum": 0, "maximum": u32::MAX,
            "description": declared_object[side]["description"].clone()});
    }
    let declared_object = schemas["DeclaredObject"].clone();
    let positions: Vec<Value> = ObjectKind::ALL
        .iter()
        .map(|&kind| {
            let (content_type, max_bytes) = if kind == ObjectKind::Original {
                let types = ORIGINAL_FORMATS.map(ImageFormat::content_type);
                (json!({ "enum": types }), policy.max_original_bytes)
            } else {
                (
                    json!({ "const": DERIVATIVE_CONTENT_TYPE }),
                    policy.max_derivative_bytes,
                )
            };
            let mut position = declared_object.clone();
            position["properties"]["kind"] = json!({"const": kind});
            position["properties"]["content_type"] = content_type;
            position["properties"]["size_bytes"] =
                json!({"type": "integer", "minimum": 1, "maximum": max_bytes});
            position
        })
        .collect();
    schemas["DeclaredImage"]["properties"]["objects"] = json!({
        "description": "exactly six objects, one of each kind, in this order",
        "type": "array",
        "prefixItems": positions,
        "items": false,
        "minItems": 6,
        "maxItems": 6,
    });
    schemas["ExifMetadata"]["properties"]["taken_at"]["pattern"] = json!(taken_at_pattern());

    let create_job = &mut schemas["CreateJob"];
    create_job["properties"]["project"]["pattern"] = json!(Project::pattern());
    for list in ["image_ids", "upload_ids"] {
        create_job["properties"][list] = json!({
            "description": create_job["properties"][list]["description"].clone(),
            "type": "array", "items": {"type": "string", "minLength": 1},
            "minItems": 1, "maxItems": MAX_JOB_INPUTS,
        });
    }
    create_job["properties"]["search"] = json!({"$ref": "#/components/schemas/JobSearch"});
    create_job["properties"]["webhook_url"]["format"] = json!("uri");
    create_job["properties"]["webhook_events"]["minItems"] = json!(1);
    create_job["oneOf"] =
        json!(["image_ids", "upload_ids", "search"].map(|name| json!({"required": [name]})));
    create_job["additionalProperties"] = json!(false);
    let search = &mut schemas["JobSearch"];
    for side in ["from", "to"] {
        search["properties"][side] = json!({
            "description": search["properties"][side]["description"].clone(),
            "type": "string", "pattern": format!("^{DATE_PATTERN}$"),
        });
    }
    let (lon, lat) = (
        json!({"type": "number", "minimum": -180, "maximum": 180}),
        json!({"type": "number", "minimum": -90, "maximum": 90}),
    );
    search["properties"]["bbox"] = json!({
        "description": search["properties"]["bbox"]["description"].clone(),
        "type": "array", "prefixItems": [lon, lat, lon, lat], "items": false,
        "minItems": 4, "maxItems": 4,
    });
    search["additionalProperties"] = json!(false);

    let webhook = &mut schemas["CreateWebhook"];
    webhook["properties"]["project"]["pattern"] = json!(Project::pattern());
    webhook["properties"]["url"]["format"] = json!("uri");
    // https, or http where the host allows local webhooks (tessera up).
    webhook["properties"]["url"]["pattern"] = json!("^https?://");
    webhook["properties"]["url"]["maxLength"] = json!(MAX_URL_BYTES);
    webhook["properties"]["events"]["minItems"] = json!(1);
    webhook["additionalProperties"] = json!(false);
}

/// Builds the document.
#[must_use]
pub fn document() -> Value {
    let components = ComponentsBuilder::new()
        .schema_from::<UploadRequest>()
        .schema_from::<DeclaredImage>()
        .schema_from::<DeclaredObject>()
        .schema_from::<DeclaredSha256>()
        .schema_from::<ExifMetadata>()
        .schema_from::<GpsPosition>()
        .schema_from::<ObjectKind>()
        .schema_from::<Sha256Digest>()
        .schema_from::<UploadCreated>()
        .schema_from::<UploadTarget>()
        .schema_from::<PresignedRequest>()
        .schema_from::<Method>()
        .schema_from::<UploadCompleted>()
        .schema_from::<SearchPage>()
        .schema_from::<Manifest>()
        .schema_from::<ManifestObject>()
        .schema_from::<DateSource>()
        .schema_from::<ImageFormat>()
        .schema_from::<ImageAnswer>()
        .schema_from::<Download>()
        .schema_from::<ErrorBody>()
        .schema_from::<ErrorCode>()
        .schema_from::<ObjectProblem>()
        .schema_from::<JobStatus>()
        .schema_from::<JobState>()
        .schema_from::<JobStage>()
        .schema_from::<Progress>()
        .schema_from::<JobPage>()
        .schema_from::<InputOutcome>()
        .schema_from::<InputState>()
        .schema_from::<JobResults>()
        .schema_from::<ResultObject>()
        .schema_from::<PhotoResult>()
        .schema_from::<CreateJob>()
        .schema_from::<JobSearch>()
        .schema_from::<JobPosted>()
        .schema_from::<RefusedFile>()
        .schema_from::<CreateWebhook>()
        .schema_from::<WebhookEndpoint>()
        .schema_from::<WebhookEvent>()
        .schema_from::<DeliveryState>()
        .schema_from::<WebhookDelivery>()
        .schema_from::<DeliveryPage>()
        .build();
    let mut document = serde_json::to_value(
        OpenApiBuilder::new()
            .info(
                InfoBuilder::new()
                    .title("Tessera edge API")
                    .version(env!("CARGO_PKG_VERSION"))
                    .description(Some(
                        "Presigned uploads of images and their derivatives, metadata records and search, batch jobs and their signed webhooks. \
                         Every error is an ErrorBody with a stable `code`; a path answers 405 with `Allow` for other methods.",
                    ))
                    .build(),
            )
            .components(Some(components))
            .build(),
    )
    .expect("the document serialises");
    constrain(&mut document["components"]["schemas"]);
    document["components"]["securitySchemes"] = json!({"api_key": {
        "type": "http", "scheme": "bearer",
        "description": "an API key, sent as `Authorization: Bearer <key>`",
    }});
    document["paths"] = paths();
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document lists every `ErrorCode` as serde writes it; each must be its `as_str()`.
    #[test]
    fn every_error_code_is_written_as_its_wire_name() {
        let document = document();
        let codes = document["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .unwrap();
        assert!(codes.len() >= 30, "{codes:?}");
        for code in codes {
            let parsed: ErrorCode = serde_json::from_value(code.clone()).unwrap();
            assert_eq!(parsed.as_str(), code.as_str().unwrap());
        }
    }

    /// The example body is a valid request: the planner accepts it.
    #[test]
    fn the_example_upload_is_accepted() {
        let request: UploadRequest = serde_json::from_value(example_upload()).unwrap();
        let mut n = 0;
        let planned = tessera_core::upload::plan_upload(
            &request,
            &UploadPolicy::default(),
            || {
                n += 1;
                tessera_core::keys::ImageId::new(format!("id{n}")).unwrap()
            },
            chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        );
        assert!(planned.is_ok(), "{planned:?}");
    }

    /// Every status a keyed route answers is documented, with an `ErrorBody`.
    #[test]
    fn every_keyed_route_documents_its_errors() {
        let document = document();
        for (path, method, own) in [
            ("/v1/uploads", "post", &["400"][..]),
            ("/v1/uploads/{id}/complete", "post", &["404", "409", "502"]),
            ("/v1/images", "get", &["400"]),
            ("/v1/images/{id}", "get", &["404"]),
            ("/v1/jobs/{id}", "get", &["404", "502"]),
            ("/v1/jobs", "post", &["400", "404", "502"]),
        ] {
            let responses = &document["paths"][path][method]["responses"];
            for status in own.iter().chain(&["401", "408", "413", "429", "500"]) {
                assert_eq!(
                    responses[*status]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
        }
    }
}
