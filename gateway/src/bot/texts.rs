//! One table of what the bot says: every message under a name, English and Korean side
//! by side, so a wording is changed (or a translation checked) in one place.
//!
//! To add a message, add a line to the `texts!` list below: a `///` line saying when it
//! is sent, then `NAME => en: "…", ko: "…";`. A value filled in at send time is written
//! `{name}` in both languages and given by the caller, e.g.
//! `session.text_with(&texts::ALERT_DELETED, &[("id", &id)])`. Replies use Telegram's
//! HTML mode: the templates hold the HTML (and entities such as `&gt;`); the caller
//! escapes every value from a user or the database with [`super::text::esc`], and
//! formats numbers (`{:.2}` and the like) before passing them. The tests check that both
//! languages use the same placeholders.
//!
//! The usage, example and menu description of each command stay in
//! [`super::text::COMMANDS`]; the mistakes found while parsing a command are in
//! [`super::parse`].

use std::fmt::Display;

use crate::services::users::Language;

/// A value for a placeholder: its name and the value. `Sync` because a message is often
/// built inside the `.await` of its reply, and the bot's futures must be `Send`.
pub type Arg<'a> = (&'a str, &'a (dyn Display + Sync));

/// One message of the bot in both languages; `{name}` marks a value filled in at send time.
#[derive(Debug, Clone, Copy)]
pub struct Text {
    pub en: &'static str,
    pub ko: &'static str,
}

impl Text {
    /// The template in `lang`, placeholders as they are.
    pub fn get(&self, lang: Language) -> &'static str {
        match lang {
            Language::En => self.en,
            Language::Ko => self.ko,
        }
    }

    /// The template in `lang` with each `{key}` replaced by its value, inserted as given
    /// (a value is not searched for placeholders in turn).
    pub fn fill(&self, lang: Language, args: &[Arg]) -> String {
        let template = self.get(lang);
        let mut out = String::with_capacity(template.len() + 16 * args.len());
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let found = after.find('}').and_then(|close| {
                let key = &after[..close];
                args.iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, value)| (close, value))
            });
            match found {
                Some((close, value)) => {
                    out.push_str(&value.to_string());
                    rest = &after[close + 1..];
                }
                None => {
                    // A placeholder without a value is a mistake at the call site; in a
                    // release build the message goes out with `{key}` showing.
                    debug_assert!(
                        !starts_with_placeholder(after),
                        "no value for a placeholder in {template:?}"
                    );
                    out.push('{');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// Whether `text` (just after a `{`) is a placeholder's name and its `}`.
fn starts_with_placeholder(text: &str) -> bool {
    text.find('}').is_some_and(|close| is_key(&text[..close]))
}

/// A placeholder's name: lower-case letters, digits and `_`.
fn is_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Defines each text as a constant and lists them all in [`ALL`].
macro_rules! texts {
    ($( $(#[$doc:meta])* $name:ident => en: $en:literal, ko: $ko:literal; )*) => {
        $(
            $(#[$doc])*
            pub const $name: Text = Text { en: $en, ko: $ko };
        )*

        /// Every text with its name, for the tests.
        pub const ALL: &[(&str, &Text)] = &[$((stringify!($name), &$name)),*];
    };
}

texts! {
    // Registration and accounts (`/start`, `/register`, `/unregister`, `/settings`,
    // `/apikey`).

    /// `/start` from someone not registered yet.
    WELCOME => en: "👋 Welcome to <b>tickwatch</b>: price alerts and market signals, right here.\n1. /register — agree to receive notifications\n2. <code>/alert BTCUSDT &gt; 65000</code> — your first alert\n/help lists every command. Type a name such as <code>btc</code> or <code>삼성</code> to find a symbol.",
        ko: "👋 <b>tickwatch</b>에 오신 것을 환영합니다: 가격 알림과 시장 신호.\n1. /register — 알림 수신 동의\n2. <code>/alert 삼성전자 &gt; 70000</code> — 첫 알림\n/help 에서 모든 명령을 볼 수 있습니다. <code>삼성</code>, <code>btc</code> 처럼 이름을 보내면 종목을 찾습니다.";
    /// `/start` from a registered user.
    WELCOME_BACK => en: "👋 Welcome back, {name}. You have {rules} alert(s): /alerts. /help lists every command.",
        ko: "👋 {name}님, 다시 오셨네요. 알림 {rules}개: /alerts. /help 에서 모든 명령을 볼 수 있습니다.";
    /// `/start` from a user whose notifications were stopped (by `/unregister` or the
    /// system, e.g. after the bot was blocked).
    WELCOME_BACK_PAUSED => en: "👋 Welcome back. Your notifications were paused: <i>{reason}</i>.\nSend /register to resume them; your alerts are kept.",
        ko: "👋 다시 오신 것을 환영합니다. 알림이 일시 중지되었습니다: <i>{reason}</i>.\n/register 를 보내면 다시 받습니다. 알림 설정은 그대로 있습니다.";
    /// `/register` by a new user: records their consent.
    REGISTERED => en: "✅ Registered. You agreed to receive notifications from this bot; /unregister stops them at any time.\nTry <code>/alert BTCUSDT &gt; 65000</code>.",
        ko: "✅ 등록되었습니다. 이 봇의 알림 수신에 동의하셨습니다. 언제든 /unregister 로 중지할 수 있습니다.\n예: <code>/alert 삼성전자 &gt; 70000</code>";
    /// `/register` by a user whose notifications were stopped.
    REACTIVATED => en: "✅ Notifications are back on. /alerts lists your alerts.",
        ko: "✅ 알림을 다시 받습니다. /alerts 로 알림을 확인하세요.";
    /// `/register` by an active user.
    ALREADY_REGISTERED => en: "You are already registered. /alerts lists your alerts.",
        ko: "이미 등록되어 있습니다. /alerts 로 알림을 확인하세요.";
    /// A command that needs an account, from someone not registered.
    REGISTER_FIRST => en: "Please /register first: it records your consent to receive notifications.",
        ko: "먼저 /register 해 주세요: 알림 수신 동의를 기록합니다.";
    /// A command that needs an account, from a user whose notifications are stopped.
    NOTIFICATIONS_STOPPED => en: "Your notifications are stopped. Send /register to turn them back on first.",
        ko: "알림이 중지된 상태입니다. 먼저 /register 로 다시 켜 주세요.";
    /// `/unregister` from someone not registered.
    NOT_REGISTERED => en: "You are not registered.",
        ko: "등록되어 있지 않습니다.";
    /// `/unregister` done; followed by the button [`DELETE_MY_DATA_BUTTON`].
    UNREGISTERED => en: "🔕 Notifications stopped. Your {rules} alert(s) are kept: /register turns notifications back on.\nOr delete everything (alerts, subscriptions, API keys):",
        ko: "🔕 알림을 중지했습니다. 알림 {rules}개는 보관됩니다: /register 로 다시 켤 수 있습니다.\n또는 모든 데이터(알림, 구독, API 키)를 삭제할 수 있습니다:";
    /// The button under [`UNREGISTERED`].
    DELETE_MY_DATA_BUTTON => en: "🗑 Delete all my data",
        ko: "🗑 내 데이터 모두 삭제";
    /// [`DELETE_MY_DATA_BUTTON`] pressed by someone with no account.
    NOTHING_TO_DELETE => en: "Nothing to delete.",
        ko: "삭제할 데이터가 없습니다.";
    /// [`DELETE_MY_DATA_BUTTON`] done.
    DATA_DELETED => en: "🗑 Deleted your data: {rules} alert(s), {subscriptions} subscription(s), {api_keys} API key(s). /register starts afresh.",
        ko: "🗑 데이터를 삭제했습니다: 알림 {rules}개, 구독 {subscriptions}개, API 키 {api_keys}개. /register 로 새로 시작할 수 있습니다.";
    /// `/settings`: one `lines` line per kind of notification. In the language just
    /// chosen, so each names its own language.
    SETTINGS => en: "<b>Settings</b> (on · silent = no sound · off)\n{lines}\nLanguage: English\nTime zone: {zone}\nChange with the buttons or e.g. <code>/settings signal silent</code>, <code>/settings lang ko</code>, <code>/settings tz Asia/Seoul</code> (<code>auto</code>: the language's).",
        ko: "<b>설정</b> (on · silent = 무음 · off)\n{lines}\n언어: 한국어\n시간대: {zone}\n버튼 또는 <code>/settings signal silent</code>, <code>/settings lang en</code>, <code>/settings tz Asia/Seoul</code> (<code>auto</code>: 언어 기본값) 으로 바꿀 수 있습니다.";
    /// `/relay`: the URL, shown this once.
    RELAY_URL => en: "📡 Your TradingView relay URL — shown only now:\n<code>{url}</code>\nIn TradingView's alert dialog: Notifications → Webhook URL, paste it. The alert's message (text, or JSON with a <code>message</code>) comes to this chat. /relay again makes a new URL and the old one stops working.",
        ko: "📡 TradingView 중계 URL — 지금만 표시됩니다:\n<code>{url}</code>\nTradingView 알림 창의 알림(Notifications) → 웹훅 URL에 붙여 넣으세요. 알림 메시지(텍스트, 또는 <code>message</code>가 있는 JSON)가 이 채팅으로 옵니다. /relay 를 다시 쓰면 새 URL이 만들어지고 이전 URL은 더 이상 동작하지 않습니다.";
    /// `/web`: the one-time sign-in link.
    WEB_LINK => en: "🖥 Your sign-in link to the dashboard — it works once, within 10 minutes, and only for you:\n{url}\nOpen it in your browser; the session then lasts 7 days. /web again gives a new link; /web signout signs every browser out.",
        ko: "🖥 대시보드 로그인 링크 — 10분 안에 한 번만, 본인만 쓰세요:\n{url}\n브라우저에서 여세요. 로그인은 7일 동안 유지됩니다. /web 을 다시 쓰면 새 링크를 드립니다. /web signout 은 모든 브라우저에서 로그아웃합니다.";
    /// `/web signout`.
    WEB_SIGNED_OUT => en: "🖥 Signed out of the dashboard everywhere ({count} session(s) ended).",
        ko: "🖥 모든 브라우저에서 대시보드 로그아웃했습니다 (세션 {count}개 종료).";
    /// `/apikey`: the key, shown this once.
    NEW_API_KEY => en: "🔑 Your new API key — shown only now, keep it safe:\n<code>{key}</code>\nSend it as <code>Authorization: Bearer …</code>. /apikey revoke revokes all your keys.",
        ko: "🔑 새 API 키 — 지금 한 번만 표시됩니다. 안전하게 보관하세요:\n<code>{key}</code>\n<code>Authorization: Bearer …</code> 헤더로 보내세요. /apikey revoke 로 모든 키를 폐기합니다.";
    /// `/apikey revoke`.
    API_KEYS_REVOKED => en: "🔑 Revoked {count} API key(s).",
        ko: "🔑 API 키 {count}개를 폐기했습니다.";

    // Price alerts (`/alert`, `/alerts`, `/delalert`, `/pause`, `/resume`).

    /// `/alert` done: `name` is ` — <name>` or empty, `rule` the rule's line.
    ALERT_SET => en: "✅ Alert <b>#{id}</b> set{name}:\n{rule}\n/alerts lists yours; /pause {id} or /delalert {id}.",
        ko: "✅ 알림 <b>#{id}</b> 설정{name}:\n{rule}\n/alerts 로 목록, /pause {id} 일시정지, /delalert {id} 삭제.";
    /// After ALERT_SET: the symbol is no longer in its venue's list.
    ALERT_WARN_DELISTED => en: "⚠️ {symbol} is delisted: this alert fires only if data still arrives.",
        ko: "⚠️ {symbol} 은(는) 상장폐지된 종목입니다: 데이터가 들어오는 경우에만 알림이 울립니다.";
    /// After ALERT_SET: no price of the symbol has arrived yet.
    ALERT_WARN_NO_DATA => en: "⚠️ No price of {symbol} has arrived yet: no source may publish it. The alert waits until one does.",
        ko: "⚠️ 아직 {symbol} 의 시세가 들어오지 않았습니다: 이 종목을 보내는 소스가 없을 수 있습니다. 시세가 들어오면 알림이 동작합니다.";
    /// A mistake in an expression alert's clauses: `reason` is the grammar's message.
    INVALID_EXPRESSION => en: "⚠️ The conditions cannot be read: {reason}\nForm: <code>&lt;left&gt; &lt;operator&gt; &lt;right&gt;</code>, up to 5 joined by <code>and</code> — operands close, volume, rsi(14,1h), sma(200,1d), ema(50,4h), macd(12,26,9,1h), bb(20,2,4h), atr(14,1d) or a number; operators <code>&gt;</code> <code>&lt;</code> x&gt; x&lt; x inside outside.",
        ko: "⚠️ 조건식을 읽을 수 없습니다: {reason}\n형식: <code>&lt;왼쪽&gt; &lt;연산자&gt; &lt;오른쪽&gt;</code>, <code>and</code> 로 최대 5개 — 값: close, volume, rsi(14,1h), sma(200,1d), ema(50,4h), macd(12,26,9,1h), bb(20,2,4h), atr(14,1d) 또는 숫자; 연산자: <code>&gt;</code> <code>&lt;</code> x&gt;(상향 돌파) x&lt;(하향 돌파) x inside(밴드 안) outside(밴드 밖).";
    /// An expression alert that cannot be evaluated yet; `detail` says which indicator
    /// lacks stored candles and how to load them.
    ALERT_WARN_HISTORY => en: "⏳ Not evaluable yet: {detail}",
        ko: "⏳ 아직 평가할 수 없습니다 (저장된 봉 부족): {detail}";
    /// `/alerts` with no rules.
    NO_ALERTS => en: "You have no alerts yet. Example: <code>/alert BTCUSDT &gt; 65000</code>",
        ko: "아직 알림이 없습니다. 예: <code>/alert 삼성전자 &gt; 70000</code>";
    /// `/alerts`: the heading of the rules.
    YOUR_ALERTS => en: "<b>Your alerts</b>",
        ko: "<b>내 알림</b>";
    /// `/alerts`: after the rules when there are more than it lists.
    MORE_ALERTS => en: "\n… and more: ▶ shows the next {limit}.",
        ko: "\n… 더 있습니다: ▶ 로 다음 {limit}개를 봅니다.";
    /// `/alerts`: the heading of the signal subscriptions.
    YOUR_SUBSCRIPTIONS => en: "<b>Your signal subscriptions</b>",
        ko: "<b>내 신호 구독</b>";
    /// `/alerts`: the button pausing an active rule.
    PAUSE_BUTTON => en: "⏸ Pause #{id}",
        ko: "⏸ 일시정지 #{id}";
    /// `/alerts`: the button resuming a paused rule.
    RESUME_BUTTON => en: "▶ Resume #{id}",
        ko: "▶ 재개 #{id}";
    /// `/alerts`: the button deleting a rule.
    DELETE_BUTTON => en: "🗑 Delete #{id}",
        ko: "🗑 삭제 #{id}";
    /// `/delalert` (or its button) done.
    ALERT_DELETED => en: "🗑 Alert #{id} deleted.",
        ko: "🗑 알림 #{id} 삭제됨.";
    /// `/pause` (or its button) done; `rule` is the rule's line.
    ALERT_PAUSED => en: "⏸ Alert #{id} paused; /resume {id} resumes it.\n{rule}",
        ko: "⏸ 알림 #{id} 일시정지; /resume {id} 로 재개.\n{rule}";
    /// `/edit` done; `rule` is the rule's new line.
    ALERT_EDITED => en: "✏️ Alert #{id} changed.\n{rule}",
        ko: "✏️ 알림 #{id} 수정됨.\n{rule}";
    /// `/resume <id>` (or its button) done; `rule` is the rule's line.
    ALERT_RESUMED => en: "▶ Alert #{id} resumed.\n{rule}",
        ko: "▶ 알림 #{id} 재개.\n{rule}";
    /// `/resume` without an id from a user (for admins it releases held notifications).
    WHICH_ALERT => en: "⚠️ Which alert? Give its id.\n{usage}",
        ko: "⚠️ 어떤 알림인가요? 번호를 쓰세요.\n{usage}";

    // Symbols (in commands, plain-text search, `/price`).

    /// A symbol in a command that names several: `options` lists them.
    AMBIGUOUS_SYMBOL => en: "🤔 “{text}” matches several symbols: {options}.\nWrite one of them as <code>venue:SYMBOL</code>.\n{usage}",
        ko: "🤔 “{text}”에 해당하는 종목이 여럿입니다: {options}.\n<code>거래소:종목</code> 형식으로 하나를 고르세요.\n{usage}";
    /// A symbol in a command that names none: `hint` is [`DID_YOU_MEAN`] or
    /// [`SEARCH_HINT`].
    UNKNOWN_SYMBOL => en: "⚠️ Unknown symbol “{text}”. {hint}\n{usage}",
        ko: "⚠️ 알 수 없는 종목 “{text}”. {hint}\n{usage}";
    /// The hint of [`UNKNOWN_SYMBOL`] with close symbols.
    DID_YOU_MEAN => en: "Did you mean {options}?",
        ko: "혹시 {options} 인가요?";
    /// The hint of [`UNKNOWN_SYMBOL`] with nothing close.
    SEARCH_HINT => en: "Type a name such as <code>btc</code> or <code>삼성</code> to search.",
        ko: "<code>btc</code>, <code>삼성</code> 처럼 이름을 보내 검색해 보세요.";
    /// A plain message that cannot be a search (empty or too long).
    SEARCH_HOW => en: "Type a symbol or a name to search (e.g. <code>btc</code>, <code>삼성</code>), or /help.",
        ko: "종목이나 이름을 보내 검색하세요 (예: <code>btc</code>, <code>삼성</code>). 또는 /help.";
    /// A search that found nothing.
    NO_SYMBOL_MATCHES => en: "🔍 No symbol matches “{query}”. Try <code>btc</code>, <code>samsung</code> or <code>삼성</code> — or /help.",
        ko: "🔍 “{query}”에 해당하는 종목이 없습니다. <code>btc</code>, <code>삼성</code> 등으로 찾아보세요. 또는 /help.";
    /// The heading of a search's results.
    SEARCH_RESULTS => en: "🔍 Symbols for “{query}”:",
        ko: "🔍 “{query}” 검색 결과:";
    /// A search result's button.
    ALERT_ON_BUTTON => en: "🔔 Alert on {symbol} ({venue})",
        ko: "🔔 {symbol} ({venue}) 알림";
    /// A search result's button pressed: how to set an alert; `price` is
    /// [`PICKED_PRICE`] or empty.
    PICKED => en: "Set an alert on <b>{name}</b>{price}: send\n<code>/alert {name} &gt; PRICE</code>\nor e.g. <code>/alert {name} cross_down PRICE once</code>.",
        ko: "<b>{name}</b>{price} 알림 설정: 다음을 보내세요\n<code>/alert {name} &gt; 가격</code>\n또는 <code>/alert {name} cross_down 가격 once</code>.";
    /// The latest price in [`PICKED`].
    PICKED_PRICE => en: " (now {price})",
        ko: " (현재 {price})";
    /// `/price`: the day's change after the price.
    DAY_CHANGE => en: " · {pct} ({change}) today",
        ko: " · 오늘 {pct} ({change})";
    /// `/price` of a symbol without a price; `label` is the symbol and its venue.
    NO_PRICE_YET => en: "{label}: no price recorded yet",
        ko: "{label}: 아직 기록된 가격이 없습니다";

    // Signals (`/subscribe`, `/unsubscribe`, `/signals`, `/stats`).

    /// `/subscribe` done; `on` is a symbol or [`EVERY_SYMBOL`].
    SUBSCRIBED => en: "🔔 Subscribed (#{id}) to <b>{kind}</b> on {on}, grade {grade} or better.\n/unsubscribe {id} stops it.",
        ko: "🔔 <b>{kind}</b> 신호 구독 (#{id}): {on}, {grade} 등급 이상.\n/unsubscribe {id} 로 해지.";
    /// [`SUBSCRIBED`] without a symbol.
    EVERY_SYMBOL => en: "every symbol",
        ko: "모든 종목";
    /// `/unsubscribe` that matched nothing.
    NO_MATCHING_SUBSCRIPTION => en: "⚠️ No matching subscription. /alerts lists yours.\n{usage}",
        ko: "⚠️ 해당하는 구독이 없습니다. /alerts 에서 확인하세요.\n{usage}";
    /// `/unsubscribe` done.
    UNSUBSCRIBED => en: "🔕 Removed {count} subscription(s).",
        ko: "🔕 구독 {count}개를 해지했습니다.";
    /// `/signals` with none recorded.
    NO_SIGNALS => en: "No signals recorded yet.",
        ko: "아직 기록된 신호가 없습니다.";
    /// `/signals`: the heading.
    LATEST_SIGNALS => en: "<b>Latest signals</b>",
        ko: "<b>최근 신호</b>";
    /// `/stats` for admins: the system's figures; `notifications` is
    /// [`NOTIFICATIONS_HALTED`] or [`NOTIFICATIONS_FLOWING`].
    SYSTEM_STATS => en: "<b>System</b>\nUsers: {users} ({active_users} active) · rules: {rules} ({active_rules} active) · subscriptions: {subscriptions}\nNotifications: {notifications}\n",
        ko: "<b>시스템</b>\n사용자: {users} (활성 {active_users}) · 알림 규칙: {rules} (활성 {active_rules}) · 구독: {subscriptions}\n알림 전송: {notifications}\n";
    /// [`SYSTEM_STATS`] while notifications are halted.
    NOTIFICATIONS_HALTED => en: "⏸ halted",
        ko: "⏸ 보류 중";
    /// [`SYSTEM_STATS`] while notifications flow.
    NOTIFICATIONS_FLOWING => en: "▶ flowing",
        ko: "▶ 정상";
    /// `/stats` for admins when the queues cannot be read.
    QUEUES_UNAVAILABLE => en: "Queues: unavailable (broker or management API unreachable)\n",
        ko: "큐: 확인 불가 (브로커 또는 관리 API에 연결할 수 없음)\n";
    /// `/stats` with no signal outcomes.
    NO_SIGNAL_OUTCOMES => en: "No signal outcomes recorded yet.",
        ko: "아직 기록된 신호 결과가 없습니다.";
    /// `/stats`: the heading of the signal outcomes.
    SIGNAL_STATS => en: "<b>Signals</b> (hit rate and mean return after 5 bars)\n",
        ko: "<b>신호</b> (5봉 뒤 적중률과 평균 수익률)\n";

    // Admin commands (`/halt`, `/resume`, `/broadcast`).

    /// An admin command from someone else.
    ADMINS_ONLY => en: "⛔ Only admins can use /{command}.",
        ko: "⛔ /{command} 는 관리자만 쓸 수 있습니다.";
    /// `/halt` done.
    HALTED => en: "⏸ Notifications halted for everyone. They are held in the queue, not lost; /resume releases them. System messages (operators' alerts, broadcasts) are not held unless notifier.halt_holds_system is set.",
        ko: "⏸ 전체 알림을 보류했습니다. 메시지는 큐에 보관되며 /resume 으로 재개합니다. 시스템 메시지(운영 경보, 공지)는 notifier.halt_holds_system 설정이 없으면 계속 전송됩니다.";
    /// `/resume` (admin) done.
    RESUMED_ALL => en: "▶ Notifications resumed for everyone; held messages are being delivered.",
        ko: "▶ 전체 알림을 재개했습니다. 보류된 메시지를 전송합니다.";
    /// `/broadcast <text>` started.
    BROADCAST_STARTED => en: "📣 Broadcast <code>{id}</code> to {total} user(s): handed to the notifier in batches. /broadcast status shows how far it is.",
        ko: "📣 공지 <code>{id}</code>: {total}명에게 순서대로 전달합니다. /broadcast status 로 진행 상황을 확인하세요.";
    /// `/broadcast <text>` when it cannot start (e.g. no broker).
    CANNOT_BROADCAST => en: "⚠️ Cannot broadcast: {why}",
        ko: "⚠️ 공지를 보낼 수 없습니다: {why}";
    /// `/broadcast status` with none yet.
    NO_BROADCASTS => en: "📣 No broadcasts yet.",
        ko: "📣 아직 공지가 없습니다.";
    /// `/broadcast status`: the heading.
    BROADCASTS => en: "📣 Broadcasts, newest first:",
        ko: "📣 공지 (최신순):";
    /// `/broadcast status`: one broadcast; `state` is [`BROADCAST_DONE`] or
    /// [`BROADCAST_RUNNING`].
    BROADCAST_LINE => en: "<code>{id}</code> {started}: {published}/{total} handed over, {delivered} delivered ({state})",
        ko: "<code>{id}</code> {started}: {published}/{total} 전달, {delivered} 수신 ({state})";
    /// [`BROADCAST_LINE`] once every batch is handed to the notifier.
    BROADCAST_DONE => en: "all handed over",
        ko: "전달 완료";
    /// [`BROADCAST_LINE`] while batches are still being handed over.
    BROADCAST_RUNNING => en: "handing over",
        ko: "전달 중";

    // Errors, help and buttons in general.

    /// A command refused for an invalid value.
    INVALID => en: "⚠️ Invalid <code>{field}</code>: {reason}",
        ko: "⚠️ 잘못된 <code>{field}</code>: {reason}";
    /// A command about something the user does not have (or is not theirs).
    NOT_FOUND => en: "⚠️ No {what} of yours. /alerts lists yours.",
        ko: "⚠️ 해당 항목이 없습니다 ({what}). /alerts 로 확인하세요.";
    /// A command that failed on the server's side.
    INTERNAL_ERROR => en: "😵 Something went wrong on our side. Please try again in a moment.",
        ko: "😵 서버에 문제가 생겼습니다. 잠시 후 다시 시도해 주세요.";
    /// `/<name>` that is no command.
    UNKNOWN_COMMAND => en: "🤔 There is no /{name} command. /help lists them all.",
        ko: "🤔 /{name} 명령은 없습니다. /help 에서 전체 목록을 보세요.";
    /// A command's form and example, after a mistake.
    USAGE => en: "Use: <code>{form}</code>\nExample: <code>{example}</code>",
        ko: "형식: <code>{form}</code>\n예: <code>{example}</code>";
    /// [`USAGE`] of a command without documentation.
    SEE_HELP => en: "See /help.",
        ko: "/help 를 참고하세요.";
    /// `/help`: the first line, before the commands.
    HELP_INTRO => en: "<b>tickwatch</b> — price alerts and market signals.\n",
        ko: "<b>tickwatch</b> — 가격 알림과 시장 신호.\n";
    /// `/help`: after the commands.
    HELP_FOOTER => en: "\nConditions: <code>&gt;</code> <code>&lt;</code> cross cross_up cross_down enter exit inside outside up down up% down% (or the full names, e.g. crossing_down). <code>close 1h</code> checks at each hourly close.\nType a name such as <code>삼성</code>, <code>samsung</code> or <code>btc</code> to find a symbol.",
        ko: "\n조건: <code>&gt;</code> <code>&lt;</code> cross cross_up cross_down enter exit inside outside up down up% down% (또는 crossing_down 같은 전체 이름). <code>close 1h</code> 는 1시간 봉 마감마다 확인합니다.\n<code>삼성</code>, <code>samsung</code>, <code>btc</code> 처럼 이름을 보내면 종목을 찾습니다.";
    /// The short answer to any button press (the outcome follows as a message).
    BUTTON_OK => en: "OK",
        ko: "확인";

    // The buttons under an alert's notification (the alerts role sends the first ones,
    // `tickwatch_alerts::template::alert_buttons`, with the same labels). Their answers are
    // short notices (plain text); the notification itself stays.
    /// The button pausing the alert that fired.
    NOTICE_PAUSE_BUTTON => en: "⏸ Pause",
        ko: "⏸ 일시정지";
    /// The button resuming it.
    NOTICE_RESUME_BUTTON => en: "▶ Resume",
        ko: "▶ 재개";
    /// The button deleting it.
    NOTICE_DELETE_BUTTON => en: "🗑 Delete",
        ko: "🗑 삭제";
    /// The button snoozing it for an hour.
    NOTICE_SNOOZE_BUTTON => en: "😴 1h",
        ko: "😴 1시간";
    /// Paused from its notification.
    NOTICE_PAUSED => en: "⏸ Alert #{id} paused",
        ko: "⏸ 알림 #{id} 일시정지됨";
    /// Resumed from its notification.
    NOTICE_RESUMED => en: "▶ Alert #{id} resumed",
        ko: "▶ 알림 #{id} 재개됨";
    /// Deleted from its notification.
    NOTICE_DELETED => en: "🗑 Alert #{id} deleted",
        ko: "🗑 알림 #{id} 삭제됨";
    /// Snoozed from its notification; `time` is when it resumes.
    NOTICE_SNOOZED => en: "😴 Alert #{id} snoozed until {time}",
        ko: "😴 알림 #{id} {time}까지 일시정지";
    /// A notification's button on an alert that is gone.
    NOTICE_GONE => en: "Alert #{id} no longer exists",
        ko: "알림 #{id}은(는) 더 이상 없습니다";

    // Paper trading (`/paper`).

    /// `/paper` with no strategy yet.
    PAPER_NONE => en: "🧪 No paper strategy yet. A paper strategy follows signals with virtual money, with fees, and tells you each simulated trade.
/paper new — set one up in four taps.",
        ko: "🧪 모의매매 전략이 아직 없습니다. 모의매매 전략은 가상 자금으로 신호를 따라 사고팔며 (수수료 포함) 매매마다 알려 드립니다.
/paper new — 네 번 눌러 만들기.";
    /// `/paper`: the title above one line per strategy.
    PAPER_LIST => en: "🧪 <b>Paper strategies</b>",
        ko: "🧪 <b>모의매매 전략</b>";
    /// `/paper`: one strategy's line.
    PAPER_LINE => en: "{state} <b>#{id}</b> {name} — equity {equity} ({ret}) · {open} open · {trades} trades",
        ko: "{state} <b>#{id}</b> {name} — 평가금액 {equity} ({ret}) · 보유 {open} · 매매 {trades}회";
    /// `/paper <id>`: a strategy's account and statistics.
    PAPER_SHOW => en: "🧪 <b>#{id} {name}</b> {state}
Follows: {kinds} · grade {grade}+ · {venues}
Start {start} → equity <b>{equity}</b> ({ret}), cash {cash}
Trades {trades} · win rate {win}% · avg {avg}% · profit factor {pf} · max drawdown {mdd}%",
        ko: "🧪 <b>#{id} {name}</b> {state}
따라가는 신호: {kinds} · {grade}등급 이상 · {venues}
시작 {start} → 평가금액 <b>{equity}</b> ({ret}), 현금 {cash}
매매 {trades}회 · 승률 {win}% · 평균 {avg}% · 손익비 {pf} · 최대 낙폭 {mdd}%";
    /// `/paper <id>`: the heading of its open positions.
    PAPER_POSITIONS => en: "Open positions:",
        ko: "보유 포지션:";
    /// `/paper <id>`: one open position.
    PAPER_POSITION => en: "• {symbol} {qty} @ {entry} → {mark} ({ret})",
        ko: "• {symbol} {qty} @ {entry} → {mark} ({ret})";
    /// `/paper <id>`: an entry waiting for the next open.
    PAPER_PENDING => en: "• {symbol}: buys at the next open ({kind})",
        ko: "• {symbol}: 다음 시가에 매수 ({kind})";
    /// A strategy that is running.
    PAPER_RUNNING => en: "▶ running",
        ko: "▶ 실행 중";
    /// A paused strategy.
    PAPER_PAUSED => en: "⏸ paused",
        ko: "⏸ 일시 중지";
    /// Any venue.
    PAPER_ANY_VENUE => en: "any market",
        ko: "모든 시장";
    /// Buttons.
    PAPER_NEW_BUTTON => en: "➕ New strategy",
        ko: "➕ 새 전략";
    PAPER_PAUSE_BUTTON => en: "⏸ Pause",
        ko: "⏸ 중지";
    PAPER_RESUME_BUTTON => en: "▶ Resume",
        ko: "▶ 재개";
    PAPER_DELETE_BUTTON => en: "🗑 Delete",
        ko: "🗑 삭제";
    PAPER_BACK_BUTTON => en: "⬅ All strategies",
        ko: "⬅ 전체 전략";
    /// `/paper new`, step 1.
    PAPER_NEW_KIND => en: "🧪 New paper strategy (1/4): which signal should it follow?",
        ko: "🧪 새 모의매매 전략 (1/4): 어떤 신호를 따라갈까요?";
    /// `/paper new`, step 2.
    PAPER_NEW_VENUE => en: "🧪 New paper strategy (2/4): <b>{kind}</b> on which market?",
        ko: "🧪 새 모의매매 전략 (2/4): <b>{kind}</b> — 어느 시장에서?";
    /// `/paper new`, step 3.
    PAPER_NEW_SIZE => en: "🧪 New paper strategy (3/4): <b>{kind}</b> on {venue}, starting with {balance}. How much per trade?",
        ko: "🧪 새 모의매매 전략 (3/4): <b>{kind}</b>, {venue}, 시작 자금 {balance}. 한 번에 얼마나 살까요?";
    /// `/paper new`, step 4.
    PAPER_NEW_EXIT => en: "🧪 New paper strategy (4/4): when should it sell?",
        ko: "🧪 새 모의매매 전략 (4/4): 언제 팔까요?";
    /// Size buttons: a share of equity.
    PAPER_SIZE_PCT => en: "{pct}% of equity",
        ko: "자산의 {pct}%";
    /// Exit buttons.
    PAPER_EXIT_TIGHT => en: "+10% / −5%",
        ko: "익절 10% / 손절 5%";
    PAPER_EXIT_WIDE => en: "+20% / −10%",
        ko: "익절 20% / 손절 10%";
    PAPER_EXIT_TRAIL => en: "Trailing stop 8%",
        ko: "트레일링 스탑 8%";
    PAPER_EXIT_BARS => en: "After 20 bars (or −10%)",
        ko: "20봉 후 (또는 손절 10%)";
    /// `/paper new` done.
    PAPER_CREATED => en: "✅ Paper strategy #{id} <b>{name}</b> created: it follows signals from now on and tells you each simulated trade (/settings paper silent|off to quiet it).
/paper {id} shows how it does.",
        ko: "✅ 모의매매 전략 #{id} <b>{name}</b> 생성: 지금부터 신호를 따라가며 모의 매매마다 알려 드립니다 (/settings paper silent|off 로 조용히).
/paper {id} 에서 성과를 볼 수 있습니다.";
    /// A strategy number that is not one of the user's.
    PAPER_NOT_FOUND => en: "⚠️ No {what} of yours. /paper lists yours.",
        ko: "⚠️ 해당 모의매매 전략이 없습니다 ({what}). /paper 에서 목록을 보세요.";
    /// Paused, resumed, deleted.
    PAPER_PAUSED_DONE => en: "⏸ Paper strategy #{id} paused: no new entries; open positions still sell by its rules.",
        ko: "⏸ 모의매매 전략 #{id} 중지: 새로 사지 않으며, 보유 포지션은 규칙대로 매도합니다.";
    PAPER_RESUMED_DONE => en: "▶ Paper strategy #{id} resumed: it follows signals from now on.",
        ko: "▶ 모의매매 전략 #{id} 재개: 지금부터 신호를 따라갑니다.";
    PAPER_DELETED => en: "🗑 Paper strategy #{id} deleted with its trades.",
        ko: "🗑 모의매매 전략 #{id}와 매매 기록을 삭제했습니다.";
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use super::*;

    const LANGUAGES: [Language; 2] = [Language::En, Language::Ko];

    /// The placeholders of a template, e.g. `{"id", "rule"}`.
    fn placeholders(template: &str) -> BTreeSet<&str> {
        let mut keys = BTreeSet::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            rest = &rest[open + 1..];
            if let Some(close) = rest.find('}')
                && is_key(&rest[..close])
            {
                keys.insert(&rest[..close]);
            }
        }
        keys
    }

    #[test]
    fn both_languages_use_the_same_placeholders() {
        for (name, text) in ALL {
            assert_eq!(
                placeholders(text.en),
                placeholders(text.ko),
                "{name}: en and ko differ"
            );
            assert!(
                !text.en.is_empty() && !text.ko.is_empty(),
                "{name} is empty"
            );
        }
    }

    #[test]
    fn fill_fills_every_placeholder() {
        for (name, text) in ALL {
            for lang in LANGUAGES {
                let template = text.get(lang);
                let keys = placeholders(template);
                let values: Vec<String> = keys.iter().map(|k| format!("<{k}>")).collect();
                let args: Vec<Arg> = keys
                    .iter()
                    .zip(&values)
                    .map(|(k, v)| (*k, v as &(dyn Display + Sync)))
                    .collect();
                let filled = text.fill(lang, &args);
                assert!(placeholders(&filled).is_empty(), "{name}: {filled}");
                for v in &values {
                    assert!(
                        filled.contains(v.as_str()),
                        "{name}: {v} missing in {filled}"
                    );
                }
                if keys.is_empty() {
                    assert_eq!(filled, template, "{name}");
                }
            }
        }
    }

    #[test]
    fn fill_inserts_values_as_given() {
        let filled = ALERT_PAUSED.fill(Language::En, &[("id", &12), ("rule", &"▶ {id} <b>")]);
        assert_eq!(
            filled,
            "⏸ Alert #12 paused; /resume 12 resumes it.\n▶ {id} <b>"
        );
        let filled = WELCOME_BACK.fill(Language::Ko, &[("name", &"kim"), ("rules", &3)]);
        assert_eq!(
            filled,
            "👋 kim님, 다시 오셨네요. 알림 3개: /alerts. /help 에서 모든 명령을 볼 수 있습니다."
        );
        assert_eq!(BUTTON_OK.fill(Language::Ko, &[]), "확인");
    }

    #[test]
    fn no_key_is_listed_twice() {
        let mut seen = HashSet::new();
        for (name, _) in ALL {
            assert!(seen.insert(*name), "{name} is listed twice");
        }
    }
}
