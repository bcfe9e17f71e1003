//! `enroll dlq list` and `enroll dlq replay`: what is parked, and sending it back.
//!
//! Listing never consumes. The embedded queues are read as they are (receive counts unchanged).
//! SQS has no peek: messages are received with a short visibility timeout, which hides them
//! for that long, and then made visible again at once; each listing adds one to their receive
//! count (a dead-letter queue has no redrive policy, so nothing moves because of it).
//!
//! A replay sends each selected message to its stage's queue and only then deletes it from the
//! dead-letter queue: a crash in between leaves a copy in both, which provision and align absorb
//! (they are idempotent per event), never a lost message. On AWS an unfiltered replay uses
//! SQS's message move task; a filtered one, or one against an endpoint override (moto has no
//! move task), receives, sends and deletes.
//!
//! Each message a replay moves one by one is recorded in its buyer's history ("replayed from
//! the dead-letter queue") by [`record_replays`]; a move task moves messages unseen, so those
//! are not, and a refund that names no buyer is not either.

use super::target::{QueuePair, Stage};
use super::{mask_if_email, print_table};
use anyhow::{anyhow, Context};
use aws_sdk_sqs::types::QueueAttributeName;
use chrono::{DateTime, Utc};
use enroll_aws::sqs::{ReceiveOptions, ReceivedMessage};
use enroll_core::event::{AlignRequest, OrderEvent};
use enroll_core::history::{self, HistoryEntry};
use enroll_core::ids::BuyerEmail;
use enroll_core::ports::HistoryLog;
use enroll_core::ports::RateBudget;
use enroll_embedded::queue::{EmbeddedQueue, ATTR_SOURCE};
use enroll_embedded::queue::{Message, ATTR_BUYER, ATTR_EVENT_KEY, ATTR_PARKED_AT, ATTR_REASON};
use enroll_notion::rate::TokenBucket;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// How long a listing hides SQS messages while it pages through them.
const LIST_VISIBILITY_SECS: i32 = 30;
/// How long a replay holds a message between receiving it and deleting it.
const REPLAY_VISIBILITY_SECS: i32 = 120;
/// How long to wait for StartMessageMoveTask before falling back.
const MOVE_TASK_TIMEOUT: Duration = Duration::from_secs(15);
/// SQS's limit on a move task's rate.
const MOVE_TASK_MAX_RATE: i32 = 500;

/// One parked message as the operator sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParkedMessage {
    pub queue: Stage,
    pub id: String,
    pub age_secs: i64,
    pub receive_count: u32,
    pub reason: Option<String>,
    pub event_key: Option<String>,
    /// Masked, never the address.
    pub buyer: Option<String>,
    pub parked_at: Option<DateTime<Utc>>,
}

/// Which parked messages a replay takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// A substring of the reason, compared ignoring case.
    #[serde(default)]
    pub reason: Option<String>,
    /// One event key, exactly.
    #[serde(default)]
    pub key: Option<String>,
}

impl Selection {
    pub fn is_everything(&self) -> bool {
        self.reason.is_none() && self.key.is_none()
    }

    pub fn matches(&self, m: &ParkedMessage) -> bool {
        let reason_ok = self.reason.as_ref().is_none_or(|want| {
            m.reason
                .as_deref()
                .is_some_and(|r| r.to_lowercase().contains(&want.to_lowercase()))
        });
        let key_ok = self
            .key
            .as_ref()
            .is_none_or(|k| m.event_key.as_deref() == Some(k.as_str()));
        reason_ok && key_ok
    }
}

/// What a replay request asks; also the body of `POST /admin/dlq/replay`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReplayRequest {
    /// Both stages when absent.
    #[serde(default)]
    pub queue: Option<Stage>,
    #[serde(default)]
    pub selection: Selection,
    /// Messages per second.
    #[serde(default)]
    pub rate: Option<f64>,
    #[serde(default)]
    pub dry_run: bool,
}

/// One message a replay moved (or, in a dry run, would move).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MovedMessage {
    pub id: String,
    pub event_key: Option<String>,
    pub reason: Option<String>,
}

/// What a replay did on one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayReport {
    pub queue: Stage,
    pub dry_run: bool,
    /// `receive-send-delete`, `move-task` or `embedded`.
    pub method: String,
    pub moved: Vec<MovedMessage>,
    /// Counted by SQS for a move task, whose messages are not listed one by one.
    pub moved_count: usize,
    /// Messages the selection left parked.
    pub kept: usize,
    /// Messages that could not be moved; they are still parked (or, if only the delete
    /// failed, in both queues).
    pub failed: Vec<String>,
    /// The buyer and event key of each message moved, for their histories; never reported.
    #[serde(skip)]
    pub replayed: Vec<(BuyerEmail, String)>,
}

impl ReplayReport {
    /// An empty report for one queue and method, filled in as messages move.
    fn new(queue: Stage, dry_run: bool, method: &str) -> Self {
        Self {
            queue,
            dry_run,
            method: method.to_owned(),
            moved: Vec::new(),
            moved_count: 0,
            kept: 0,
            failed: Vec::new(),
            replayed: Vec::new(),
        }
    }
}

/// The buyer a parked body belongs to, with its event key, when the body names one.
fn buyer_of(stage: Stage, body: &str) -> Option<(BuyerEmail, String)> {
    match stage {
        Stage::Provision => {
            let e = serde_json::from_str::<OrderEvent>(body).ok()?;
            Some((e.buyer?.email, e.key.as_string()))
        }
        Stage::Align => {
            let a = serde_json::from_str::<AlignRequest>(body).ok()?;
            Some((a.email, a.source.as_string()))
        }
    }
}

/// Records each replayed message in its buyer's history. Best-effort, as all history is.
pub async fn record_replays(log: &dyn HistoryLog, reports: &[ReplayReport]) {
    for r in reports {
        for (buyer, key) in &r.replayed {
            let what = format!(
                "replayed from the dead-letter queue ({} {key})",
                r.queue.as_str()
            );
            let entry = HistoryEntry::now(history::Stage::Operator, what);
            history::record(log, buyer, vec![entry]).await;
        }
    }
}

/// What the body says about itself, for messages parked without attributes (SQS's own redrive
/// after maxReceiveCount records no reason).
fn describe_body(stage: Stage, body: &str) -> (Option<String>, Option<String>) {
    match stage {
        Stage::Provision => serde_json::from_str::<OrderEvent>(body)
            .map(|e| {
                (
                    Some(e.key.as_string()),
                    e.buyer.map(|b| b.email.to_string()),
                )
            })
            .unwrap_or_default(),
        Stage::Align => serde_json::from_str::<AlignRequest>(body)
            .map(|a| (Some(a.source.as_string()), Some(a.email.to_string())))
            .unwrap_or_default(),
    }
}

fn parked_message(
    stage: Stage,
    id: String,
    body: &str,
    attrs: &BTreeMap<String, String>,
    receive_count: u32,
    sent_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> ParkedMessage {
    let (body_key, body_buyer) = describe_body(stage, body);
    let parked_at = attrs.get(ATTR_PARKED_AT).and_then(|t| t.parse().ok());
    let since = sent_at.or(parked_at);
    ParkedMessage {
        queue: stage,
        id,
        age_secs: since.map(|t| (now - t).num_seconds().max(0)).unwrap_or(0),
        receive_count,
        reason: attrs.get(ATTR_REASON).cloned().or_else(|| {
            attrs
                .get(ATTR_SOURCE)
                .is_none()
                .then(|| "ran out of receives (redriven by the queue)".to_owned())
        }),
        event_key: attrs.get(ATTR_EVENT_KEY).cloned().or(body_key),
        buyer: attrs
            .get(ATTR_BUYER)
            .cloned()
            .or(body_buyer)
            .map(|b| mask_if_email(&b)),
        parked_at,
    }
}

fn from_embedded(stage: Stage, m: &Message, now: DateTime<Utc>) -> ParkedMessage {
    parked_message(
        stage,
        m.id.clone(),
        &m.body,
        &m.attributes,
        m.receive_count,
        DateTime::from_timestamp_millis(m.sent_at_ms),
        now,
    )
}

fn from_sqs(stage: Stage, m: &ReceivedMessage, now: DateTime<Utc>) -> ParkedMessage {
    parked_message(
        stage,
        m.message_id.clone(),
        &m.body,
        &m.attributes,
        m.receive_count,
        m.sent_at,
        now,
    )
}

/// Every message parked in a stage's dead-letter queue, consuming nothing.
pub async fn list(pair: &QueuePair) -> anyhow::Result<Vec<ParkedMessage>> {
    let now = Utc::now();
    match pair {
        QueuePair::Embedded { stage, dlq, .. } => Ok(dlq
            .peek()
            .iter()
            .map(|m| from_embedded(*stage, m, now))
            .collect()),
        QueuePair::Sqs {
            stage,
            client,
            dlq_url,
            ..
        } => {
            let held = receive_all(client, dlq_url, LIST_VISIBILITY_SECS).await?;
            let out = held.iter().map(|m| from_sqs(*stage, m, now)).collect();
            release(client, dlq_url, &held).await;
            Ok(out)
        }
    }
}

/// Receives until nothing new comes back; the messages stay hidden for `visibility` seconds.
async fn receive_all(
    client: &aws_sdk_sqs::Client,
    url: &str,
    visibility: i32,
) -> anyhow::Result<Vec<ReceivedMessage>> {
    let mut seen = HashSet::new();
    let mut held = Vec::new();
    let mut idle = 0;
    // Short polls sample a subset of SQS's servers and can come back empty while messages
    // wait: a one-second long poll asks them all, and two empty answers end the listing.
    while idle < 2 {
        let got = enroll_aws::receive_batch(
            client,
            url,
            ReceiveOptions {
                max_messages: 10,
                wait_seconds: 1,
                visibility_timeout: Some(visibility),
            },
        )
        .await
        .map_err(|f| anyhow!("receiving from the dead-letter queue: {}", f.reason))?;
        let before = held.len();
        for m in got {
            if seen.insert(m.message_id.clone()) {
                held.push(m);
            }
        }
        idle = if held.len() == before { idle + 1 } else { 0 };
    }
    Ok(held)
}

/// Makes received messages visible again at once. Best effort: a failure only delays them by
/// the visibility timeout.
async fn release(client: &aws_sdk_sqs::Client, url: &str, msgs: &[ReceivedMessage]) {
    for m in msgs {
        if let Err(e) = client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(&m.receipt_handle)
            .visibility_timeout(0)
            .send()
            .await
        {
            tracing::warn!(error = %e, "could not make a listed message visible again; it returns after its visibility timeout");
        }
    }
}

fn budget(rate: Option<f64>) -> anyhow::Result<Option<TokenBucket>> {
    match rate {
        None => Ok(None),
        Some(r) if r.is_finite() && r > 0.0 => Ok(Some(TokenBucket::new(r, 1))),
        Some(_) => anyhow::bail!("--rate must be a positive number of messages per second"),
    }
}

/// Replays the selected messages of one stage.
pub async fn replay(pair: &QueuePair, req: &ReplayRequest) -> anyhow::Result<ReplayReport> {
    let stage = pair.stage();
    let bucket = budget(req.rate)?;
    let now = Utc::now();
    match pair {
        QueuePair::Embedded { source, dlq, .. } => {
            replay_embedded(stage, source, dlq, req, bucket.as_ref(), now).await
        }
        QueuePair::Sqs {
            client,
            source_url,
            dlq_url,
            move_task,
            ..
        } => {
            if *move_task && !req.dry_run && req.selection.is_everything() {
                match start_move_task(client, source_url, dlq_url, req.rate).await {
                    Ok(report) => {
                        return Ok(ReplayReport {
                            queue: stage,
                            ..report
                        })
                    }
                    Err(e) => tracing::warn!(
                        error = %format!("{e:#}"),
                        "message move task unavailable: replaying by receive, send and delete"
                    ),
                }
            }
            replay_sqs(
                stage,
                client,
                source_url,
                dlq_url,
                req,
                bucket.as_ref(),
                now,
            )
            .await
        }
    }
}

async fn replay_embedded(
    stage: Stage,
    source: &EmbeddedQueue,
    dlq: &EmbeddedQueue,
    req: &ReplayRequest,
    bucket: Option<&TokenBucket>,
    now: DateTime<Utc>,
) -> anyhow::Result<ReplayReport> {
    let mut report = ReplayReport::new(stage, req.dry_run, "embedded");
    for m in dlq.peek() {
        let parked = from_embedded(stage, &m, now);
        if !req.selection.matches(&parked) {
            report.kept += 1;
            continue;
        }
        if !req.dry_run {
            if let Some(b) = bucket {
                b.acquire().await;
            }
            if dlq.redrive(&m.id, source)?.is_none() {
                continue;
            }
            report.replayed.extend(buyer_of(stage, &m.body));
        }
        report.moved.push(MovedMessage {
            id: parked.id,
            event_key: parked.event_key,
            reason: parked.reason,
        });
    }
    report.moved_count = report.moved.len();
    Ok(report)
}

async fn replay_sqs(
    stage: Stage,
    client: &aws_sdk_sqs::Client,
    source_url: &str,
    dlq_url: &str,
    req: &ReplayRequest,
    bucket: Option<&TokenBucket>,
    now: DateTime<Utc>,
) -> anyhow::Result<ReplayReport> {
    let mut report = ReplayReport::new(stage, req.dry_run, "receive-send-delete");
    let visibility = if req.dry_run {
        LIST_VISIBILITY_SECS
    } else {
        REPLAY_VISIBILITY_SECS
    };
    let held = receive_all(client, dlq_url, visibility).await?;
    let mut untouched = Vec::new();
    for m in held {
        let parked = from_sqs(stage, &m, now);
        if !req.selection.matches(&parked) || req.dry_run {
            if req.selection.matches(&parked) {
                report.moved.push(moved(&parked));
            } else {
                report.kept += 1;
            }
            untouched.push(m);
            continue;
        }
        if let Some(b) = bucket {
            b.acquire().await;
        }
        let sent = client
            .send_message()
            .queue_url(source_url)
            .message_body(&m.body)
            .send()
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "could not send a parked message back; it stays parked");
            report.failed.push(parked.id.clone());
            untouched.push(m);
            continue;
        }
        match enroll_aws::delete(client, dlq_url, &m.receipt_handle).await {
            Ok(()) => {
                report.moved.push(moved(&parked));
                report.replayed.extend(buyer_of(stage, &m.body));
            }
            Err(f) => {
                tracing::warn!(reason = %f.reason, "sent back but not deleted: it is in both queues");
                report.failed.push(parked.id.clone());
            }
        }
    }
    release(client, dlq_url, &untouched).await;
    report.moved_count = report.moved.len();
    Ok(report)
}

fn moved(p: &ParkedMessage) -> MovedMessage {
    MovedMessage {
        id: p.id.clone(),
        event_key: p.event_key.clone(),
        reason: p.reason.clone(),
    }
}

async fn queue_arn(client: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<String> {
    client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .context("GetQueueAttributes")?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| anyhow!("the queue reports no ARN"))
}

/// Moves everything with SQS's own move task and waits for it to finish. The destination is
/// named: messages parked directly (not by redrive) have no "original source" for SQS to
/// return them to.
async fn start_move_task(
    client: &aws_sdk_sqs::Client,
    source_url: &str,
    dlq_url: &str,
    rate: Option<f64>,
) -> anyhow::Result<ReplayReport> {
    let attempt = async {
        let dlq_arn = queue_arn(client, dlq_url).await?;
        let source_arn = queue_arn(client, source_url).await?;
        let per_second = rate.map(|r| (r.ceil() as i32).clamp(1, MOVE_TASK_MAX_RATE));
        client
            .start_message_move_task()
            .source_arn(&dlq_arn)
            .destination_arn(&source_arn)
            .set_max_number_of_messages_per_second(per_second)
            .send()
            .await
            .context("StartMessageMoveTask")?;
        anyhow::Ok(dlq_arn)
    };
    let dlq_arn = tokio::time::timeout(MOVE_TASK_TIMEOUT, attempt)
        .await
        .map_err(|_| anyhow!("StartMessageMoveTask did not answer in {MOVE_TASK_TIMEOUT:?}"))??;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let out = client
            .list_message_move_tasks()
            .source_arn(&dlq_arn)
            .max_results(1)
            .send()
            .await
            .context("ListMessageMoveTasks")?;
        let Some(task) = out.results().first() else {
            continue;
        };
        let status = task.status().unwrap_or("RUNNING");
        if status == "RUNNING" || status == "CANCELLING" {
            continue;
        }
        let moved = task.approximate_number_of_messages_moved().max(0) as usize;
        let mut failed = Vec::new();
        if status != "COMPLETED" {
            failed.push(format!(
                "move task {status}: {}",
                task.failure_reason().unwrap_or("no reason given")
            ));
        }
        return Ok(ReplayReport {
            moved_count: moved,
            failed,
            ..ReplayReport::new(Stage::Provision, false, "move-task")
        });
    }
}

pub fn print_list(msgs: &[ParkedMessage]) {
    if msgs.is_empty() {
        println!("no parked messages");
        return;
    }
    let rows: Vec<Vec<String>> = msgs
        .iter()
        .map(|m| {
            vec![
                m.queue.as_str().to_owned(),
                human_age(m.age_secs),
                m.receive_count.to_string(),
                m.event_key.clone().unwrap_or_else(|| "-".into()),
                m.buyer.clone().unwrap_or_else(|| "-".into()),
                m.reason
                    .as_deref()
                    .map(|r| r.chars().take(80).collect())
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(
        &["QUEUE", "AGE", "RECEIVES", "EVENT KEY", "BUYER", "REASON"],
        &rows,
    );
    println!("\n{} parked message(s)", msgs.len());
}

pub fn print_replay(reports: &[ReplayReport]) {
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            vec![
                r.queue.as_str().to_owned(),
                r.method.clone(),
                if r.dry_run {
                    format!("{} (dry run)", r.moved_count)
                } else {
                    r.moved_count.to_string()
                },
                r.kept.to_string(),
                r.failed.len().to_string(),
            ]
        })
        .collect();
    print_table(&["QUEUE", "METHOD", "MOVED", "KEPT", "FAILED"], &rows);
    for r in reports {
        for m in &r.moved {
            println!(
                "  {} {} {}",
                if r.dry_run { "would move" } else { "moved" },
                m.event_key.as_deref().unwrap_or("-"),
                m.reason
                    .as_deref()
                    .map(|s| s.chars().take(60).collect::<String>())
                    .unwrap_or_default()
            );
        }
        for f in &r.failed {
            println!("  failed {f}");
        }
    }
}

fn human_age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parked(reason: Option<&str>, key: Option<&str>) -> ParkedMessage {
        ParkedMessage {
            queue: Stage::Provision,
            id: "m".into(),
            age_secs: 0,
            receive_count: 0,
            reason: reason.map(str::to_owned),
            event_key: key.map(str::to_owned),
            buyer: None,
            parked_at: None,
        }
    }

    #[test]
    fn selection_by_reason_ignores_case_and_by_key_is_exact() {
        let m = parked(
            Some("SCIM add members: 503 Service Unavailable"),
            Some("stripe:evt_1"),
        );
        let by_reason = Selection {
            reason: Some("service unavailable".into()),
            key: None,
        };
        assert!(by_reason.matches(&m));
        let by_key = Selection {
            reason: None,
            key: Some("stripe:evt_".into()),
        };
        assert!(!by_key.matches(&m));
        assert!(Selection::default().matches(&parked(None, None)));
        assert!(!by_reason.matches(&parked(None, None)));
    }

    #[test]
    fn a_body_without_attributes_still_names_its_event_and_masks_its_buyer() {
        let body = r#"{"key":{"platform":"stripe","event_id":"evt_9"},"kind":"purchase","order":{"platform":"stripe","order_id":"o"},
            "buyer":{"email":"ada@example.com"},"items":[],"occurred_at":"2026-01-01T00:00:00Z"}"#;
        let m = parked_message(
            Stage::Provision,
            "id".into(),
            body,
            &BTreeMap::new(),
            3,
            None,
            Utc::now(),
        );
        assert_eq!(m.event_key.as_deref(), Some("stripe:evt_9"));
        assert_eq!(m.buyer.as_deref(), Some("a***@e***.com"));
        assert!(m.reason.unwrap().contains("ran out of receives"));
    }
}
