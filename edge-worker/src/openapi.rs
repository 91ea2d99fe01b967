//! The OpenAPI 3.1 document served at `GET /v1/openapi.json`, built with utoipa: schemas are
//! derived from the same types the router serialises, so the document cannot drift from them.

use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, Content, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref, Required,
    ResponseBuilder,
};

use crate::wire::{
    Download, ImageAnswer, SearchPage, UploadCompleted, UploadCreated, UploadTarget,
};
use tessera_core::error::{ErrorBody, ErrorCode, ObjectProblem};
use tessera_core::exif::{ExifMetadata, GpsPosition};
use tessera_core::job::{JobStage, JobState, JobStatus, Progress};
use tessera_core::presign::{Method, PresignedRequest};
use tessera_core::upload::{DeclaredImage, DeclaredObject, UploadRequest};
use tessera_core::{DateSource, Manifest, ManifestObject, ObjectKind, Sha256Digest};

fn json(schema: &str) -> Content {
    Content::new(Some(Ref::from_schema_name(schema)))
}

fn string_param(
    name: &str,
    place: ParameterIn,
    required: bool,
    description: &str,
) -> ParameterBuilder {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(place)
        .required(if required {
            Required::True
        } else {
            Required::False
        })
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
}

/// The operation with the error answers every authenticated route shares.
fn operation(summary: &str, ok: (&str, &str, Option<&str>)) -> OperationBuilder {
    let (status, description, schema) = ok;
    let mut ok = ResponseBuilder::new().description(description);
    if let Some(schema) = schema {
        ok = ok.content("application/json", json(schema));
    }
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content("application/json", json("ErrorBody"))
    };
    OperationBuilder::new()
        .summary(Some(summary))
        .security(SecurityRequirement::new("api_key", Vec::<String>::new()))
        .response(status, ok)
        .response(
            "400",
            error("the request is invalid: `code` says which rule"),
        )
        .response("401", error("missing or unknown API key"))
        .response("413", error("request body over the limit"))
        .response("429", error("rate limited; see Retry-After"))
}

/// Builds the document.
#[must_use]
pub fn document() -> OpenApi {
    let id = |description| string_param("id", ParameterIn::Path, true, description);
    let paths = PathsBuilder::new()
        .path(
            "/v1/uploads",
            PathItem::new(
                HttpMethod::Post,
                operation(
                    "Validate the client's manifests, decide every key, presign one PUT per object",
                    ("201", "presigned PUTs, six per image", Some("UploadCreated")),
                )
                .request_body(Some(
                    RequestBodyBuilder::new()
                        .required(Some(Required::True))
                        .content("application/json", json("UploadRequest"))
                        .build(),
                )),
            ),
        )
        .path(
            "/v1/uploads/{id}/complete",
            PathItem::new(
                HttpMethod::Post,
                operation(
                    "HEAD-verify every object, write the sidecars, record the images, trigger a batch job (idempotent)",
                    ("200", "recorded; the job id", Some("UploadCompleted")),
                )
                .parameter(id("the upload_id from POST /v1/uploads"))
                .response("404", ResponseBuilder::new().description("no such upload").content("application/json", json("ErrorBody")))
                .response("409", ResponseBuilder::new().description("objects missing or different from the declared size or SHA-256; listed in `objects`").content("application/json", json("ErrorBody")))
                .response("502", ResponseBuilder::new().description("the batch backend refused the job; complete again to retry").content("application/json", json("ErrorBody"))),
            ),
        )
        .path(
            "/v1/images",
            PathItem::new(
                HttpMethod::Get,
                operation("Search records by acquisition date and GPS bounding box", ("200", "a page of records", Some("SearchPage")))
                    .parameter(string_param("project", ParameterIn::Query, false, "only this project"))
                    .parameter(string_param("from", ParameterIn::Query, false, "acquired on or after, YYYY-MM-DD"))
                    .parameter(string_param("to", ParameterIn::Query, false, "acquired on or before, YYYY-MM-DD"))
                    .parameter(string_param("bbox", ParameterIn::Query, false, "minLon,minLat,maxLon,maxLat in WGS 84 degrees; minLon > maxLon crosses the antimeridian"))
                    .parameter(string_param("limit", ParameterIn::Query, false, "page size 1–200, default 50"))
                    .parameter(string_param("cursor", ParameterIn::Query, false, "next_cursor of the previous page")),
            ),
        )
        .path(
            "/v1/images/{id}",
            PathItem::new(
                HttpMethod::Get,
                operation("One record with presigned GET URLs for its objects", ("200", "the record", Some("ImageAnswer")))
                    .parameter(id("the image_id"))
                    .response("404", ResponseBuilder::new().description("no such image").content("application/json", json("ErrorBody"))),
            ),
        )
        .path(
            "/v1/jobs/{id}",
            PathItem::new(
                HttpMethod::Get,
                operation("The batch job's status", ("200", "its state, stage and progress", Some("JobStatus")))
                    .parameter(id("the job_id from complete"))
                    .response("404", ResponseBuilder::new().description("no such job").content("application/json", json("ErrorBody")))
                    .response("502", ResponseBuilder::new().description("the batch backend did not answer; try again").content("application/json", json("ErrorBody"))),
            ),
        )
        .path(
            "/health",
            PathItem::new(
                HttpMethod::Get,
                OperationBuilder::new()
                    .summary(Some("Liveness; no API key"))
                    .response("200", ResponseBuilder::new().description("`{\"status\":\"ok\"}`")),
            ),
        )
        .build();
    let components = ComponentsBuilder::new()
        .schema_from::<UploadRequest>()
        .schema_from::<DeclaredImage>()
        .schema_from::<DeclaredObject>()
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
        .schema_from::<tessera_core::limits::ImageFormat>()
        .schema_from::<ImageAnswer>()
        .schema_from::<Download>()
        .schema_from::<ErrorBody>()
        .schema_from::<ErrorCode>()
        .schema_from::<ObjectProblem>()
        .schema_from::<JobStatus>()
        .schema_from::<JobState>()
        .schema_from::<JobStage>()
        .schema_from::<Progress>()
        .security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("an API key, sent as `Authorization: Bearer <key>`"))
                    .build(),
            ),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Tessera edge API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Presigned uploads of images and their derivatives, metadata records and search, batch job status.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document lists every `ErrorCode` as serde writes it; each must be its `as_str()`.
    #[test]
    fn every_error_code_is_written_as_its_wire_name() {
        let document = serde_json::to_value(document()).unwrap();
        let codes = document["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .unwrap();
        assert!(codes.len() >= 30, "{codes:?}");
        for code in codes {
            let parsed: ErrorCode = serde_json::from_value(code.clone()).unwrap();
            assert_eq!(parsed.as_str(), code.as_str().unwrap());
        }
    }
}
