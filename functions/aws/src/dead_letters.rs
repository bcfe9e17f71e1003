//! The dead-letter admin port on SQS: a stage's queue and its dead-letter queue by URL.
//!
//! SQS has no peek: a listing receives the messages with a short visibility timeout, which
//! hides them for that long, and then makes them visible again at once; each listing adds one
//! to their receive count (a dead-letter queue has no redrive policy, so nothing moves because
//! of it). An unfiltered replay uses SQS's message move task; a filtered one, or one against an
//! endpoint override (moto has no move task), receives, sends and deletes. A move task moves
//! messages unseen, so those are not recorded in buyers' histories.
//!
//! On a deployment serving several sellers, [`SqsDeadLetterAdmin::for_tenant`] sees one
//! tenant's messages only: those whose `enroll.tenant` attribute, or body `tenant` field when
//! the attribute is absent, names it. The others are received with the rest and made visible
//! again untouched. A replay sends a body back unchanged: it names its tenant already. A
//! tenant's replay never uses the move task, which would move every tenant's messages.

use crate::sqs::{delete, receive_batch, ReceiveOptions, ReceivedMessage};
use async_trait::async_trait;
use aws_sdk_sqs::types::QueueAttributeName;
use aws_sdk_sqs::Client;
use chrono::{DateTime, Utc};
use enroll_core::dead_letters::{
    buyer_of, DeadLetterAdmin, ParkedMessage, QueueStage, RawParked, ReplayReport, ReplayRequest,
};
use enroll_core::ports::RateBudget;
use enroll_core::tenant::TenantId;
use enroll_core::Failure;
use std::collections::HashSet;
use std::time::Duration;

/// How long a listing hides messages while it pages through them.
const LIST_VISIBILITY_SECS: i32 = 30;
/// How long a replay or delete holds a message between receiving it and acting on it.
const REPLAY_VISIBILITY_SECS: i32 = 120;
/// How long to wait for StartMessageMoveTask before falling back.
const MOVE_TASK_TIMEOUT: Duration = Duration::from_secs(15);
/// SQS's limit on a move task's rate.
const MOVE_TASK_MAX_RATE: i32 = 500;

/// A stage's queue and its dead-letter queue on SQS.
pub struct SqsDeadLetterAdmin {
    pub stage: QueueStage,
    pub client: Client,
    pub source_url: String,
    pub dlq_url: String,
    /// Try StartMessageMoveTask for an unfiltered replay (not on an endpoint override).
    pub move_task: bool,
}

fn sqs_failure(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::transient(format!("{what}: {e}"))
}

/// One tenant's view of a stage's queues: [`SqsDeadLetterAdmin::for_tenant`].
pub struct TenantDeadLetterAdmin {
    pub admin: SqsDeadLetterAdmin,
    pub tenant: TenantId,
}

/// Whether a described message is `only`'s (every message is, without a tenant).
fn is_of(parked: &ParkedMessage, only: Option<&TenantId>) -> bool {
    only.is_none_or(|t| parked.tenant.as_deref().unwrap_or("") == t.as_str())
}

impl SqsDeadLetterAdmin {
    /// The same queues, seen as `tenant`'s: listing, replay and delete act on its messages only.
    pub fn for_tenant(self, tenant: TenantId) -> TenantDeadLetterAdmin {
        TenantDeadLetterAdmin {
            admin: self,
            tenant,
        }
    }

    fn describe(&self, m: &ReceivedMessage, now: DateTime<Utc>) -> ParkedMessage {
        let raw = RawParked {
            id: m.message_id.clone(),
            body: &m.body,
            attributes: &m.attributes,
            receive_count: m.receive_count,
            sent_at: m.sent_at,
        };
        ParkedMessage::describe(self.stage, raw, now)
    }

    /// Receives until nothing new comes back; the messages stay hidden for `visibility`
    /// seconds.
    async fn receive_all(&self, visibility: i32) -> Result<Vec<ReceivedMessage>, Failure> {
        let mut seen = HashSet::new();
        let mut held = Vec::new();
        let mut idle = 0;
        // Short polls sample a subset of SQS's servers and can come back empty while messages
        // wait: a one-second long poll asks them all, and two empty answers end the listing.
        while idle < 2 {
            let options = ReceiveOptions {
                max_messages: 10,
                wait_seconds: 1,
                visibility_timeout: Some(visibility),
            };
            let got = receive_batch(&self.client, &self.dlq_url, options)
                .await
                .map_err(|f| f.context("receiving from the dead-letter queue"))?;
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

    /// Makes received messages visible again at once. Best effort: a failure only delays them
    /// by the visibility timeout.
    async fn release(&self, msgs: &[ReceivedMessage]) {
        for m in msgs {
            let made_visible = self
                .client
                .change_message_visibility()
                .queue_url(&self.dlq_url)
                .receipt_handle(&m.receipt_handle)
                .visibility_timeout(0)
                .send()
                .await;
            if let Err(e) = made_visible {
                tracing::warn!(error = %e, "could not make a listed message visible again; it returns after its visibility timeout");
            }
        }
    }

    /// Receives everything parked, acts on each selected message (unless a dry run), and makes
    /// the rest visible again. `act` sends back or does nothing; the message is deleted after.
    async fn each_selected(
        &self,
        req: &ReplayRequest,
        method: &str,
        pace: Option<&dyn RateBudget>,
        now: DateTime<Utc>,
        send_back: bool,
        only: Option<&TenantId>,
    ) -> Result<ReplayReport, Failure> {
        let mut report = ReplayReport::new(self.stage, req.dry_run, method);
        let visibility = if req.dry_run {
            LIST_VISIBILITY_SECS
        } else {
            REPLAY_VISIBILITY_SECS
        };
        let mut untouched = Vec::new();
        for m in self.receive_all(visibility).await? {
            let parked = self.describe(&m, now);
            // Another tenant's message is neither moved nor counted as kept: it is not this
            // tenant's to see.
            if !is_of(&parked, only) {
                untouched.push(m);
                continue;
            }
            if !req.selection.matches(&parked) {
                report.kept += 1;
                untouched.push(m);
                continue;
            }
            if req.dry_run {
                report.moved.push(parked.moved());
                untouched.push(m);
                continue;
            }
            if let Some(p) = pace {
                p.acquire().await;
            }
            if send_back {
                // The notify queue is FIFO: a delivery goes back into its group.
                let fifo = crate::outbound::fifo_ids(&self.source_url, &m.body);
                // A standard queue's group is the tenant (SQS fair queues), as when it was
                // first sent.
                let group = match &fifo {
                    Some(f) => Some(f.0.clone()),
                    None => parked
                        .tenant
                        .as_deref()
                        .and_then(|t| TenantId::parse(t).ok())
                        .and_then(|t| crate::sqs::fair_group(&self.source_url, &t)),
                };
                let sent = self
                    .client
                    .send_message()
                    .queue_url(&self.source_url)
                    .message_body(&m.body)
                    .set_message_group_id(group)
                    .set_message_deduplication_id(fifo.map(|f| f.1))
                    .send()
                    .await;
                if let Err(e) = sent {
                    tracing::warn!(error = %e, "could not send a parked message back; it stays parked");
                    report.failed.push(parked.id.clone());
                    untouched.push(m);
                    continue;
                }
            }
            match delete(&self.client, &self.dlq_url, &m.receipt_handle).await {
                Ok(()) => {
                    report.moved.push(parked.moved());
                    report.replayed.extend(buyer_of(self.stage, &m.body));
                }
                Err(f) => {
                    tracing::warn!(reason = %f.reason, sent_back = send_back, "a parked message could not be deleted");
                    report.failed.push(parked.id.clone());
                }
            }
        }
        self.release(&untouched).await;
        report.moved_count = report.moved.len();
        Ok(report)
    }

    async fn queue_arn(&self, url: &str) -> Result<String, Failure> {
        self.client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| sqs_failure("GetQueueAttributes", e))?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .ok_or_else(|| Failure::permanent("the queue reports no ARN"))
    }

    /// Moves everything with SQS's own move task and waits for it to finish. The destination
    /// is named: messages parked directly (not by redrive) have no "original source" for SQS to
    /// return them to.
    async fn move_task(&self, rate: Option<f64>) -> Result<ReplayReport, Failure> {
        let attempt = async {
            let dlq_arn = self.queue_arn(&self.dlq_url).await?;
            let source_arn = self.queue_arn(&self.source_url).await?;
            let per_second = rate.map(|r| (r.ceil() as i32).clamp(1, MOVE_TASK_MAX_RATE));
            self.client
                .start_message_move_task()
                .source_arn(&dlq_arn)
                .destination_arn(&source_arn)
                .set_max_number_of_messages_per_second(per_second)
                .send()
                .await
                .map_err(|e| sqs_failure("StartMessageMoveTask", e))?;
            Ok::<_, Failure>(dlq_arn)
        };
        let dlq_arn = tokio::time::timeout(MOVE_TASK_TIMEOUT, attempt)
            .await
            .map_err(|_| {
                Failure::transient(format!(
                    "StartMessageMoveTask did not answer in {MOVE_TASK_TIMEOUT:?}"
                ))
            })??;
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let out = self
                .client
                .list_message_move_tasks()
                .source_arn(&dlq_arn)
                .max_results(1)
                .send()
                .await
                .map_err(|e| sqs_failure("ListMessageMoveTasks", e))?;
            let Some(task) = out.results().first() else {
                continue;
            };
            let status = task.status().unwrap_or("RUNNING");
            if status == "RUNNING" || status == "CANCELLING" {
                continue;
            }
            let mut report = ReplayReport::new(self.stage, false, "move-task");
            report.moved_count = task.approximate_number_of_messages_moved().max(0) as usize;
            if status != "COMPLETED" {
                report.failed.push(format!(
                    "move task {status}: {}",
                    task.failure_reason().unwrap_or("no reason given")
                ));
            }
            return Ok(report);
        }
    }

    /// Every parked message (`only`'s, with a tenant), consuming nothing.
    async fn list_of(
        &self,
        now: DateTime<Utc>,
        only: Option<&TenantId>,
    ) -> Result<Vec<ParkedMessage>, Failure> {
        let held = self.receive_all(LIST_VISIBILITY_SECS).await?;
        let out = held
            .iter()
            .map(|m| self.describe(m, now))
            .filter(|p| is_of(p, only))
            .collect();
        self.release(&held).await;
        Ok(out)
    }
}

#[async_trait]
impl DeadLetterAdmin for SqsDeadLetterAdmin {
    fn stage(&self) -> QueueStage {
        self.stage
    }

    async fn list(&self, now: DateTime<Utc>) -> Result<Vec<ParkedMessage>, Failure> {
        self.list_of(now, None).await
    }

    async fn replay(
        &self,
        req: &ReplayRequest,
        pace: Option<&dyn RateBudget>,
        now: DateTime<Utc>,
    ) -> Result<ReplayReport, Failure> {
        if self.move_task && !req.dry_run && req.selection.is_everything() {
            match self.move_task(req.rate).await {
                Ok(report) => return Ok(report),
                Err(f) => tracing::warn!(
                    reason = %f.reason,
                    "message move task unavailable: replaying by receive, send and delete"
                ),
            }
        }
        self.each_selected(req, "receive-send-delete", pace, now, true, None)
            .await
    }

    async fn delete(
        &self,
        req: &ReplayRequest,
        now: DateTime<Utc>,
    ) -> Result<ReplayReport, Failure> {
        self.each_selected(req, "delete", None, now, false, None)
            .await
    }
}

#[async_trait]
impl DeadLetterAdmin for TenantDeadLetterAdmin {
    fn stage(&self) -> QueueStage {
        self.admin.stage
    }

    async fn list(&self, now: DateTime<Utc>) -> Result<Vec<ParkedMessage>, Failure> {
        self.admin.list_of(now, Some(&self.tenant)).await
    }

    async fn replay(
        &self,
        req: &ReplayRequest,
        pace: Option<&dyn RateBudget>,
        now: DateTime<Utc>,
    ) -> Result<ReplayReport, Failure> {
        let only = Some(&self.tenant);
        self.admin
            .each_selected(req, "receive-send-delete", pace, now, true, only)
            .await
    }

    async fn delete(
        &self,
        req: &ReplayRequest,
        now: DateTime<Utc>,
    ) -> Result<ReplayReport, Failure> {
        let only = Some(&self.tenant);
        self.admin
            .each_selected(req, "delete", None, now, false, only)
            .await
    }
}
