//! Admin commands: `/halt` and `/broadcast`.

use super::*;

impl Session<'_> {
    pub(super) async fn forbidden(&self, command: &str) -> Result<()> {
        self.reply(self.t(
            format!("⛔ Only admins can use /{command}."),
            format!("⛔ /{command} 는 관리자만 쓸 수 있습니다."),
        ))
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
        self.reply(self.t(
            "⏸ Notifications halted for everyone. They are held in the queue, not lost; /resume releases them. System messages (operators' alerts, broadcasts) are not held unless notifier.halt_holds_system is set.",
            "⏸ 전체 알림을 보류했습니다. 메시지는 큐에 보관되며 /resume 으로 재개합니다. 시스템 메시지(운영 경보, 공지)는 notifier.halt_holds_system 설정이 없으면 계속 전송됩니다.",
        ))
        .await
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
                    .reply(self.t(
                        format!("⚠️ Cannot broadcast: {}", esc(&why)),
                        format!("⚠️ 공지를 보낼 수 없습니다: {}", esc(&why)),
                    ))
                    .await;
            }
            Err(e) => return Err(e),
        };
        self.reply(self.t(
            format!("📣 Broadcast <code>{id}</code> to {total} user(s): handed to the notifier in batches. /broadcast status shows how far it is."),
            format!("📣 공지 <code>{id}</code>: {total}명에게 순서대로 전달합니다. /broadcast status 로 진행 상황을 확인하세요."),
        ))
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
            return self
                .reply(self.t("📣 No broadcasts yet.", "📣 아직 공지가 없습니다."))
                .await;
        }
        let mut lines = vec![self.t("📣 Broadcasts, newest first:", "📣 공지 (최신순):")];
        for b in latest {
            let state = if b.done {
                self.t("all handed over", "전달 완료")
            } else {
                self.t("handing over", "전달 중")
            };
            lines.push(self.t(
                format!(
                    "<code>{}</code> {}: {}/{} handed over, {} delivered ({state})",
                    b.id,
                    time(b.started_at),
                    b.published,
                    b.total,
                    b.delivered
                ),
                format!(
                    "<code>{}</code> {}: {}/{} 전달, {} 수신 ({state})",
                    b.id,
                    time(b.started_at),
                    b.published,
                    b.total,
                    b.delivered
                ),
            ));
        }
        self.reply(lines.join("\n")).await
    }
}
