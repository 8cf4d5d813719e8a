//! Every command with its usage and an example (for `/help`, for the menu set with
//! `setMyCommands`, and after a mistake), and formatting helpers; the messages themselves
//! are in [`super::texts`]. Replies use Telegram's HTML mode, so every value from a user
//! or the database is escaped.

use rust_decimal::Decimal;
use tickwatch_schema::display::{Tz, format_price};
use tickwatch_schema::rule::AlertRule;

use super::texts;
use crate::services::users::Language;

/// One command: its name, its form, an example, and a short description per language.
#[derive(Debug, Clone, Copy)]
pub struct CommandDoc {
    pub name: &'static str,
    pub form: &'static str,
    pub example: &'static str,
    pub en: &'static str,
    pub ko: &'static str,
    pub admin: bool,
}

/// Every command, in the order `/help` lists them.
pub const COMMANDS: &[CommandDoc] = &[
    CommandDoc {
        name: "start",
        form: "/start",
        example: "/start",
        en: "Welcome and your status",
        ko: "시작과 내 상태",
        admin: false,
    },
    CommandDoc {
        name: "help",
        form: "/help",
        example: "/help",
        en: "Every command with an example",
        ko: "모든 명령과 예시",
        admin: false,
    },
    CommandDoc {
        name: "register",
        form: "/register",
        example: "/register",
        en: "Agree to receive notifications",
        ko: "알림 수신 동의",
        admin: false,
    },
    CommandDoc {
        name: "unregister",
        form: "/unregister",
        example: "/unregister",
        en: "Stop notifications (and optionally delete your data)",
        ko: "알림 중지 (데이터 삭제 선택 가능)",
        admin: false,
    },
    CommandDoc {
        name: "alert",
        form: "/alert <symbol> <condition> <price> [once|every <cooldown>|bar <interval>|close <interval>]",
        example: "/alert BTCUSDT > 65000  ·  /alert 삼성전자 crossing_down 70000 once  ·  /alert ETHUSDT cross_up 4000 every 1h  ·  /alert BTCUSDT enter 60000 62000  ·  /alert BTCUSDT outside 60000 62000  ·  /alert BTCUSDT up% 5 1h  ·  /alert BTCUSDT down 2000 in 1h  ·  /alert 005930 cross_up 75000 close 1d  ·  /alert BTCUSDT rsi(14,1h) < 30  ·  /alert 005930 close x> sma(200,1d) and rsi(14,1d) < 70",
        en: "Set a price alert",
        ko: "가격 알림 설정",
        admin: false,
    },
    CommandDoc {
        name: "alerts",
        form: "/alerts",
        example: "/alerts",
        en: "Your alerts, with buttons to pause or delete",
        ko: "내 알림 목록 (일시정지·삭제 버튼)",
        admin: false,
    },
    CommandDoc {
        name: "delalert",
        form: "/delalert <id>",
        example: "/delalert 12",
        en: "Delete an alert",
        ko: "알림 삭제",
        admin: false,
    },
    CommandDoc {
        name: "edit",
        form: "/edit <id> threshold <n>|channel <low> <high>|pct <p>|window <dur>|once|every <dur>|bar <interval>|close <interval>|expression <clauses>|expires <dur>|never",
        example: "/edit 12 threshold 66000  ·  /edit 12 every 10m",
        en: "Change an alert",
        ko: "알림 수정",
        admin: false,
    },
    CommandDoc {
        name: "pause",
        form: "/pause <id>",
        example: "/pause 12",
        en: "Pause an alert",
        ko: "알림 일시정지",
        admin: false,
    },
    CommandDoc {
        name: "resume",
        form: "/resume <id>",
        example: "/resume 12",
        en: "Resume a paused alert",
        ko: "알림 재개",
        admin: false,
    },
    CommandDoc {
        name: "subscribe",
        form: "/subscribe <signal kind> [symbol|all] [min grade A-D]",
        example: "/subscribe rsi_oversold BTCUSDT B  ·  /subscribe golden_cross all",
        en: "Subscribe to signals",
        ko: "신호 구독",
        admin: false,
    },
    CommandDoc {
        name: "unsubscribe",
        form: "/unsubscribe <signal kind> [symbol|all] | <id> | all",
        example: "/unsubscribe rsi_oversold BTCUSDT  ·  /unsubscribe all",
        en: "Stop signal subscriptions",
        ko: "신호 구독 해지",
        admin: false,
    },
    CommandDoc {
        name: "signals",
        form: "/signals [symbol]",
        example: "/signals BTCUSDT",
        en: "The latest signals",
        ko: "최근 신호",
        admin: false,
    },
    CommandDoc {
        name: "stats",
        form: "/stats",
        example: "/stats",
        en: "How signals turned out",
        ko: "신호 적중 통계",
        admin: false,
    },
    CommandDoc {
        name: "price",
        form: "/price <symbol>",
        example: "/price 삼성전자",
        en: "Latest price and the day's change",
        ko: "현재가와 당일 등락",
        admin: false,
    },
    CommandDoc {
        name: "settings",
        form: "/settings [alert|signal|system|paper on|silent|off] [charts on|off] [digest HH:MM|off] [lang ko|en] [tz <zone>|auto]",
        example: "/settings alert silent  ·  /settings lang ko  ·  /settings tz Asia/Seoul",
        en: "Notification settings, language and time zone",
        ko: "알림 설정, 언어와 시간대",
        admin: false,
    },
    CommandDoc {
        name: "paper",
        form: "/paper [new | <id> | pause <id> | resume <id> | delete <id>]",
        example: "/paper new  ·  /paper 3",
        en: "Paper trading: follow signals with virtual money — strategies, open positions, P&L",
        ko: "모의매매: 가상 자금으로 신호 따라가기 — 전략, 보유 포지션, 손익",
        admin: false,
    },
    CommandDoc {
        name: "apikey",
        form: "/apikey [revoke]",
        example: "/apikey",
        en: "A new API key (shown once), or revoke yours",
        ko: "새 API 키 발급 (한 번만 표시) 또는 폐기",
        admin: false,
    },
    CommandDoc {
        name: "relay",
        form: "/relay",
        example: "/relay",
        en: "A webhook URL for your TradingView alerts: what they say comes here (a new URL each time)",
        ko: "TradingView 알림용 웹훅 URL: 알림 내용이 여기로 옵니다 (매번 새 URL)",
        admin: false,
    },
    CommandDoc {
        name: "web",
        form: "/web [signout]",
        example: "/web",
        en: "A sign-in link to the web dashboard (charts, alerts, signals, paper trading); it works once, for 10 minutes",
        ko: "웹 대시보드 로그인 링크 (차트, 알림, 시그널, 모의매매); 10분 안에 한 번만 쓸 수 있습니다",
        admin: false,
    },
    CommandDoc {
        name: "halt",
        form: "/halt",
        example: "/halt",
        en: "Hold users' notifications in the queue (system messages still go out)",
        ko: "사용자 알림 보류 (시스템 메시지는 전송)",
        admin: true,
    },
    CommandDoc {
        name: "resume",
        form: "/resume",
        example: "/resume",
        en: "Release held notifications",
        ko: "보류된 알림 재개",
        admin: true,
    },
    CommandDoc {
        name: "broadcast",
        form: "/broadcast <text> | /broadcast status",
        example: "/broadcast Maintenance at 02:00 UTC",
        en: "Message every registered user (status: how far the latest got)",
        ko: "모든 사용자에게 공지 (status: 진행 상황)",
        admin: true,
    },
];

/// The documentation of a command (the user form when a name has two).
pub fn doc(name: &str) -> Option<&'static CommandDoc> {
    COMMANDS
        .iter()
        .find(|c| c.name == name && !c.admin)
        .or_else(|| COMMANDS.iter().find(|c| c.name == name))
}

/// Escapes text for Telegram's HTML mode (teloxide's escape: `&`, `<`, `>`; the bot puts
/// no user text inside an attribute, where `"` would matter).
pub fn esc(text: &str) -> String {
    teloxide::utils::html::escape(text)
}

/// The usage lines of a command: its form and an example.
pub fn usage(lang: Language, name: &str) -> String {
    match doc(name) {
        Some(d) => texts::USAGE.fill(
            lang,
            &[("form", &esc(d.form)), ("example", &esc(d.example))],
        ),
        None => texts::SEE_HELP.get(lang).to_string(),
    }
}

/// `/help`.
pub fn help(lang: Language, admin: bool) -> String {
    let mut out = texts::HELP_INTRO.get(lang).to_string();
    for d in COMMANDS.iter().filter(|d| admin || !d.admin) {
        let what = match lang {
            Language::En => d.en,
            Language::Ko => d.ko,
        };
        out.push_str(&format!(
            "\n<code>{}</code>\n  {}{} — e.g. <code>{}</code>\n",
            esc(d.form),
            if d.admin { "🔒 " } else { "" },
            esc(what),
            esc(d.example)
        ));
    }
    out.push_str(texts::HELP_FOOTER.get(lang));
    out
}

/// One rule on one line, its prices as the market shows them (`₩74,800`).
pub fn rule_line(rule: &AlertRule) -> String {
    let state = if rule.active { "▶" } else { "⏸" };
    let spec = &rule.spec;
    let line = spec.describe(|p| format_price(p, &spec.venue, &spec.symbol));
    format!("{state} <b>#{}</b> {}", rule.id, esc(&line))
}

/// A signed percentage: `+1.25%`.
pub fn signed_pct(pct: Decimal) -> String {
    if pct.is_sign_negative() {
        format!("{pct}%")
    } else {
        format!("+{pct}%")
    }
}

/// A fraction as a signed percentage with two decimals: `0.0042` → `+0.42%`.
pub fn fraction_pct(f: f64) -> String {
    format!("{:+.2}%", f * 100.0)
}

/// `2026-11-21 23:00 KST`, in the reader's time zone.
pub fn time(ts_ms: i64, tz: Tz) -> String {
    tickwatch_schema::display::format_time_short(ts_ms, tz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_usage_in_both_languages() {
        for d in COMMANDS {
            assert!(d.example.starts_with('/'), "{}", d.name);
            assert!(!d.en.is_empty() && !d.ko.is_empty());
        }
        assert!(usage(Language::Ko, "alert").contains("형식"));
        assert!(help(Language::En, false).contains("/alert BTCUSDT &gt; 65000"));
        assert!(!help(Language::En, false).contains("/broadcast"));
        assert!(help(Language::En, true).contains("/broadcast"));
        assert_eq!(esc("a<b>&\"c"), "a&lt;b&gt;&amp;\"c");
        assert_eq!(fraction_pct(0.0042), "+0.42%");
        assert_eq!(signed_pct(Decimal::new(-125, 2)), "-1.25%");
    }
}
