//! sea-orm entities, one module per table.
pub mod alert_event;
pub mod alert_price;
pub mod alert_rule;
pub mod api_key;
pub mod candle;
pub mod latest_price;
pub mod notification;
pub mod processed_message;
pub mod setting;
pub mod signal;
pub mod signal_progress;
pub mod subscription;
pub mod symbol;
pub mod user;
