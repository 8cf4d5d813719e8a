//! Telegram's sending limits, kept per chat: each send reserves a time slot that respects
//! the chat's own limits and the bot's overall rate, then waits for it. A chat that must wait
//! (its last message was a second ago, or Telegram answered 429) waits alone: the slots of
//! other chats are not held up behind it.
//!
//! Limits (Telegram's bot FAQ): about 30 messages per second overall, one per second in a
//! chat, 20 per minute in a group. The overall limit is kept by spacing reservations at
//! least `(1 s + margin) / 30` apart, so any one-second window holds at most 30 sends; the
//! margin absorbs the jitter between leaving here and arriving at Telegram.
//!
//! The limits hold per process: several notifier instances sharing one bot must each be
//! given a share of `global_per_second`.
//!
//! Why not `governor` (which the API's per-key limit uses): a send here must satisfy
//! three limits at once — the bot's, its chat's and, for a group, a per-minute window —
//! and take a slot in all of them or in none, so that a chat waiting out its own second
//! (or a 429's `retry_after`, which moves only that chat's slots) never holds a global slot
//! other chats could use. governor's limiters answer one quota each, and taking a cell
//! from the global one before the chat's is known to be free would waste it. The slots are
//! also checked again against the actual departures when a task wakes late.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The limits to keep; the defaults are Telegram's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// Messages per second, all chats together.
    pub global_per_second: u32,
    /// Least time between two messages to one chat, in milliseconds.
    pub chat_interval_ms: u64,
    /// Messages per minute to one group (a chat with a negative id).
    pub group_per_minute: u32,
    /// Added to every interval so arrival jitter never breaks a limit, in milliseconds.
    pub margin_ms: u64,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            global_per_second: 30,
            chat_interval_ms: 1000,
            group_per_minute: 20,
            margin_ms: 30,
        }
    }
}

impl RateLimits {
    /// What is wrong with these limits, if anything.
    pub fn problem(&self) -> Option<String> {
        if self.global_per_second == 0 {
            return Some("limits.global_per_second must be at least 1".into());
        }
        if self.group_per_minute == 0 {
            return Some("limits.group_per_minute must be at least 1".into());
        }
        if self.margin_ms > 1000 {
            return Some("limits.margin_ms must be at most 1000".into());
        }
        None
    }

    fn global_spacing(&self) -> Duration {
        (Duration::from_secs(1) + Duration::from_millis(self.margin_ms))
            / self.global_per_second.max(1)
    }

    fn chat_interval(&self) -> Duration {
        Duration::from_millis(self.chat_interval_ms + self.margin_ms)
    }

    fn group_window(&self) -> Duration {
        Duration::from_secs(60) + Duration::from_millis(self.margin_ms)
    }
}

#[derive(Debug, Default)]
struct ChatSlots {
    /// The last reserved slot.
    last: Option<Instant>,
    /// When the last message actually left (a late wake-up makes it later than its slot).
    last_sent: Option<Instant>,
    /// Groups only: actual departures of the last minute, oldest first.
    recent_sent: VecDeque<Instant>,
    /// Set by a 429: nothing to this chat before then.
    not_before: Option<Instant>,
    /// Groups only: the slots of the last minute, oldest first.
    recent: VecDeque<Instant>,
}

#[derive(Debug, Default)]
struct State {
    /// Reserved global slots, sorted; older than a spacing before now are dropped.
    global: VecDeque<Instant>,
    /// Actual departures of the last second (plus margin), oldest first.
    sent: VecDeque<Instant>,
    chats: HashMap<i64, ChatSlots>,
    reservations: u64,
}

/// Hands out send slots; shared by every concurrent send of one bot.
#[derive(Debug)]
pub struct Limiter {
    limits: RateLimits,
    state: Mutex<State>,
}

impl Limiter {
    pub fn new(limits: RateLimits) -> Self {
        Limiter {
            limits,
            state: Mutex::new(State::default()),
        }
    }

    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent between statements; a panic elsewhere cannot break it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a message to `chat_id` may be sent, and counts it as sent then.
    ///
    /// The reserved slot is checked again against the actual departures when the task
    /// wakes: a wake-up delayed by a busy runtime must not let a later slot that woke on
    /// time fall within the same second.
    pub async fn acquire(&self, chat_id: i64) {
        let mut at = self.reserve(chat_id, Instant::now());
        loop {
            tokio::time::sleep_until(at.into()).await;
            match self.depart(chat_id, Instant::now()) {
                Ok(()) => return,
                Err(later) => at = later,
            }
        }
    }

    /// Records a departure at `now` if the actual departures allow it; otherwise the time
    /// to try again.
    fn depart(&self, chat_id: i64, now: Instant) -> Result<(), Instant> {
        let limits = &self.limits;
        let window = Duration::from_secs(1) + Duration::from_millis(limits.margin_ms);
        let per_second = limits.global_per_second.max(1) as usize;
        let mut state = self.lock();
        while state.sent.front().is_some_and(|&t| t + window <= now) {
            state.sent.pop_front();
        }
        if state.sent.len() >= per_second {
            return Err(state.sent[state.sent.len() - per_second] + window);
        }
        let chat = state.chats.entry(chat_id).or_default();
        // A 429 that came after this slot was reserved holds it too: Telegram's wait
        // applies to the chat, not to the one request it answered.
        if let Some(not_before) = chat.not_before
            && now < not_before
        {
            return Err(not_before);
        }
        if let Some(last) = chat.last_sent
            && now < last + limits.chat_interval()
        {
            return Err(last + limits.chat_interval());
        }
        if chat_id < 0 {
            let group_window = limits.group_window();
            while chat
                .recent_sent
                .front()
                .is_some_and(|&t| t + group_window <= now)
            {
                chat.recent_sent.pop_front();
            }
            let per_minute = limits.group_per_minute.max(1) as usize;
            if chat.recent_sent.len() >= per_minute {
                return Err(chat.recent_sent[chat.recent_sent.len() - per_minute] + group_window);
            }
            chat.recent_sent.push_back(now);
        }
        chat.last_sent = Some(now);
        state.sent.push_back(now);
        Ok(())
    }

    /// Reserves the earliest slot for `chat_id` at or after `now` (pure bookkeeping, no
    /// waiting).
    pub fn reserve(&self, chat_id: i64, now: Instant) -> Instant {
        let limits = &self.limits;
        let spacing = limits.global_spacing();
        let mut state = self.lock();
        state.reservations += 1;
        if state.reservations.is_multiple_of(4096) {
            forget_idle_chats(&mut state, now, limits);
        }
        while state.global.front().is_some_and(|&s| s + spacing <= now) {
            state.global.pop_front();
        }

        let chat = state.chats.entry(chat_id).or_default();
        let mut earliest = now;
        if let Some(last) = chat.last {
            earliest = earliest.max(last + limits.chat_interval());
        }
        if let Some(not_before) = chat.not_before {
            earliest = earliest.max(not_before);
        }
        if chat_id < 0 {
            let window = limits.group_window();
            while chat.recent.front().is_some_and(|&s| s + window <= now) {
                chat.recent.pop_front();
            }
            let per_minute = limits.group_per_minute.max(1) as usize;
            if chat.recent.len() >= per_minute {
                let oldest_counted = chat.recent[chat.recent.len() - per_minute];
                earliest = earliest.max(oldest_counted + window);
            }
        }

        // The first gap of `spacing` on both sides among the reserved global slots.
        let mut slot = earliest;
        for &reserved in &state.global {
            if reserved + spacing <= slot {
                continue;
            }
            if reserved >= slot + spacing {
                break;
            }
            slot = reserved + spacing;
        }
        let at = state.global.partition_point(|&s| s <= slot);
        state.global.insert(at, slot);

        let chat = state.chats.entry(chat_id).or_default();
        chat.last = Some(slot);
        if chat_id < 0 {
            chat.recent.push_back(slot);
        }
        slot
    }

    /// Holds `chat_id` until `until` (Telegram answered 429 with `retry_after`).
    pub fn defer(&self, chat_id: i64, until: Instant) {
        let mut state = self.lock();
        let chat = state.chats.entry(chat_id).or_default();
        chat.not_before = Some(chat.not_before.map_or(until, |t| t.max(until)));
    }
}

fn forget_idle_chats(state: &mut State, now: Instant, limits: &RateLimits) {
    let horizon = limits.group_window();
    state.chats.retain(|_, chat| {
        let recent = chat
            .last
            .max(chat.last_sent)
            .is_some_and(|t| t + horizon > now);
        let held = chat.not_before.is_some_and(|t| t > now);
        recent || held
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(d: Duration) -> u128 {
        d.as_millis()
    }

    #[test]
    fn one_chat_is_spaced_by_its_interval() {
        let limiter = Limiter::new(RateLimits::default());
        let now = Instant::now();
        let a = limiter.reserve(1, now);
        let b = limiter.reserve(1, now);
        let c = limiter.reserve(1, now);
        assert_eq!(a, now);
        assert_eq!(ms(b - a), 1030);
        assert_eq!(ms(c - b), 1030);
    }

    #[test]
    fn other_chats_fill_the_gaps() {
        let limiter = Limiter::new(RateLimits::default());
        let now = Instant::now();
        limiter.reserve(1, now);
        let waiting = limiter.reserve(1, now);
        // Chat 2 does not queue behind chat 1's second message.
        let other = limiter.reserve(2, now);
        assert!(other < waiting);
        assert_eq!(ms(other - now), 34);
    }

    #[test]
    fn global_rate_never_exceeds_the_limit() {
        let limiter = Limiter::new(RateLimits::default());
        let now = Instant::now();
        let mut slots: Vec<Instant> = (0..300).map(|i| limiter.reserve(i, now)).collect();
        slots.sort();
        for window in slots.windows(31) {
            assert!(window[30] - window[0] >= Duration::from_secs(1));
        }
        let total = *slots.last().expect("slots") - now;
        // 299 gaps of 34.33 ms: about 10.3 s.
        assert!(total < Duration::from_millis(10_400), "{total:?}");
    }

    #[test]
    fn groups_get_twenty_a_minute() {
        let limiter = Limiter::new(RateLimits::default());
        let now = Instant::now();
        let slots: Vec<Instant> = (0..21).map(|_| limiter.reserve(-5, now)).collect();
        assert!(slots[20] - slots[0] >= Duration::from_secs(60));
        assert!(slots[19] - slots[0] < Duration::from_secs(60));
    }

    #[test]
    fn a_late_departure_pushes_the_next_one() {
        let limiter = Limiter::new(RateLimits::default());
        let now = Instant::now();
        let first = limiter.reserve(1, now);
        let second = limiter.reserve(1, now);
        // The first woke 100 ms late; the second, on time, must wait for the interval.
        let late = first + Duration::from_millis(100);
        assert_eq!(limiter.depart(1, late), Ok(()));
        assert_eq!(
            limiter.depart(1, second),
            Err(late + Duration::from_millis(1030))
        );
        // Thirty departures in a second hold back the thirty-first, whatever the slots.
        for chat in 100..129 {
            assert_eq!(limiter.depart(chat, late), Ok(()));
        }
        assert_eq!(
            limiter.depart(200, late),
            Err(late + Duration::from_millis(1030))
        );
    }

    #[test]
    fn defer_holds_only_that_chat() {
        let limiter = Limiter::new(RateLimits::default());
        let now = Instant::now();
        limiter.defer(7, now + Duration::from_secs(5));
        assert_eq!(limiter.reserve(7, now), now + Duration::from_secs(5));
        assert!(limiter.reserve(8, now) < now + Duration::from_millis(100));
    }
}
