//! What the composition root reports, as typed events: readiness and the producers'
//! counters. Metric names are written here only.

/// 1 while every readiness check passes.
pub const READY: &str = "tw_ready";
/// 1 while a producer's source is connected, by source.
pub const PRODUCER_CONNECTED: &str = "tw_producer_connected";
/// Messages a producer holds while the broker is unavailable, by source.
pub const PRODUCER_BUFFERED: &str = "tw_producer_buffered";
/// A producer's counters (messages, reconnects, malformed frames, …), by source and event.
pub const PRODUCER_EVENTS: &str = "tw_producer_events_total";

/// The outcome of the readiness checks.
#[derive(Debug)]
pub struct ReadinessChecked {
    pub ready: bool,
}

impl ReadinessChecked {
    pub fn emit(&self) {
        metrics::gauge!(READY).set(if self.ready { 1.0 } else { 0.0 });
    }
}

/// One of a producer's counters, copied into Prometheus.
#[derive(Debug)]
pub struct ProducerCounter<'a> {
    pub source: &'a str,
    pub event: &'static str,
    pub value: u64,
}

impl ProducerCounter<'_> {
    pub fn emit(&self) {
        let source = self.source.to_string();
        match self.event {
            "connected" => {
                metrics::gauge!(PRODUCER_CONNECTED, "source" => source).set(self.value as f64)
            }
            "buffered" => {
                metrics::gauge!(PRODUCER_BUFFERED, "source" => source).set(self.value as f64)
            }
            event => metrics::counter!(PRODUCER_EVENTS, "source" => source, "event" => event)
                .absolute(self.value),
        }
    }
}
