//! The metrics enroll emits, by name: one list shared by the code that records them, the
//! CloudWatch dashboard and alarms in `template.yaml` (a test checks the template names only
//! these), and the local summaries. Namespace [`NAMESPACE`]; every metric carries the dimension
//! `Function`. No metric or dimension ever carries personal data.

/// The CloudWatch namespace of every enroll metric.
pub const NAMESPACE: &str = "Enroll";

/// One metric enroll emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    WebhooksAccepted,
    /// With the dimension `Reason`: signature, stale, malformed or too_large.
    WebhooksRejected,
    EventsApplied,
    EventsDuplicate,
    EventsParked,
    ScimRequests,
    ScimThrottled,
    ScimAuthFailures,
    NotionApiRequests,
    RecordsAligned,
    /// From webhook accepted to member in every Group, in milliseconds.
    TimeToAccessMs,
    ExpiryReconciled,
}

/// The CloudWatch unit of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

impl Metric {
    pub const ALL: [Metric; 12] = [
        Metric::WebhooksAccepted,
        Metric::WebhooksRejected,
        Metric::EventsApplied,
        Metric::EventsDuplicate,
        Metric::EventsParked,
        Metric::ScimRequests,
        Metric::ScimThrottled,
        Metric::ScimAuthFailures,
        Metric::NotionApiRequests,
        Metric::RecordsAligned,
        Metric::TimeToAccessMs,
        Metric::ExpiryReconciled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::WebhooksAccepted => "WebhooksAccepted",
            Metric::WebhooksRejected => "WebhooksRejected",
            Metric::EventsApplied => "EventsApplied",
            Metric::EventsDuplicate => "EventsDuplicate",
            Metric::EventsParked => "EventsParked",
            Metric::ScimRequests => "ScimRequests",
            Metric::ScimThrottled => "ScimThrottled",
            Metric::ScimAuthFailures => "ScimAuthFailures",
            Metric::NotionApiRequests => "NotionApiRequests",
            Metric::RecordsAligned => "RecordsAligned",
            Metric::TimeToAccessMs => "TimeToAccessMs",
            Metric::ExpiryReconciled => "ExpiryReconciled",
        }
    }

    pub fn unit(self) -> Unit {
        match self {
            Metric::TimeToAccessMs => Unit::Milliseconds,
            _ => Unit::Count,
        }
    }
}
