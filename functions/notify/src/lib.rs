//! The notify stage: delivers one outbound event ([`enroll_core::outbound::Delivery`]) to one
//! of the seller's endpoints, signed as a Standard Webhook, and decides what the answer means.
//!
//! - 2xx: delivered (`OutboundDelivered`).
//! - 410 Gone: the endpoint is disabled ([`EndpointRegistry`]); its later deliveries are
//!   dropped, each noted in the buyer's history.
//! - another 4xx except 408, 409, 425 and 429: parked in the notify dead-letter queue with the
//!   status as its reason, not retried.
//! - 5xx, 408, 409, 425, 429, another status, a timeout or no connection: retried after
//!   [`retry_delay`] (exponential, with jitter; a longer `Retry-After` wins), until
//!   [`MAX_ATTEMPTS`] attempts spanning more than 24 hours; then parked.
//!
//! Every attempt is one line in the buyer's history and one count of `OutboundDelivered` or
//! `OutboundFailed`. The body carries the buyer's email because the receiver needs it; logs
//! and history name the endpoint's host and the masked buyer only.
//!
//! Ordering per endpoint and buyer: a batch's deliveries of one group ([`Delivery::group`]) go
//! one after the other, and once one must be retried the group's later ones in the batch come
//! back with it, untried (the SQS FIFO rule). The embedded worker hands a group's oldest
//! delivery only; on AWS the FIFO queue does.
//!
//! - [`lambda`]: the Lambda wiring (SQS FIFO event source, the table's disabled list).
//! - [`echo`]: the local receiver of `enroll dev --outbound-echo`.

pub mod echo;
pub mod lambda;

use enroll_core::batch::{describe_json_error, BatchReport, Incoming, Redelivery};
use enroll_core::clock::{Clock, SystemClock};
use enroll_core::config::{Config, OutboundConfig};
use enroll_core::history::{self, HistoryEntry, NoHistory, Stage};
use enroll_core::metrics::{self, Function, Metric};
use enroll_core::outbound::{
    classify, retry_delay, Delivery, DisabledEndpoint, EndpointRegistry, Verdict, MAX_ATTEMPTS,
    MAX_RETRY,
};
use enroll_core::ports::{DeadLetters, HistoryLog, ParkedReason};
use enroll_core::Failure;
use std::sync::Arc;
use std::time::Duration;

/// A received message and its delivery, when the body parses.
type Item<'a> = (&'a Incoming, Option<Delivery>);

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    Delivered,
    /// Try again after the wait.
    Retry(Duration),
    /// Park with this reason; never retried.
    Park(String),
    /// Nothing to send (the endpoint was disabled or removed from the configuration).
    Dropped,
}

/// Everything notify needs, built once per process.
pub struct Notifier {
    pub config: Arc<Config>,
    pub endpoints: Arc<dyn EndpointRegistry>,
    pub history: Arc<dyn HistoryLog>,
    pub clock: Arc<dyn Clock>,
    http: reqwest::Client,
}

impl Notifier {
    pub fn new(config: Arc<Config>, endpoints: Arc<dyn EndpointRegistry>) -> Result<Self, Failure> {
        // No redirects: a signed event goes where the seller said, and a 3xx is retried like
        // any other answer that is not a success.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("enroll/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::permanent(format!("HTTP client: {e}")))?;
        Ok(Self {
            config,
            endpoints,
            history: Arc::new(NoHistory),
            clock: Arc::new(SystemClock),
            http,
        })
    }

    pub fn with_history(mut self, history: Arc<dyn HistoryLog>) -> Self {
        self.history = history;
        self
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn endpoint(&self, key: &str) -> Option<&OutboundConfig> {
        self.config.outbound.iter().find(|o| o.key() == key)
    }

    /// One attempt (`attempt` counts from 1) to deliver `d`, recorded in the buyer's history
    /// and the metrics.
    #[tracing::instrument(skip_all, fields(webhook_id = %d.webhook_id, endpoint = %d.endpoint, attempt))]
    pub async fn attempt(&self, d: &Delivery, attempt: u32) -> Settled {
        let what = d.event_type.as_str();
        let Some(endpoint) = self.endpoint(&d.endpoint) else {
            self.note(
                d,
                format!("{what} not sent: its endpoint is no longer configured"),
            )
            .await;
            return Settled::Dropped;
        };
        let host = endpoint.host().to_owned();
        match self.endpoints.disabled(&d.endpoint).await {
            Ok(Some(off)) => {
                let since = off.at.format("%Y-%m-%d %H:%M UTC");
                self.note(
                    d,
                    format!("{what} not sent: {host} is disabled since {since}"),
                )
                .await;
                return Settled::Dropped;
            }
            Ok(None) => {}
            Err(f) => {
                tracing::warn!(reason = %f.reason, "disabled endpoints unreadable; retrying");
                return Settled::Retry(retry_delay(1, rand::random()));
            }
        }
        let Some(key) = endpoint.key_bytes() else {
            return Settled::Park(format!("the secret of {host} is not a whsec_ secret"));
        };
        let now = self.clock.now();
        let signature = enroll_platforms::standard::signature(
            &key,
            &d.webhook_id,
            now.timestamp(),
            d.body.as_bytes(),
        );
        let sent = self
            .http
            .post(&endpoint.url)
            .timeout(Duration::from_secs(endpoint.timeout_secs))
            .header("content-type", "application/json")
            .header("webhook-id", &d.webhook_id)
            .header("webhook-timestamp", now.timestamp().to_string())
            .header("webhook-signature", signature)
            .body(d.body.clone())
            .send()
            .await
            // The URL's path may hold the receiver's token: errors name the host only.
            .map_err(reqwest::Error::without_url);
        let (status, retry_after, answer) = match &sent {
            Ok(resp) => (
                Some(resp.status().as_u16()),
                retry_after(resp),
                format!("HTTP {}", resp.status().as_u16()),
            ),
            Err(e) if e.is_timeout() => (None, None, "no answer in time".to_owned()),
            Err(e) => (None, None, enroll_core::redact::text(&error_chain(e))),
        };
        let tried = format!("{what} to {host} (attempt {attempt}, {answer})");
        match classify(status) {
            Verdict::Delivered => {
                metrics::count(Function::Notify, Metric::OutboundDelivered);
                tracing::info!(%host, attempt, "outbound event delivered");
                self.note(d, format!("delivered {tried}")).await;
                Settled::Delivered
            }
            Verdict::Disable => {
                metrics::count(Function::Notify, Metric::OutboundFailed);
                let record = DisabledEndpoint {
                    endpoint: d.endpoint.clone(),
                    at: now,
                    reason: format!("{host} answered 410 Gone"),
                };
                if let Err(f) = self.endpoints.disable(&record).await {
                    tracing::warn!(reason = %f.reason, "could not record the disabled endpoint");
                    return Settled::Retry(retry_delay(attempt, rand::random()));
                }
                tracing::warn!(%host, "endpoint answered 410 Gone: disabled");
                self.note(
                    d,
                    format!("endpoint disabled: {tried}; nothing more is sent to {host}"),
                )
                .await;
                Settled::Dropped
            }
            Verdict::Park => {
                metrics::count(Function::Notify, Metric::OutboundFailed);
                tracing::warn!(%host, %answer, "outbound event refused: parked");
                self.note(d, format!("refused {tried}: parked, not retried"))
                    .await;
                Settled::Park(format!("{host} refused the event: {answer}"))
            }
            Verdict::Retry if attempt >= MAX_ATTEMPTS => {
                metrics::count(Function::Notify, Metric::OutboundFailed);
                self.note(d, format!("failed {tried}: gave up, parked"))
                    .await;
                Settled::Park(format!(
                    "{host} failed {attempt} attempts over more than 24 hours; last: {answer}"
                ))
            }
            Verdict::Retry => {
                metrics::count(Function::Notify, Metric::OutboundFailed);
                let wait = retry_delay(attempt, rand::random())
                    .max(retry_after.unwrap_or_default().min(MAX_RETRY));
                tracing::info!(%host, %answer, wait_secs = wait.as_secs(), "outbound event failed; retrying");
                self.note(
                    d,
                    format!("failed {tried}; retrying in {} s", wait.as_secs()),
                )
                .await;
                Settled::Retry(wait)
            }
        }
    }

    async fn note(&self, d: &Delivery, what: String) {
        let entry = HistoryEntry::new(self.clock.now(), Stage::Notify, what);
        history::record(self.history.as_ref(), &d.buyer, vec![entry]).await;
    }

    /// Delivers a batch: groups at once, each group's deliveries in order (see the module
    /// documentation). Deliveries parked go to `dead` first and are then acknowledged; if that
    /// fails they come back instead.
    pub async fn run_batch(&self, dead: &dyn DeadLetters, messages: &[Incoming]) -> BatchReport {
        let mut groups: Vec<(String, Vec<Item<'_>>)> = Vec::new();
        for m in messages {
            let parsed = serde_json::from_str::<Delivery>(&m.body);
            let group = parsed.as_ref().map(Delivery::group).unwrap_or_default();
            let item = (m, parsed.ok());
            match groups
                .iter_mut()
                .find(|(g, _)| !g.is_empty() && *g == group)
            {
                Some((_, items)) => items.push(item),
                None => groups.push((group, vec![item])),
            }
        }
        let runs = groups.iter().map(|(_, items)| self.run_group(dead, items));
        let mut report = BatchReport::default();
        for part in futures::future::join_all(runs).await {
            report.retries.extend(part.retries);
            report.deferred.extend(part.deferred);
            report.succeeded += part.succeeded;
            report.parked += part.parked;
        }
        report
    }

    async fn run_group(&self, dead: &dyn DeadLetters, items: &[Item<'_>]) -> BatchReport {
        let mut report = BatchReport::default();
        let mut held: Option<Duration> = None;
        for (m, delivery) in items {
            if let Some(wait) = held {
                report.retries.push(Redelivery {
                    id: m.id.clone(),
                    delay: wait,
                });
                continue;
            }
            let (settled, why) = match delivery {
                None => {
                    let e = serde_json::from_str::<Delivery>(&m.body).err();
                    let reason = format!(
                        "message body is not valid: {}",
                        e.map(|e| describe_json_error(&e)).unwrap_or_default()
                    );
                    let why = ParkedReason {
                        reason: reason.clone(),
                        event_key: None,
                        buyer: None,
                    };
                    (Settled::Park(reason), why)
                }
                Some(d) => {
                    let s = self.attempt(d, m.receive_count.max(1)).await;
                    let reason = match &s {
                        Settled::Park(r) => r.clone(),
                        _ => String::new(),
                    };
                    let why = ParkedReason {
                        reason,
                        event_key: Some(d.webhook_id.clone()),
                        buyer: Some(d.buyer.to_string()),
                    };
                    (s, why)
                }
            };
            match settled {
                Settled::Delivered | Settled::Dropped => report.succeeded += 1,
                Settled::Retry(wait) => {
                    held = Some(wait);
                    report.retries.push(Redelivery {
                        id: m.id.clone(),
                        delay: wait,
                    });
                }
                Settled::Park(_) => match dead.park(&m.body, &why).await {
                    Ok(()) => {
                        metrics::count(Function::Notify, Metric::EventsParked);
                        report.parked += 1;
                    }
                    Err(f) => {
                        tracing::warn!(reason = %f.reason, "could not park; the delivery comes back");
                        let wait = Duration::from_secs(30);
                        held = Some(wait);
                        report.retries.push(Redelivery {
                            id: m.id.clone(),
                            delay: wait,
                        });
                    }
                },
            }
        }
        report
    }
}

/// `Retry-After` in seconds, when the receiver sent one.
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get("retry-after")?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The error and its causes, which say what went wrong (refused, DNS, TLS).
fn error_chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
