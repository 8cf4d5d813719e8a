//! `/v1/me` and the admin endpoints: users, their API keys, system statistics and the DLQ
//! summary. Admin endpoints need a key of a user with the `admin` role.

use std::collections::BTreeMap;

use std::sync::LazyLock;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use regex::Regex;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{PartialSchema, ToSchema};

use super::fields::{ChatId, Symbol, Venue, present};
use super::problem::Problem;
use super::{AdminAuth, ApiState, Auth, JsonBody, path_id};
use crate::error::{Error, Result};
use crate::services::system::SystemStats;
use crate::services::universe::{ImportReport, Listed};
use crate::services::users::{Language, NewApiKey, NewUser, RemovedUser, UserInfo};

/// The body of `POST /v1/admin/users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name":"alice","telegram_chat_id":123456789,"admin":false,"api_key":true}))]
pub struct NewUserIn {
    pub name: UserName,
    /// The user's Telegram chat, or `null`.
    #[serde(default)]
    pub telegram_chat_id: Option<ChatId>,
    /// Default false.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub admin: Option<bool>,
    /// Default `en`.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub language: Option<LanguageIn>,
    /// Also create a first API key (shown once in the response).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub api_key: Option<bool>,
}

/// The language of a user's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LanguageIn {
    En,
    Ko,
}

/// A user's name: 1 to 64 characters, no control characters, not only spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(pub String);

impl UserName {
    const PATTERN: &'static str =
        "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\x00-\\x20\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$";
    const MAX_CHARS: usize = 64;
}

impl<'de> Deserialize<'de> for UserName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        static RE: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(UserName::PATTERN).expect("the pattern compiles"));
        let name = String::deserialize(d)?;
        let count = name.chars().count();
        if count == 0 || count > UserName::MAX_CHARS {
            return Err(de::Error::custom(format!(
                "is {count} characters long; 1 to {} are allowed",
                UserName::MAX_CHARS
            )));
        }
        if !RE.is_match(&name) {
            return Err(de::Error::custom(
                "holds control characters, or only spaces",
            ));
        }
        Ok(UserName(name))
    }
}

impl PartialSchema for UserName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .min_length(Some(1))
            .max_length(Some(UserName::MAX_CHARS))
            .pattern(Some(UserName::PATTERN))
            .description(Some(
                "1 to 64 characters, no control characters, not only spaces",
            ))
            .into()
    }
}

impl ToSchema for UserName {}

/// The caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct MeOut {
    pub id: i64,
    pub name: String,
    pub admin: bool,
    /// `en` or `ko`: the language of the user's messages (and of the dashboard).
    pub language: String,
    /// The IANA time zone the user reads times in (`Asia/Seoul`).
    pub time_zone: String,
}

/// The user as `/v1/me` shows them.
pub(crate) async fn me_of(services: &crate::Services, user_id: i64) -> Result<MeOut> {
    let user = services.user(user_id).await?;
    let zone = tickwatch_schema::display::user_time_zone(&user.language, user.time_zone.as_deref());
    Ok(MeOut {
        id: user.id,
        name: user.name,
        admin: user.role == crate::services::users::ROLE_ADMIN,
        language: user.language,
        time_zone: zone.name().to_string(),
    })
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
    ))]
pub async fn me(State(state): State<ApiState>, Auth(caller): Auth) -> Result<Json<MeOut>> {
    me_of(state.services(), caller.user_id).await.map(Json)
}

/// Every user (admins).
#[utoipa::path(get, operation_id = "admin_list_users", path = "/v1/admin/users", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every user", body = UserList),
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
    request_body = NewUserIn,
    responses(
        (status = 201, description = "The user (and key)", body = CreatedUser),
        (status = 409, description = "The Telegram chat belongs to another user", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_user(
    State(state): State<ApiState>,
    _admin: AdminAuth,
    JsonBody(new): JsonBody<NewUserIn>,
) -> Result<(StatusCode, Json<CreatedUser>)> {
    let user = state
        .services()
        .create_user(NewUser {
            name: new.name.0,
            telegram_chat_id: new.telegram_chat_id.map(|c| c.0),
            admin: new.admin.unwrap_or(false),
            language: match new.language {
                Some(LanguageIn::Ko) => Language::Ko,
                Some(LanguageIn::En) | None => Language::En,
            },
            demo: false,
        })
        .await?;
    let api_key = if new.api_key.unwrap_or(false) {
        Some(state.services().create_api_key(user.id).await?)
    } else {
        None
    };
    Ok((StatusCode::CREATED, Json(CreatedUser { user, api_key })))
}

/// Removes a user with their rules, subscriptions and keys (admins; not oneself).
#[utoipa::path(delete, operation_id = "admin_remove_user", path = "/v1/admin/users/{id}", tag = "admin",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "The user id")),
    responses(
        (status = 200, description = "What was removed", body = RemovedUser),
        (status = 409, description = "The caller's own user: an admin cannot remove themselves", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove_user(
    State(state): State<ApiState>,
    AdminAuth(caller): AdminAuth,
    Path(id): Path<String>,
) -> Result<Json<RemovedUser>> {
    let id = path_id(&id, "user")?;
    if id == caller.user_id {
        return Err(Error::Conflict(
            "that is your own user; another admin can remove it".into(),
        ));
    }
    Ok(Json(state.services().remove_user(id).await?))
}

/// A new API key for a user (admins); the key is shown only in this response.
#[utoipa::path(post, operation_id = "admin_create_api_key", path = "/v1/admin/users/{id}/apikeys", tag = "admin",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, description = "The user id")),
    responses(
        (status = 201, description = "The new key", body = NewApiKey),
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

/// A symbol's name or alias: 1 to 100 characters, no control characters and no `|`, not
/// only spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label(pub String);

impl Label {
    const PATTERN: &'static str =
        "^[^|\\x00-\\x1f\\x7f-\\x9f]*[^|\\x00-\\x20\\x7f-\\x9f][^|\\x00-\\x1f\\x7f-\\x9f]*$";
    const MAX_CHARS: usize = 100;
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        static RE: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(Label::PATTERN).expect("the pattern compiles"));
        let text = String::deserialize(d)?;
        let count = text.chars().count();
        if count == 0 || count > Label::MAX_CHARS {
            return Err(de::Error::custom(format!(
                "is {count} characters long; 1 to {} are allowed",
                Label::MAX_CHARS
            )));
        }
        if !RE.is_match(&text) {
            return Err(de::Error::custom(
                "holds control characters or `|`, or only spaces",
            ));
        }
        Ok(Label(text))
    }
}

impl PartialSchema for Label {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .min_length(Some(1))
            .max_length(Some(Label::MAX_CHARS))
            .pattern(Some(Label::PATTERN))
            .description(Some(
                "1 to 100 characters, no control characters and no `|`, not only spaces",
            ))
            .into()
    }
}

impl ToSchema for Label {}

/// Which trading day a symbol's daily candles follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MarketIn {
    /// UTC days.
    Crypto,
    /// Seoul days.
    Krx,
    /// New York days.
    Us,
}

/// One instrument of a venue's list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListedIn {
    pub symbol: Symbol,
    pub name: Label,
    /// Further names users search by (`리플`, `xrp`). Names already stored are kept.
    #[serde(default)]
    pub aliases: Vec<Label>,
    /// Default: `krx` for the venue `krx`, `crypto` otherwise.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub market: Option<MarketIn>,
}

/// The body of `POST /v1/admin/symbols/import`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"venue":"upbit","symbols":[{"symbol":"KRW-XRP","name":"리플 (KRW)","aliases":["리플","xrp"]}]}))]
pub struct SymbolsImportIn {
    pub venue: Venue,
    /// The venue's complete list (not empty). `tickwatch symbols import` reads the venues'
    /// own formats (Binance's exchangeInfo, Upbit's market list, KIS's master files).
    #[schema(min_items = 1)]
    pub symbols: Vec<ListedIn>,
}

/// Replaces a venue's symbol list (admins): new symbols added, names updated (aliases kept
/// and extended), symbols no longer listed marked inactive (kept, still found), returning
/// ones reactivated. The same list twice changes nothing.
#[utoipa::path(post, operation_id = "admin_symbols_import", path = "/v1/admin/symbols/import", tag = "admin",
    security(("bearer" = [])),
    request_body = SymbolsImportIn,
    responses(
        (status = 200, description = "What the import changed", body = ImportReport),
    ))]
pub async fn import_symbols(
    State(state): State<ApiState>,
    _admin: AdminAuth,
    JsonBody(body): JsonBody<SymbolsImportIn>,
) -> Result<Json<ImportReport>> {
    let venue = body.venue.0;
    let default_market = if venue == "krx" { "krx" } else { "crypto" };
    let listed = body
        .symbols
        .into_iter()
        .map(|item| Listed {
            venue: venue.clone(),
            symbol: item.symbol.0,
            name: item.name.0,
            aliases: item.aliases.into_iter().map(|a| a.0).collect(),
            market: match item.market {
                Some(MarketIn::Crypto) => "crypto",
                Some(MarketIn::Krx) => "krx",
                Some(MarketIn::Us) => "us",
                None => default_market,
            }
            .to_string(),
        })
        .collect();
    Ok(Json(state.services().import_symbols(&venue, listed).await?))
}

/// Users, rules, subscriptions, the halt flag and queue depths (admins).
#[utoipa::path(get, operation_id = "admin_stats", path = "/v1/admin/stats", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The system at a glance", body = SystemStats),
    ))]
pub async fn stats(State(state): State<ApiState>, _admin: AdminAuth) -> Result<Json<SystemStats>> {
    Ok(Json(state.services().system_stats().await?))
}

/// Depth and dead-letter reasons of every DLQ (admins).
#[utoipa::path(get, operation_id = "admin_dlq", path = "/v1/admin/dlq", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every DLQ", body = DlqList),
        (status = 503, description = "This server runs without a broker", body = Problem, content_type = "application/problem+json"),
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
