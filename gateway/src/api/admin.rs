//! `/v1/me` and the admin endpoints: users, their API keys, system statistics and the DLQ
//! summary. Admin endpoints need a key of a user with the `admin` role.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::docs::CreateUserIn;
use super::problem::Problem;
use super::{AdminAuth, ApiState, Auth, json_object, path_id};
use crate::error::{Error, Result};
use crate::services::system::SystemStats;
use crate::services::users::{Language, NewApiKey, NewUser, RemovedUser, UserInfo};

/// The caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct MeOut {
    pub id: i64,
    pub name: String,
    pub admin: bool,
}

/// Every user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct UserList {
    pub items: Vec<UserInfo>,
}

/// A created user, and their first API key if one was asked for (shown only now).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CreatedUser {
    pub user: UserInfo,
    pub api_key: Option<NewApiKey>,
}

/// One DLQ: its depth and the dead-letter reasons of the messages scanned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DlqOut {
    pub queue: String,
    pub dlq: String,
    pub depth: u32,
    pub by_reason: BTreeMap<String, u64>,
    pub scanned: usize,
}

/// Every DLQ of the topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DlqList {
    pub items: Vec<DlqOut>,
}

/// Who the API key belongs to.
#[utoipa::path(get, operation_id = "me", path = "/v1/me", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = MeOut),
        (status = 401, description = "No or an unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn me(Auth(caller): Auth) -> Json<MeOut> {
    Json(MeOut {
        id: caller.user_id,
        name: caller.name,
        admin: caller.admin,
    })
}

/// Every user (admins).
#[utoipa::path(get, operation_id = "admin_list_users", path = "/v1/admin/users", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every user", body = UserList),
        (status = 401, description = "No or an unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_users(
    State(state): State<ApiState>,
    _admin: AdminAuth,
) -> Result<Json<UserList>> {
    Ok(Json(UserList {
        items: state.services().list_users().await?,
    }))
}

/// Creates a user (admins), optionally with a first API key.
#[utoipa::path(post, operation_id = "admin_create_user", path = "/v1/admin/users", tag = "admin",
    security(("bearer" = [])),
    request_body(content = CreateUserIn, content_type = "application/json"),
    responses(
        (status = 201, description = "The user (and key)", body = CreatedUser),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or an unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The Telegram chat belongs to another user", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is missing, unknown or invalid; `field` names it", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_user(
    State(state): State<ApiState>,
    _admin: AdminAuth,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CreatedUser>)> {
    let value = json_object(&state, &headers, body)?;
    let (new, with_key) = new_user_from_json(&value)?;
    let user = state.services().create_user(new).await?;
    let api_key = if with_key {
        Some(state.services().create_api_key(user.id).await?)
    } else {
        None
    };
    Ok((StatusCode::CREATED, Json(CreatedUser { user, api_key })))
}

/// Fields of `POST /v1/admin/users`.
pub const CREATE_USER_FIELDS: &[&str] =
    &["name", "telegram_chat_id", "admin", "language", "api_key"];

fn new_user_from_json(value: &Value) -> Result<(NewUser, bool)> {
    let object = value
        .as_object()
        .ok_or_else(|| Error::invalid("body", "must be a JSON object"))?;
    if let Some(unknown) = object
        .keys()
        .find(|k| !CREATE_USER_FIELDS.contains(&k.as_str()))
    {
        return Err(Error::invalid(
            unknown.clone(),
            format!(
                "is not a field; the fields are {}",
                CREATE_USER_FIELDS.join(", ")
            ),
        ));
    }
    let name = match object.get("name") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => return Err(Error::invalid("name", "is required")),
        Some(_) => return Err(Error::invalid("name", "must be a string")),
    };
    let telegram_chat_id = match object.get("telegram_chat_id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| Error::invalid("telegram_chat_id", "must be an integer"))?,
        ),
    };
    let flag = |key: &str| -> Result<bool> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(Error::invalid(key, "must be true or false")),
        }
    };
    let language = match object.get("language") {
        None | Some(Value::Null) => Language::En,
        Some(Value::String(s)) => s.parse()?,
        Some(_) => return Err(Error::invalid("language", "must be en or ko")),
    };
    Ok((
        NewUser {
            name,
            telegram_chat_id,
            admin: flag("admin")?,
            language,
            demo: false,
        },
        flag("api_key")?,
    ))
}

/// Removes a user with their rules, subscriptions and keys (admins).
#[utoipa::path(delete, operation_id = "admin_remove_user", path = "/v1/admin/users/{id}", tag = "admin",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "The user id")),
    responses(
        (status = 200, description = "What was removed", body = RemovedUser),
        (status = 401, description = "No or an unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove_user(
    State(state): State<ApiState>,
    _admin: AdminAuth,
    Path(id): Path<String>,
) -> Result<Json<RemovedUser>> {
    let id = path_id(&id, "user")?;
    Ok(Json(state.services().remove_user(id).await?))
}

/// A new API key for a user (admins); the key is shown only in this response.
#[utoipa::path(post, operation_id = "admin_create_api_key", path = "/v1/admin/users/{id}/apikeys", tag = "admin",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "The user id")),
    responses(
        (status = 201, description = "The new key", body = NewApiKey),
        (status = 401, description = "No or an unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_api_key(
    State(state): State<ApiState>,
    _admin: AdminAuth,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<NewApiKey>)> {
    let id = path_id(&id, "user")?;
    let key = state.services().create_api_key(id).await?;
    Ok((StatusCode::CREATED, Json(key)))
}

/// Users, rules, subscriptions, the halt flag and queue depths (admins).
#[utoipa::path(get, operation_id = "admin_stats", path = "/v1/admin/stats", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The system at a glance", body = SystemStats),
        (status = 401, description = "No or an unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stats(State(state): State<ApiState>, _admin: AdminAuth) -> Result<Json<SystemStats>> {
    Ok(Json(state.services().system_stats().await?))
}

/// Depth and dead-letter reasons of every DLQ (admins).
#[utoipa::path(get, operation_id = "admin_dlq", path = "/v1/admin/dlq", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every DLQ", body = DlqList),
        (status = 401, description = "No or an unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No broker", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn dlq(State(state): State<ApiState>, _admin: AdminAuth) -> Result<Json<DlqList>> {
    let items = state
        .services()
        .dlq_summary()
        .await?
        .into_iter()
        .map(|d| DlqOut {
            queue: d.queue,
            dlq: d.dlq,
            depth: d.depth,
            by_reason: d.by_reason,
            scanned: d.scanned,
        })
        .collect();
    Ok(Json(DlqList { items }))
}
