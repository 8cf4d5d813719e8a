//! Operators' alerts in Telegram: each alert of an Alertmanager webhook post becomes a
//! `system` notification to every active admin with a chat, through `tw.notify` like
//! every other notification (durable, rate-limited, in order per chat, sent once per
//! dedupe key).
//!
//! The dedupe key is the alert's fingerprint, status and start time: Alertmanager posts a
//! group again every `repeat_interval` and retries a post that failed, and the notifier
//! sends a key once, so each firing and each resolution reaches each admin once. A new
//! firing of the same alert after it resolved starts at a new time: a new message.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tickwatch_schema::db::entity::user;
use tickwatch_schema::names::Exchange;
use tickwatch_schema::wire::{Channel, EventKind, Notification};

use super::Services;
use super::users::ROLE_ADMIN;
use crate::error::{Error, Result};

/// Firing or resolved, as Alertmanager says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorAlertStatus {
    Firing,
    Resolved,
}

impl OperatorAlertStatus {
    fn as_str(self) -> &'static str {
        match self {
            OperatorAlertStatus::Firing => "firing",
            OperatorAlertStatus::Resolved => "resolved",
        }
    }
}

/// One alert of an Alertmanager post, as the admins read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorAlert {
    pub status: OperatorAlertStatus,
    /// The `alertname` label.
    pub name: String,
    /// The `severity` label.
    pub severity: Option<String>,
    /// The `summary` and `description` annotations.
    pub summary: Option<String>,
    pub description: Option<String>,
    /// The `runbook_url` annotation.
    pub runbook_url: Option<String>,
    /// Alertmanager's identity of the alert (its labels' hash).
    pub fingerprint: String,
    /// `startsAt`, as sent.
    pub starts_at: String,
}

impl OperatorAlert {
    /// The message for an admin whose language is `language` (`ko` or anything else).
    pub fn text(&self, language: &str) -> String {
        let korean = language == "ko";
        let head = match (self.status, korean) {
            (OperatorAlertStatus::Firing, false) => "🔥 FIRING",
            (OperatorAlertStatus::Resolved, false) => "✅ RESOLVED",
            (OperatorAlertStatus::Firing, true) => "🔥 발생",
            (OperatorAlertStatus::Resolved, true) => "✅ 해결",
        };
        let mut text = format!("{head}: {}", self.name);
        if let Some(severity) = &self.severity {
            text.push_str(&format!(" ({severity})"));
        }
        for line in [&self.summary, &self.description].into_iter().flatten() {
            text.push('\n');
            text.push_str(line);
        }
        if let Some(url) = &self.runbook_url {
            text.push_str(if korean { "\n런북: " } else { "\nRunbook: " });
            text.push_str(url);
        }
        text
    }

    fn dedupe_key(&self, chat_id: i64) -> String {
        format!(
            "alertmanager:{}:{}:{}:{chat_id}",
            self.fingerprint,
            self.status.as_str(),
            self.starts_at
        )
    }
}

impl Services {
    /// Sends each alert to every active admin with a Telegram chat, as a `system`
    /// notification; returns how many notifications the broker confirmed.
    pub async fn relay_operator_alerts(&self, alerts: &[OperatorAlert]) -> Result<usize> {
        let Some(publisher) = &self.inner.publisher else {
            return Err(Error::Unavailable(
                "relaying Alertmanager's alerts needs the broker".into(),
            ));
        };
        let admins: Vec<(i64, String)> = user::Entity::find()
            .filter(user::Column::Role.eq(ROLE_ADMIN))
            .filter(user::Column::Active.eq(true))
            .all(self.db())
            .await?
            .into_iter()
            .filter_map(|u| Some((u.telegram_chat_id?, u.language)))
            .collect();
        let mut confirms = Vec::new();
        for alert in alerts {
            for (chat_id, language) in &admins {
                let notification = Notification {
                    id: uuid::Uuid::now_v7(),
                    channel: Channel::Telegram,
                    chat_id: *chat_id,
                    text: alert.text(language),
                    parse_mode: None,
                    dedupe_key: alert.dedupe_key(*chat_id),
                    kind: EventKind::System,
                    origin_ts: None,
                    buttons: Vec::new(),
                    chart: None,
                };
                confirms.push(publisher.send(Exchange::Notify, &notification).await?);
            }
        }
        let sent = confirms.len();
        // Answered only once the broker has them: a failure makes Alertmanager post again,
        // and the dedupe keys keep that from sending anything twice.
        let confirmed = tokio::time::timeout(self.inner.announce_timeout, async {
            for confirm in confirms {
                confirm.wait().await?;
            }
            Ok::<_, tickwatch_broker::Error>(())
        })
        .await;
        match confirmed {
            Ok(Ok(())) => {
                crate::events::OperatorAlertsSent { messages: sent }.emit();
                Ok(sent)
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(Error::Unavailable(format!(
                "the broker did not confirm the notifications within {:?}",
                self.inner.announce_timeout
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(status: OperatorAlertStatus) -> OperatorAlert {
        OperatorAlert {
            status,
            name: "TickwatchDlqGrowing".into(),
            severity: Some("warning".into()),
            summary: Some("Messages are being dead-lettered".into()),
            description: None,
            runbook_url: Some("https://example.org/runbooks/dlq".into()),
            fingerprint: "5f1c3a".into(),
            starts_at: "2026-12-06T10:00:00Z".into(),
        }
    }

    #[test]
    fn the_message_names_the_alert_its_severity_summary_and_runbook() {
        assert_eq!(
            alert(OperatorAlertStatus::Firing).text("en"),
            "🔥 FIRING: TickwatchDlqGrowing (warning)\nMessages are being dead-lettered\nRunbook: https://example.org/runbooks/dlq"
        );
        assert_eq!(
            alert(OperatorAlertStatus::Resolved).text("ko"),
            "✅ 해결: TickwatchDlqGrowing (warning)\nMessages are being dead-lettered\n런북: https://example.org/runbooks/dlq"
        );
    }

    #[test]
    fn one_key_per_alert_status_start_and_chat() {
        let firing = alert(OperatorAlertStatus::Firing);
        assert_eq!(firing.dedupe_key(7), firing.clone().dedupe_key(7));
        assert_ne!(
            firing.dedupe_key(7),
            alert(OperatorAlertStatus::Resolved).dedupe_key(7)
        );
        assert_ne!(firing.dedupe_key(7), firing.dedupe_key(8));
    }
}
