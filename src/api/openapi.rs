//! `GET /openapi.json`: the OpenAPI 3.1 description of the HTTP API, generated from the handlers' and the
//! answers' own annotations (`utoipa`), so it cannot drift from what is served.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::response::{ApiError, ControlRequested, JobList, JobView, SubmitStatus, Submitted};
use super::routes;

/// The API's document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "raw-events-reprocessor HTTP API",
        description = "Replays a tenant's raw events from ClickHouse into Kafka (the original design's \
            POST /events/raw/reprocess). Every request needs an API key in `x-api-key`; the key decides the \
            tenant and the environments a request may use. Errors are `{\"error\", \"field\"}`."
    ),
    paths(
        routes::submit,
        routes::list,
        routes::job,
        routes::control,
        routes::openapi_json
    ),
    components(schemas(ApiError, Submitted, SubmitStatus, JobView, JobList, ControlRequested)),
    modifiers(&KeyHeader)
)]
struct ApiDoc;

/// Declares the `x-api-key` header as the `api_key` security scheme the paths name.
struct KeyHeader;

impl Modify for KeyHeader {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                super::auth::API_KEY_HEADER,
                "An API key of [[api.keys]] (configured by its SHA-256)",
            ))),
        );
    }
}

/// The document served at `/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_describes_every_endpoint_and_the_key_header() {
        let v = serde_json::to_value(document()).unwrap();
        let paths = v["paths"].as_object().unwrap();
        for (path, method) in [
            ("/events/raw/reprocess", "post"),
            ("/events/raw/reprocess", "get"),
            ("/events/raw/reprocess/{job_id}", "get"),
            ("/events/raw/reprocess/{job_id}/{action}", "post"),
            ("/openapi.json", "get"),
        ] {
            assert!(paths[path][method].is_object(), "{method} {path}");
        }
        let post = &paths["/events/raw/reprocess"]["post"];
        for code in ["202", "400", "401", "403", "409", "413"] {
            assert!(post["responses"][code].is_object(), "POST answers {code}");
        }
        assert_eq!(
            v["components"]["securitySchemes"]["api_key"]["name"],
            "x-api-key"
        );
        let job = &v["components"]["schemas"]["JobView"]["properties"];
        for field in [
            "total_events_found",
            "completed_at",
            "cursor",
            "eta_seconds",
            "parts",
        ] {
            assert!(job[field].is_object(), "JobView.{field}");
        }
    }
}
