//! What the gateway reports, as typed events: each one counts itself (and logs what the
//! caller does not), and the metric names are written here only.

use std::time::Duration;

/// Control messages (rule and subscription changes, halts) announced to the roles.
pub const CONTROLS_PUBLISHED: &str = "tw_gateway_controls_published_total";
/// Changes stored but not announced (the roles pick them up on their next reload).
pub const CONTROL_PUBLISH_FAILURES: &str = "tw_gateway_control_publish_failures_total";
/// Stream clients closed for falling too far behind.
pub const STREAM_SLOW_CLOSES: &str = "tw_api_stream_slow_closes_total";
/// API requests, by method, route and status.
pub const API_REQUESTS: &str = "tw_api_requests_total";
/// API request latency, by method and route.
pub const API_REQUEST_SECONDS: &str = "tw_api_request_seconds";
/// Alertmanager alerts sent on to the admin chats.
pub const OPERATOR_ALERTS: &str = "tw_gateway_operator_alerts_total";

/// How announcing a control message ended.
#[derive(Debug)]
pub enum ControlAnnounced<'a, C: std::fmt::Debug> {
    Confirmed,
    Failed { control: &'a C, error: String },
    TimedOut { control: &'a C, after: Duration },
}

impl<C: std::fmt::Debug> ControlAnnounced<'_, C> {
    pub fn emit(&self) {
        match self {
            ControlAnnounced::Confirmed => {
                metrics::counter!(CONTROLS_PUBLISHED).increment(1);
            }
            ControlAnnounced::Failed { control, error } => {
                metrics::counter!(CONTROL_PUBLISH_FAILURES).increment(1);
                tracing::warn!(%error, ?control, "change stored but not announced; alerts instances pick it up on their next reload");
            }
            ControlAnnounced::TimedOut { control, after } => {
                metrics::counter!(CONTROL_PUBLISH_FAILURES).increment(1);
                tracing::warn!(timeout = ?after, ?control, "no broker confirm in time; the publisher keeps trying");
            }
        }
    }
}

/// A stream client fell too far behind and is closed.
#[derive(Debug)]
pub struct StreamClientTooSlow {
    pub missed: u64,
}

impl StreamClientTooSlow {
    pub fn emit(&self) {
        tracing::info!(missed = self.missed, "stream client too slow; closed");
        metrics::counter!(STREAM_SLOW_CLOSES).increment(1);
    }
}

/// One API request answered.
#[derive(Debug)]
pub struct ApiRequest {
    pub method: String,
    pub route: String,
    pub status: u16,
    pub took: Duration,
}

impl ApiRequest {
    pub fn emit(self) {
        metrics::counter!(API_REQUESTS, "method" => self.method.clone(), "route" => self.route.clone(), "status" => self.status.to_string())
            .increment(1);
        metrics::histogram!(API_REQUEST_SECONDS, "method" => self.method, "route" => self.route)
            .record(self.took.as_secs_f64());
    }
}

/// Alertmanager alerts sent on to the admin chats.
#[derive(Debug)]
pub struct OperatorAlertsSent {
    pub messages: usize,
}

impl OperatorAlertsSent {
    pub fn emit(&self) {
        metrics::counter!(OPERATOR_ALERTS).increment(self.messages as u64);
    }
}
