//! One rule compiled to its compact in-memory form (96 bytes, no strings), and its state
//! machine: given one evaluated price, does the rule fire, re-arm, or do nothing?
//!
//! This module *defines* the semantics. The indexed book only decides which rules to ask at
//! a price; the naive evaluator asks every rule at every price, and the two must agree (the
//! cross-check tests hold them to it). For that to work, [`CompiledRule::step`] changes
//! nothing unless the price crossed one of the rule's [`CompiledRule::levels`], the rule is
//! new, or a suppressed state condition became allowed again — exactly the three things the
//! index looks for. [`CompiledRule::prime`] (a price an earlier process evaluated, after a
//! restart) keeps the same promise: a rule it cannot settle at that price stays new.
//!
//! Notation: `q` is the previous evaluated price of the symbol, `p` the current one, `t` the
//! threshold, `[L, H]` the channel, `h` the hysteresis in percent, `c` the change in percent
//! over a moving rule's window.

use rust_decimal::Decimal;
use tickwatch_schema::calendar::bucket_start;
use tickwatch_schema::rule::{AlertRule, Condition, Trigger};
use tickwatch_schema::wire::Interval;

use crate::error::{Error, Result};
use crate::firing::Direction;

/// `last_fire` of a rule that has not fired.
pub(crate) const NEVER: i64 = i64::MIN;
/// `expires_at` of a rule without expiry.
pub(crate) const NO_EXPIRY: i64 = i64::MAX;
/// `template` of a rule without its own template.
pub(crate) const NO_TEMPLATE: u32 = u32::MAX;
/// `group` of a rule that is not a moving rule.
pub(crate) const NO_GROUP: u16 = u16::MAX;

/// A hysteresis band as the two factors that place a rule's re-arm levels: `t × below` is
/// the level `h` % under `t`, `t × above` the level `h` % over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Band {
    pub below: Decimal,
    pub above: Decimal,
}

impl Band {
    /// `pct` is validated to `[0, 50]` by the rule and the configuration.
    pub fn new(pct: Decimal) -> Band {
        let fraction = pct
            .checked_div(Decimal::ONE_HUNDRED)
            .unwrap_or(Decimal::ZERO);
        Band {
            below: Decimal::ONE - fraction,
            above: Decimal::ONE + fraction,
        }
    }
}

/// `x × factor`; an overflow (a threshold near 10^28) keeps `x`, which only makes the band
/// zero for an absurd price instead of panicking.
pub(crate) fn times(x: Decimal, factor: Decimal) -> Decimal {
    x.checked_mul(factor).unwrap_or(x)
}

/// A rule's index levels: at most four distinct values.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Levels {
    values: [Decimal; 4],
    len: usize,
}

impl Levels {
    fn new() -> Self {
        Levels {
            values: [Decimal::ZERO; 4],
            len: 0,
        }
    }

    fn push(&mut self, value: Decimal) {
        // With `h = 0` a re-arm level equals its threshold: one entry is enough.
        if self.len < 4 && !self.values[..self.len].contains(&value) {
            self.values[self.len] = value;
            self.len += 1;
        }
    }

    pub fn as_slice(&self) -> &[Decimal] {
        &self.values[..self.len]
    }
}

/// What one evaluation did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Outcome {
    Nothing,
    Fired(Fire),
    /// A state condition is true but the trigger mode holds it back until `eligible`; the
    /// indexed book asks the rule again then.
    Suppressed {
        eligible: i64,
    },
    /// The event is at or after the rule's expiry: drop the rule.
    Expired,
    /// Only from [`CompiledRule::prime`]: the rule cannot be settled at the primed price;
    /// ask it at the next price whatever it is, as a new rule.
    Deferred,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Fire {
    pub direction: Direction,
    /// The threshold to report: the threshold, the channel bound crossed, or the percentage.
    pub threshold: Decimal,
}

/// A rule in the book. Field order keeps it at 96 bytes.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub id: i64,
    pub user_id: i64,
    pub version: i64,
    /// Events at or after this time (epoch ms) never fire the rule.
    pub expires_at: i64,
    /// When the rule last fired; [`NEVER`] if it has not since it was loaded.
    pub last_fire: i64,
    /// The threshold, the channel's low, or the moving percentage.
    pub a: Decimal,
    /// The channel's high (zero for other conditions).
    pub b: Decimal,
    pub cooldown_s: u32,
    pub window_s: u32,
    /// Index into the engine's template slab, or [`NO_TEMPLATE`].
    pub template: u32,
    /// Index into the engine's interned hysteresis bands.
    pub band: u16,
    /// The moving group of the book, or [`NO_GROUP`].
    pub group: u16,
    pub condition: Condition,
    pub trigger: Trigger,
    pub interval: Option<Interval>,
    /// The slot holds a rule (dead slots wait for the index to drop their entries).
    pub live: bool,
    /// The rule has seen its first price.
    primed: bool,
    /// The rule may fire (cleared by a firing, set again by re-arming).
    armed: bool,
    /// The last firing went down (for re-arming on the right side).
    fired_down: bool,
    /// How many index entries the rule has (at most 4).
    entries: u8,
}

impl CompiledRule {
    /// Compiles a validated rule. `band` and `template` are the engine's interned indexes.
    pub fn compile(rule: &AlertRule, band: u16, template: u32) -> Result<CompiledRule> {
        let spec = &rule.spec;
        let (a, b) = match spec.condition {
            c if c.is_expression() => (Some(Decimal::ZERO), Some(Decimal::ZERO)),
            c if c.is_channel() => (spec.low, spec.high),
            c if c.is_moving_pct() => (spec.pct, Some(Decimal::ZERO)),
            _ => (spec.threshold, Some(Decimal::ZERO)),
        };
        let missing = |what: &str| Error::Capacity {
            rule_id: rule.id,
            reason: format!("`{}` needs {what}", spec.condition),
        };
        let a = a.ok_or_else(|| missing("its threshold"))?;
        let b = b.ok_or_else(|| missing("its high bound"))?;
        let seconds = |value: u64, key: &str| {
            u32::try_from(value).map_err(|_| Error::Capacity {
                rule_id: rule.id,
                reason: format!("`{key}` {value} does not fit the book"),
            })
        };
        Ok(CompiledRule {
            id: rule.id,
            user_id: rule.user_id,
            version: rule.version,
            expires_at: spec.expires_at.unwrap_or(NO_EXPIRY),
            // The database's record of the last firing: the trigger mode's gate counts from
            // it, so a restart does not reopen a cooldown or a bar.
            last_fire: rule.last_fired_at.unwrap_or(NEVER),
            a,
            b,
            cooldown_s: seconds(spec.cooldown_s, "cooldown_s")?,
            window_s: seconds(spec.window_s.unwrap_or(0), "window_s")?,
            template,
            band,
            group: NO_GROUP,
            condition: spec.condition,
            trigger: spec.trigger,
            // An expression is evaluated at its interval's close: the rule's, else the
            // shortest it reads.
            interval: spec.interval.or_else(|| {
                spec.parsed_expression()
                    .ok()
                    .flatten()
                    .and_then(|e| e.interval())
            }),
            live: true,
            primed: false,
            armed: false,
            fired_down: false,
            entries: 0,
        })
    }

    pub fn is_live(&self) -> bool {
        self.live
    }

    pub fn is_moving(&self) -> bool {
        self.condition.is_moving()
    }

    /// State conditions are true or false at one price; the others are events between two.
    pub fn is_state(&self) -> bool {
        self.condition.is_state()
    }

    /// Evaluated only at its interval's candle close, outside the price index.
    pub fn at_bar_close(&self) -> bool {
        self.trigger == Trigger::OncePerBarClose || self.condition.is_expression()
    }

    /// An expression rule's step at a bar close, `truth` being whether all its clauses hold.
    /// It fires when true, armed and allowed by its trigger mode, and re-arms at a close
    /// where it is false. At its first evaluation after a load (a restart, a handover, an
    /// edit) it starts armed unless it is true and `fired_in_run` — its restored last
    /// firing is at or after the previous close, or the clauses already held there — so a
    /// restart repeats no firing of a state that stayed true, and misses no crossing.
    pub fn step_expression(
        &mut self,
        truth: bool,
        fired_in_run: bool,
        ts: i64,
        offset_ms: i64,
    ) -> Outcome {
        if ts >= self.expires_at {
            return Outcome::Expired;
        }
        if !self.primed {
            self.primed = true;
            self.armed = !(truth && fired_in_run);
        }
        if !self.armed {
            if !truth {
                self.armed = true;
            }
            return Outcome::Nothing;
        }
        if !truth {
            return Outcome::Nothing;
        }
        match self.gate(ts, offset_ms) {
            Ok(()) => {
                self.record_fire(ts, Direction::Up);
                Outcome::Fired(Fire {
                    direction: Direction::Up,
                    threshold: Decimal::ZERO,
                })
            }
            Err(_) => Outcome::Nothing,
        }
    }

    fn fired_down(&self) -> bool {
        self.fired_down
    }

    pub fn entries(&self) -> usize {
        usize::from(self.entries)
    }

    pub fn set_entries(&mut self, entries: usize) {
        self.entries = u8::try_from(entries.min(4)).unwrap_or(4);
    }

    /// Every value at which the rule's state can change: its thresholds and re-arm levels,
    /// in price space (or, for moving rules, in change-percent space). A price move that
    /// crosses none of them cannot make the rule fire or re-arm.
    pub fn levels(&self, band: &Band) -> Levels {
        let (a, b) = (self.a, self.b);
        let mut levels = Levels::new();
        match self.condition {
            Condition::GreaterThan
            | Condition::CrossingUp
            | Condition::MovingUpPct
            | Condition::MovingUp => {
                levels.push(a);
                levels.push(times(a, band.below));
            }
            Condition::LessThan | Condition::CrossingDown => {
                levels.push(a);
                levels.push(times(a, band.above));
            }
            Condition::Crossing => {
                levels.push(a);
                levels.push(times(a, band.below));
                levels.push(times(a, band.above));
            }
            Condition::EnteringChannel | Condition::InsideChannel => {
                levels.push(a);
                levels.push(b);
                levels.push(times(a, band.below));
                levels.push(times(b, band.above));
            }
            Condition::ExitingChannel | Condition::OutsideChannel => {
                levels.push(a);
                levels.push(b);
                levels.push(times(b, band.below));
                levels.push(times(a, band.above));
            }
            Condition::MovingDownPct | Condition::MovingDown => {
                levels.push(-a);
                levels.push(-times(a, band.below));
            }
            // Evaluated at bar close, never through the price index.
            Condition::Expression => {}
        }
        levels
    }

    /// The levels at which an armed rule can fire: the threshold, or the channel's bounds.
    pub fn fire_levels(&self) -> Levels {
        let mut levels = Levels::new();
        match self.condition {
            c if c.is_channel() => {
                levels.push(self.a);
                levels.push(self.b);
            }
            Condition::MovingDownPct | Condition::MovingDown => levels.push(-self.a),
            _ => levels.push(self.a),
        }
        levels
    }

    /// The levels at which a disarmed rule can re-arm: [`levels`](Self::levels) less the
    /// [`fire_levels`](Self::fire_levels).
    pub fn rearm_levels(&self, band: &Band) -> Levels {
        let fire = self.fire_levels();
        let mut levels = Levels::new();
        for &level in self.levels(band).as_slice() {
            if !fire.as_slice().contains(&level) {
                levels.push(level);
            }
        }
        levels
    }

    /// Whether the rule is waiting to re-arm, so the book must watch its re-arm levels
    /// (moving rules keep all their levels in their group).
    pub fn needs_rearm_entries(&self) -> bool {
        self.live && self.primed && !self.armed && !self.is_moving() && !self.at_bar_close()
    }

    /// Whether the rule has seen a price.
    pub fn is_primed(&self) -> bool {
        self.primed
    }

    /// Evaluates the rule at price `p` (time `ts`), the symbol's previous evaluated price
    /// being `q`; `change` is the change over the window for a moving rule.
    ///
    /// 1. An event at or after `expires_at` expires the rule.
    /// 2. The first evaluation primes the rule: a crossing or channel rule only records that
    ///    it has seen a price (the first price is no cross); a state rule fires if true.
    /// 3. A disarmed rule re-arms when `p` is back across its threshold by the band.
    /// 4. An armed rule fires when its condition holds (a crossing event from `q` to `p`, or
    ///    a state at `p`) and the trigger mode allows it; firing disarms it, and it re-arms
    ///    at once if `p` itself is already beyond the band (a jump past the band is a real
    ///    crossing, not a wobble). A state rule held back by the trigger mode is asked again
    ///    when it becomes allowed; a held-back crossing is dropped and the rule stays armed.
    pub fn step(
        &mut self,
        q: Option<Decimal>,
        p: Decimal,
        ts: i64,
        change: Option<Decimal>,
        band: &Band,
        offset_ms: i64,
    ) -> Outcome {
        if ts >= self.expires_at {
            return Outcome::Expired;
        }
        if !self.primed {
            self.primed = true;
            self.armed = true;
            if !self.is_state() {
                return Outcome::Nothing;
            }
            let event = self.state_event(p, change);
            return self.try_fire(event, p, ts, change, band, offset_ms);
        }
        if !self.armed {
            if !self.rearm_due(p, change, band) {
                return Outcome::Nothing;
            }
            self.armed = true;
        }
        let event = if self.is_state() {
            self.state_event(p, change)
        } else {
            q.and_then(|q| self.cross_event(q, p))
        };
        self.try_fire(event, p, ts, change, band, offset_ms)
    }

    /// Takes `p` at `ts` as a price that an earlier process already evaluated (a restart's
    /// [`prime`](crate::AlertEngine::prime)): the rule's state moves as [`step`](Self::step)
    /// would move it, but nothing fires — that process reported what there was to report.
    ///
    /// A new rule becomes primed and armed, so the next price is compared with `p`. The
    /// re-arm state (hysteresis) is not stored; where the last firing `F` (restored from the
    /// database) and `p` determine it, it is restored too:
    /// - `F = ts`: the rule fired at this price. Disarmed as that firing left it (re-armed
    ///   if `p` is already beyond the band).
    /// - `F < ts`, a state condition true at `p` that the trigger mode allowed at `ts`: had
    ///   the rule been armed, it would have fired at `p`; it did not, so it was disarmed.
    /// - `F > ts`: the rule fired after this price (the snapshot lags the database). It is
    ///   disarmed — the move from `p` spans a firing already reported — and asked again at
    ///   the next price as a new rule ([`Outcome::Deferred`]), where it re-arms if that
    ///   price is beyond the band.
    ///
    /// Otherwise it is armed, as a new rule. An armed state condition true at `p` is
    /// [`Outcome::Suppressed`] until its trigger mode allows it (at once if it already does),
    /// so the next price asks it: a state condition fires at the first real price at which
    /// it is true and allowed, never on the prime.
    pub fn prime(
        &mut self,
        p: Decimal,
        ts: i64,
        change: Option<Decimal>,
        band: &Band,
        offset_ms: i64,
    ) -> Outcome {
        if ts >= self.expires_at {
            return Outcome::Expired;
        }
        if self.primed {
            // Seen a price already (a prime newer than it): re-arming still happens.
            if !self.armed && self.rearm_due(p, change, band) {
                self.armed = true;
            }
            return self.hold_if_true(p, ts, change, offset_ms);
        }
        self.primed = true;
        self.armed = true;
        if self.last_fire != NEVER {
            match self.last_fire.cmp(&ts) {
                std::cmp::Ordering::Greater => {
                    self.disarm(p);
                    return Outcome::Deferred;
                }
                std::cmp::Ordering::Equal => {
                    self.disarm(p);
                    if self.rearm_due(p, change, band) {
                        self.armed = true;
                    }
                }
                std::cmp::Ordering::Less => {
                    if self.is_state()
                        && self.state_event(p, change).is_some()
                        && self.gate(ts, offset_ms).is_ok()
                    {
                        self.disarm(p);
                    }
                }
            }
        }
        self.hold_if_true(p, ts, change, offset_ms)
    }

    /// An armed state condition true at `p` waits for the next price (or for its trigger
    /// mode to allow it): the indexed book asks a rule only when something may change, and
    /// this one would fire at the next price even if no level is crossed.
    fn hold_if_true(
        &self,
        p: Decimal,
        ts: i64,
        change: Option<Decimal>,
        offset_ms: i64,
    ) -> Outcome {
        if self.is_state() && self.armed && self.state_event(p, change).is_some() {
            Outcome::Suppressed {
                eligible: self.gate(ts, offset_ms).err().unwrap_or(ts),
            }
        } else {
            Outcome::Nothing
        }
    }

    /// Disarms the rule as a firing would have, `p` being the price near it. The direction
    /// only matters to `exiting_channel` and `outside_channel` (they re-arm across the bound
    /// they left): a two-way rule is taken to have fired towards the side of its threshold —
    /// or the bound of its channel — that `p` is nearest.
    fn disarm(&mut self, p: Decimal) {
        let down = match self.condition {
            Condition::LessThan
            | Condition::CrossingDown
            | Condition::MovingDownPct
            | Condition::MovingDown => true,
            Condition::GreaterThan
            | Condition::CrossingUp
            | Condition::MovingUpPct
            | Condition::MovingUp => false,
            Condition::Crossing => p < self.a,
            Condition::EnteringChannel
            | Condition::ExitingChannel
            | Condition::InsideChannel
            | Condition::OutsideChannel => self.nearer_low(p),
            Condition::Expression => false,
        };
        self.armed = false;
        self.fired_down = down;
    }

    /// Whether `p` is nearer the channel's low than its high.
    fn nearer_low(&self, p: Decimal) -> bool {
        match (p.checked_add(p), self.a.checked_add(self.b)) {
            (Some(twice), Some(sum)) => twice < sum,
            _ => p < self.a,
        }
    }

    fn try_fire(
        &mut self,
        event: Option<Fire>,
        p: Decimal,
        ts: i64,
        change: Option<Decimal>,
        band: &Band,
        offset_ms: i64,
    ) -> Outcome {
        let Some(fire) = event else {
            return Outcome::Nothing;
        };
        match self.gate(ts, offset_ms) {
            Ok(()) => {
                self.record_fire(ts, fire.direction);
                if self.rearm_due(p, change, band) {
                    self.armed = true;
                }
                Outcome::Fired(fire)
            }
            Err(eligible) if self.is_state() => Outcome::Suppressed { eligible },
            Err(_) => Outcome::Nothing,
        }
    }

    fn record_fire(&mut self, ts: i64, direction: Direction) {
        self.last_fire = ts;
        self.armed = false;
        match direction {
            Direction::Up => self.fired_down = false,
            Direction::Down => self.fired_down = true,
        }
    }

    /// Whether the trigger mode lets the rule fire at `ts`; if not, when it will. Bars are
    /// the candles' buckets (the venue's day starts `offset_ms` east of UTC; weeks start on
    /// Monday).
    pub fn gate(&self, ts: i64, offset_ms: i64) -> Result<(), i64> {
        if self.last_fire == NEVER {
            return Ok(());
        }
        match self.trigger {
            // A bar-close rule is asked once per closed bar.
            Trigger::Once | Trigger::OncePerBarClose => Ok(()),
            Trigger::OncePerBar => {
                let Some(interval) = self.interval else {
                    return Ok(());
                };
                let fired_bar = bucket_start(self.last_fire, interval, offset_ms);
                if bucket_start(ts, interval, offset_ms) != fired_bar {
                    Ok(())
                } else {
                    Err(fired_bar.saturating_add(interval.as_ms()))
                }
            }
            Trigger::EveryTime => {
                let until = self
                    .last_fire
                    .saturating_add(i64::from(self.cooldown_s).saturating_mul(1_000));
                if ts >= until { Ok(()) } else { Err(until) }
            }
        }
    }

    /// State conditions at one price.
    fn state_event(&self, p: Decimal, change: Option<Decimal>) -> Option<Fire> {
        let a = self.a;
        let fire = |direction| {
            Some(Fire {
                direction,
                threshold: a,
            })
        };
        let b = self.b;
        let at = |direction, threshold| {
            Some(Fire {
                direction,
                threshold,
            })
        };
        match self.condition {
            Condition::GreaterThan if p > a => fire(Direction::Up),
            Condition::LessThan if p < a => fire(Direction::Down),
            Condition::MovingUpPct | Condition::MovingUp if change.is_some_and(|c| c >= a) => {
                fire(Direction::Up)
            }
            Condition::MovingDownPct | Condition::MovingDown if change.is_some_and(|c| c <= -a) => {
                fire(Direction::Down)
            }
            // Inside: reported at the bound nearer the price (the way it most likely came in).
            Condition::InsideChannel if a <= p && p <= b => {
                if self.nearer_low(p) {
                    at(Direction::Up, a)
                } else {
                    at(Direction::Down, b)
                }
            }
            Condition::OutsideChannel if p < a => at(Direction::Down, a),
            Condition::OutsideChannel if p > b => at(Direction::Up, b),
            _ => None,
        }
    }

    /// Crossing and channel events on the move from `q` to `p`. Touching a level counts as
    /// reaching it: `crossing_up` is `q < t ≤ p`. The channel is `[L, H]` inclusive, and a
    /// move is a path: a gap from under `L` to over `H` entered the channel (at `L`) and
    /// exited it (at `H`).
    fn cross_event(&self, q: Decimal, p: Decimal) -> Option<Fire> {
        let (a, b) = (self.a, self.b);
        let up = |threshold| {
            Some(Fire {
                direction: Direction::Up,
                threshold,
            })
        };
        let down = |threshold| {
            Some(Fire {
                direction: Direction::Down,
                threshold,
            })
        };
        match self.condition {
            Condition::CrossingUp if q < a && a <= p => up(a),
            Condition::CrossingDown if q > a && a >= p => down(a),
            Condition::Crossing if q < a && a <= p => up(a),
            Condition::Crossing if q > a && a >= p => down(a),
            Condition::EnteringChannel if q < a && a <= p => up(a),
            Condition::EnteringChannel if q > b && b >= p => down(b),
            Condition::ExitingChannel if q <= b && b < p => up(b),
            Condition::ExitingChannel if q >= a && a > p => down(a),
            _ => None,
        }
    }

    /// Whether a disarmed rule is back across its threshold by the band at `p`: strictly on
    /// the re-arming side and at least `h` % away from the threshold.
    fn rearm_due(&self, p: Decimal, change: Option<Decimal>, band: &Band) -> bool {
        let (a, b) = (self.a, self.b);
        let under = |level: Decimal| p < level && p <= times(level, band.below);
        let over = |level: Decimal| p > level && p >= times(level, band.above);
        match self.condition {
            Condition::GreaterThan => p <= times(a, band.below),
            Condition::LessThan => p >= times(a, band.above),
            Condition::CrossingUp => under(a),
            Condition::CrossingDown => over(a),
            Condition::Crossing => under(a) || over(a),
            Condition::EnteringChannel | Condition::InsideChannel => under(a) || over(b),
            Condition::ExitingChannel | Condition::OutsideChannel if self.fired_down() => {
                p >= times(a, band.above)
            }
            Condition::ExitingChannel | Condition::OutsideChannel => p <= times(b, band.below),
            Condition::MovingUpPct | Condition::MovingUp => {
                change.is_some_and(|c| c < a && c <= times(a, band.below))
            }
            Condition::MovingDownPct | Condition::MovingDown => {
                change.is_some_and(|c| c > -a && c >= -times(a, band.below))
            }
            Condition::Expression => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compiled_rule_stays_small() {
        // The memory goal (≤ 200 bytes per rule with the index) starts here.
        assert!(
            std::mem::size_of::<CompiledRule>() <= 96,
            "{}",
            std::mem::size_of::<CompiledRule>()
        );
    }

    #[test]
    fn band_factors() {
        let band = Band::new(Decimal::new(1, 1));
        assert_eq!(band.below, Decimal::new(999, 3));
        assert_eq!(band.above, Decimal::new(1001, 3));
        let none = Band::new(Decimal::ZERO);
        assert_eq!(none.below, Decimal::ONE);
        assert_eq!(none.above, Decimal::ONE);
    }
}
