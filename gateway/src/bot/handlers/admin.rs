//! Admin commands: `/halt` and `/broadcast`.

use super::*;

impl Session<'_> {
    pub(super) async fn forbidden(&self, command: &str) -> Result<()> {
        self.reply(self.text_with(&texts::ADMINS_ONLY, &[("command", &command)]))
            .await
    }

    pub(super) async fn halt(&self) -> Result<()> {
        if !self.admin {
            return self.forbidden("halt").await;
        }
        self.ctx
            .services
            .halt_notifications(Some(self.chat))
            .await?;
        self.reply(self.text(&texts::HALTED)).await
    }

    /// `/broadcast <text>`: a durable broadcast through the broker (see
    /// [`crate::services::broadcasts`]); `/broadcast status`: the latest ones' progress.
    pub(super) async fn broadcast(&self, text: String) -> Result<()> {
        if !self.admin {
            return self.forbidden("broadcast").await;
        }
        if text.trim().eq_ignore_ascii_case("status") {
            return self.broadcast_status().await;
        }
        let (id, total) = match self.ctx.services.start_broadcast(&text).await {
            Ok(started) => started,
            Err(Error::Unavailable(why)) => {
                return self
                    .reply(self.text_with(&texts::CANNOT_BROADCAST, &[("why", &esc(&why))]))
                    .await;
            }
            Err(e) => return Err(e),
        };
        self.reply(self.text_with(&texts::BROADCAST_STARTED, &[("id", &id), ("total", &total)]))
            .await?;
        // Handed over in the background; a restart resumes it (the bot's start).
        let services = self.ctx.services.clone();
        tokio::spawn(async move {
            if let Err(e) = services.run_broadcast(&id).await {
                tracing::warn!(broadcast = %id, error = %e, "broadcast interrupted; the next start resumes it");
            }
        });
        Ok(())
    }

    pub(super) async fn broadcast_status(&self) -> Result<()> {
        let latest = self.ctx.services.broadcast_progress(5).await?;
        if latest.is_empty() {
            return self.reply(self.text(&texts::NO_BROADCASTS)).await;
        }
        let mut lines = vec![self.text(&texts::BROADCASTS)];
        for b in latest {
            let state = if b.done {
                self.text(&texts::BROADCAST_DONE)
            } else {
                self.text(&texts::BROADCAST_RUNNING)
            };
            lines.push(self.text_with(
                &texts::BROADCAST_LINE,
                &[
                    ("id", &b.id),
                    ("started", &time(b.started_at, self.tz)),
                    ("published", &b.published),
                    ("total", &b.total),
                    ("delivered", &b.delivered),
                    ("state", &state),
                ],
            ));
        }
        self.reply(lines.join("\n")).await
    }
}
