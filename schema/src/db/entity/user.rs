//! A person who gets notifications: from the Telegram bot or the command line.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub name: String,
    #[sea_orm(unique)]
    pub telegram_chat_id: Option<i64>,
    /// `en` or `ko`.
    pub language: String,
    /// Consented to notifications and reachable.
    pub active: bool,
    /// `user` or `admin`.
    pub role: String,
    /// JSON object: event kind → `on` | `silent` | `off`.
    pub prefs: String,
    /// Why notifications stopped (e.g. the bot was blocked); told on the next `/start`.
    pub paused_reason: Option<String>,
    /// Created by `tickwatch run`'s first start; removable with `tickwatch user remove --demo`.
    pub demo: bool,
    pub created_at: i64,
    /// The IANA time zone the user reads times in; `None`: their language's (see
    /// `display::user_time_zone`).
    pub time_zone: Option<String>,
    /// SHA-256 (hex) of the secret in the user's TradingView relay URL.
    #[sea_orm(unique)]
    pub relay_token_hash: Option<String>,
    /// When (local `HH:MM`) the user gets the daily digest; `None`: no digest.
    pub digest_at: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
