//! The parts of an OpenAPI document both daemons share: the bearer token scheme, the error
//! body and the refusals every route can answer with, and serving the document.
//!
//! Each daemon builds its document from its handlers' `#[utoipa::path]` annotations and the
//! types they return (utoipa-axum's `OpenApiRouter`), so a route cannot be served without
//! being described, and a description cannot drift from the type the handler returns.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, Modify, PartialSchema, ToSchema};

use crate::ErrorBody;

/// The name of the bearer token scheme in both documents.
pub const TOKEN: &str = "token";
/// The same token in the query, where a browser cannot send a header (WebSockets, images).
pub const ACCESS_TOKEN: &str = "access_token";

/// Adds the token schemes: `Authorization: Bearer …`, and `?access_token=…` where a browser
/// cannot set a header.
pub struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            TOKEN,
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            ACCESS_TOKEN,
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new(ACCESS_TOKEN))),
        );
        let mut schemas = vec![(ErrorBody::name().into_owned(), ErrorBody::schema())];
        ErrorBody::schemas(&mut schemas);
        for (name, schema) in schemas {
            components.schemas.entry(name).or_insert(schema);
        }
    }
}

fn error(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name(
                    ErrorBody::name(),
                )))
                .build(),
        )
        .build()
        .into()
}

fn common() -> BTreeMap<String, RefOr<Response>> {
    BTreeMap::from([
        (
            "400".into(),
            error("unreadable: bad JSON, an unknown parameter"),
        ),
        (
            "401".into(),
            error("no token, or an unknown or revoked one"),
        ),
        ("404".into(), error("no such thing")),
        (
            "422".into(),
            error("a field's value is wrong; `field` names it"),
        ),
        (
            "429".into(),
            error("too many wrong tokens from this address; see Retry-After"),
        ),
        (
            "500".into(),
            error("our failure; the message gives an id for the log"),
        ),
    ])
}

/// What any read can be refused with.
pub struct ReadRefusals;

impl IntoResponses for ReadRefusals {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        common()
    }
}

/// What any change can be refused with: a read's refusals, and the role, a conflict, a body
/// too large or not JSON.
pub struct EditRefusals;

impl IntoResponses for EditRefusals {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut all = common();
        all.insert("403".into(), error("this token's role may not do this"));
        all.insert(
            "409".into(),
            error("not now: the thing is not in a state for it"),
        );
        all.insert("413".into(), error("the body is too large"));
        all.insert("415".into(), error("the body is not JSON"));
        all
    }
}

/// `GET /api/v1/openapi.json`.
pub fn router<S: Clone + Send + Sync + 'static>(doc: utoipa::openapi::OpenApi) -> Router<S> {
    let doc = Arc::new(doc);
    Router::new().route(
        "/api/v1/openapi.json",
        get(move || {
            let doc = doc.clone();
            async move { axum::Json(doc).into_response() }
        }),
    )
}

/// The body of an edit to an editable record (a field, a geofence, a name): the record's
/// fields to set, by name, each any JSON value; fields not named keep their value. At
/// least one field; names of 1 to 200 bytes.
pub struct RecordFields;

impl PartialSchema for RecordFields {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
        ObjectBuilder::new()
            .description(Some(
                "the record's fields to set, by name (1 to 200 bytes), each any JSON value; \
                 fields not named keep their value",
            ))
            .min_properties(Some(1))
            .property_names(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(200)),
            ))
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl ToSchema for RecordFields {}

/// A time parameter (`from`, `to`): RFC 3339 with any offset, or Unix milliseconds.
pub fn time_param() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^-?[0-9]{1,15}$"))
                .description(Some("Unix milliseconds")),
        )
        .into()
}
