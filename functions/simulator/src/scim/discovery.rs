//! The discovery endpoints of RFC 7644 §4: `/ServiceProviderConfig`, `/ResourceTypes` and
//! `/Schemas`. They describe only what the simulator serves: Users (with Notion's extension,
//! whose one attribute is `role`) and Groups; PATCH and filters, no bulk, sort, etag or
//! password change. An attribute the simulator does not keep is not listed.

use super::error::ScimError;
use super::{scim_json, Ctx, GROUP_URN, LIST_URN, MAX_COUNT, NOTION_USER_URN, USER_URN};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

const SPC_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const RESOURCE_TYPE_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
const ROLES: &[&str] = &["owner", "membership_admin", "member", "restricted_member"];

/// RFC 7644 §4: these endpoints take no filter, and a client must not believe one applied.
fn refuse_filter(ctx: &Ctx) -> Result<(), ScimError> {
    match ctx.param("filter") {
        Some(_) => Err(ScimError::new(
            StatusCode::FORBIDDEN,
            None,
            "filters are not supported on discovery endpoints",
        )),
        None => Ok(()),
    }
}

pub(crate) async fn service_provider_config(ctx: Ctx) -> Result<Response, ScimError> {
    refuse_filter(&ctx)?;
    let body = json!({
        "schemas": [SPC_URN],
        "documentationUri": "https://www.notion.com/help/provision-users-and-groups-with-scim",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_COUNT},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": false},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with a workspace SCIM token",
            "primary": true
        }],
        "meta": {"resourceType": "ServiceProviderConfig",
                 "location": format!("{}/ServiceProviderConfig", ctx.base)}
    });
    Ok(scim_json(StatusCode::OK, &body))
}

fn resource_types(base: &str) -> Vec<Value> {
    let meta = |id: &str| json!({"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{id}")});
    vec![
        json!({
            "schemas": [RESOURCE_TYPE_URN],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "description": "Workspace members",
            "schema": USER_URN,
            "schemaExtensions": [{"schema": NOTION_USER_URN, "required": false}],
            "meta": meta("User"),
        }),
        json!({
            "schemas": [RESOURCE_TYPE_URN],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "Notion Groups",
            "schema": GROUP_URN,
            "meta": meta("Group"),
        }),
    ]
}

/// One attribute definition (RFC 7643 §7) with the defaults of §2.2 spelled out.
struct Attr {
    name: &'static str,
    kind: &'static str,
    description: &'static str,
    multi: bool,
    required: bool,
    case_exact: bool,
    mutability: &'static str,
    returned: &'static str,
    uniqueness: &'static str,
    canonical: &'static [&'static str],
    reference_types: &'static [&'static str],
    sub: Vec<Attr>,
}

fn attr(name: &'static str, kind: &'static str, description: &'static str) -> Attr {
    Attr {
        name,
        kind,
        description,
        multi: false,
        required: false,
        case_exact: false,
        mutability: "readWrite",
        returned: "default",
        uniqueness: "none",
        canonical: &[],
        reference_types: &[],
        sub: Vec::new(),
    }
}

impl Attr {
    fn json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "type": self.kind,
            "multiValued": self.multi,
            "description": self.description,
            "required": self.required,
            "mutability": self.mutability,
            "returned": self.returned,
        });
        if self.kind != "complex" && self.kind != "boolean" {
            v["caseExact"] = json!(self.case_exact);
            v["uniqueness"] = json!(self.uniqueness);
        }
        if !self.canonical.is_empty() {
            v["canonicalValues"] = json!(self.canonical);
        }
        if !self.reference_types.is_empty() {
            v["referenceTypes"] = json!(self.reference_types);
        }
        if !self.sub.is_empty() {
            v["subAttributes"] = self.sub.iter().map(Attr::json).collect();
        }
        v
    }
}

fn user_attributes() -> Vec<Attr> {
    vec![
        Attr {
            required: true,
            uniqueness: "server",
            ..attr(
                "userName",
                "string",
                "The member's email address (Notion requires an email).",
            )
        },
        Attr {
            sub: vec![
                attr("formatted", "string", "The full name."),
                attr("familyName", "string", "The family name."),
                attr("givenName", "string", "The given name."),
            ],
            ..attr("name", "complex", "The member's name.")
        },
        attr("displayName", "string", "The name shown for the member."),
        Attr {
            multi: true,
            sub: vec![
                attr("value", "string", "An email address."),
                Attr {
                    canonical: &["work", "home", "other"],
                    ..attr("type", "string", "What the address is for.")
                },
                attr("primary", "boolean", "Whether this is the primary address."),
            ],
            ..attr("emails", "complex", "Email addresses of the member.")
        },
        attr(
            "active",
            "boolean",
            "Whether the account is a member of the workspace.",
        ),
    ]
}

fn notion_attributes() -> Vec<Attr> {
    vec![Attr {
        canonical: ROLES,
        ..attr("role", "string", "The member's role in the workspace.")
    }]
}

fn group_attributes() -> Vec<Attr> {
    vec![
        Attr {
            required: true,
            uniqueness: "server",
            ..attr("displayName", "string", "The Group's name.")
        },
        Attr {
            multi: true,
            sub: vec![
                Attr {
                    mutability: "immutable",
                    ..attr("value", "string", "The id of a member User.")
                },
                Attr {
                    mutability: "immutable",
                    reference_types: &["User"],
                    ..attr("$ref", "reference", "The URI of the member User.")
                },
                Attr {
                    mutability: "readOnly",
                    ..attr("display", "string", "The member's name.")
                },
                Attr {
                    mutability: "immutable",
                    canonical: &["User"],
                    ..attr("type", "string", "Members are Users.")
                },
            ],
            ..attr("members", "complex", "The Group's members (Users only).")
        },
    ]
}

fn schemas(base: &str) -> Vec<Value> {
    let schema = |id: &str, name: &str, description: &str, attrs: Vec<Attr>| {
        json!({
            "schemas": [SCHEMA_URN],
            "id": id,
            "name": name,
            "description": description,
            "attributes": attrs.iter().map(Attr::json).collect::<Vec<_>>(),
            "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")},
        })
    };
    vec![
        schema(USER_URN, "User", "User Account", user_attributes()),
        schema(
            NOTION_USER_URN,
            "NotionUser",
            "Notion's extension to the User",
            notion_attributes(),
        ),
        schema(GROUP_URN, "Group", "Group", group_attributes()),
    ]
}

/// Discovery lists are short and unpaged: every entry, `startIndex` 1.
fn list(resources: Vec<Value>) -> Response {
    let body = json!({
        "schemas": [LIST_URN],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    });
    scim_json(StatusCode::OK, &body)
}

fn one(resources: Vec<Value>, id: &str, what: &str) -> Result<Response, ScimError> {
    resources
        .into_iter()
        .find(|r| r["id"].as_str().is_some_and(|r| r.eq_ignore_ascii_case(id)))
        .map(|r| scim_json(StatusCode::OK, &r))
        .ok_or_else(|| ScimError::not_found(what, id))
}

pub(crate) async fn list_resource_types(ctx: Ctx) -> Result<Response, ScimError> {
    refuse_filter(&ctx)?;
    Ok(list(resource_types(&ctx.base)))
}

pub(crate) async fn resource_type(ctx: Ctx, Path(id): Path<String>) -> Result<Response, ScimError> {
    one(resource_types(&ctx.base), &id, "ResourceType")
}

pub(crate) async fn list_schemas(ctx: Ctx) -> Result<Response, ScimError> {
    refuse_filter(&ctx)?;
    Ok(list(schemas(&ctx.base)))
}

pub(crate) async fn schema(ctx: Ctx, Path(id): Path<String>) -> Result<Response, ScimError> {
    one(schemas(&ctx.base), &id, "Schema")
}
