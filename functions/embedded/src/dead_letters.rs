//! The dead-letter admin port on the embedded queues: a stage's queue and its dead-letter queue
//! on the data directory's journal. Listing reads the messages as they are (receive counts
//! unchanged); a replay redrives them one by one, sent before deleted.

use crate::journal::Journal;
use crate::queue::{EmbeddedQueue, Message, QueueSettings};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use enroll_core::dead_letters::{
    buyer_of, DeadLetterAdmin, ParkedMessage, QueueStage, RawParked, ReplayReport, ReplayRequest,
};
use enroll_core::ports::RateBudget;
use enroll_core::Failure;
use std::sync::{Arc, Mutex};

/// A stage's queue and its dead-letter queue.
pub struct EmbeddedDeadLetters {
    stage: QueueStage,
    source: Arc<EmbeddedQueue>,
    dlq: Arc<EmbeddedQueue>,
}

impl EmbeddedDeadLetters {
    pub fn new(stage: QueueStage, source: Arc<EmbeddedQueue>, dlq: Arc<EmbeddedQueue>) -> Self {
        Self { stage, source, dlq }
    }

    /// Both stages on a journal, named as the runtime names them. The settings matter only for
    /// receiving, which the operator never does on these.
    pub fn on_journal(journal: &Arc<Mutex<Journal>>) -> Vec<Arc<dyn DeadLetterAdmin>> {
        QueueStage::ALL
            .iter()
            .map(|&stage| {
                let dlq = EmbeddedQueue::new(
                    stage.dlq_name(),
                    journal.clone(),
                    QueueSettings::default(),
                    None,
                );
                let source = EmbeddedQueue::new(
                    stage.as_str(),
                    journal.clone(),
                    QueueSettings::default(),
                    Some(dlq.clone()),
                );
                Arc::new(Self::new(stage, source, dlq)) as Arc<dyn DeadLetterAdmin>
            })
            .collect()
    }

    fn describe(&self, m: &Message, now: DateTime<Utc>) -> ParkedMessage {
        let raw = RawParked {
            id: m.id.clone(),
            body: &m.body,
            attributes: &m.attributes,
            receive_count: m.receive_count,
            sent_at: DateTime::from_timestamp_millis(m.sent_at_ms),
        };
        ParkedMessage::describe(self.stage, raw, now)
    }

    /// Walks the parked messages the request selects, calling `act` on each (unless a dry
    /// run); `act` says whether the message was still there.
    async fn each_selected(
        &self,
        req: &ReplayRequest,
        method: &str,
        pace: Option<&dyn RateBudget>,
        now: DateTime<Utc>,
        act: impl Fn(&Message) -> std::io::Result<bool>,
    ) -> Result<ReplayReport, Failure> {
        let mut report = ReplayReport::new(self.stage, req.dry_run, method);
        for m in self.dlq.peek() {
            let parked = self.describe(&m, now);
            if !req.selection.matches(&parked) {
                report.kept += 1;
                continue;
            }
            if !req.dry_run {
                if let Some(p) = pace {
                    p.acquire().await;
                }
                let there = act(&m).map_err(|e| {
                    Failure::transient(format!("writing the queue journal: {e}")).caused_by(&e)
                })?;
                if !there {
                    continue;
                }
                report.replayed.extend(buyer_of(self.stage, &m.body));
            }
            report.moved.push(parked.moved());
        }
        report.moved_count = report.moved.len();
        Ok(report)
    }
}

#[async_trait]
impl DeadLetterAdmin for EmbeddedDeadLetters {
    fn stage(&self) -> QueueStage {
        self.stage
    }

    async fn list(&self, now: DateTime<Utc>) -> Result<Vec<ParkedMessage>, Failure> {
        Ok(self
            .dlq
            .peek()
            .iter()
            .map(|m| self.describe(m, now))
            .collect())
    }

    async fn replay(
        &self,
        req: &ReplayRequest,
        pace: Option<&dyn RateBudget>,
        now: DateTime<Utc>,
    ) -> Result<ReplayReport, Failure> {
        self.each_selected(req, "embedded", pace, now, |m| {
            Ok(self.dlq.redrive(&m.id, &self.source)?.is_some())
        })
        .await
    }

    async fn delete(
        &self,
        req: &ReplayRequest,
        now: DateTime<Utc>,
    ) -> Result<ReplayReport, Failure> {
        self.each_selected(req, "delete", None, now, |m| {
            self.dlq.delete(&m.id)?;
            Ok(true)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{ATTR_EVENT_KEY, ATTR_REASON};
    use enroll_core::dead_letters::Selection;
    use std::collections::BTreeMap;

    fn stage_queues() -> (Arc<EmbeddedQueue>, Arc<EmbeddedQueue>) {
        let journal = Arc::new(Mutex::new(Journal::in_memory()));
        let settings = QueueSettings::default();
        let dlq = EmbeddedQueue::new("provision-dlq", journal.clone(), settings, None);
        let q = EmbeddedQueue::new("provision", journal, settings, Some(dlq.clone()));
        (q, dlq)
    }

    #[tokio::test]
    async fn replay_moves_only_selected_messages_as_new_ones_and_delete_removes_them() {
        let (q, dlq) = stage_queues();
        let attrs = |key: &str| {
            BTreeMap::from([
                (ATTR_REASON.to_owned(), "SCIM 503".to_owned()),
                (ATTR_EVENT_KEY.to_owned(), key.to_owned()),
            ])
        };
        dlq.send_with("a", attrs("stripe:a")).unwrap();
        dlq.send_with("b", attrs("stripe:b")).unwrap();
        let admin = EmbeddedDeadLetters::new(QueueStage::Provision, q.clone(), dlq.clone());
        let only_b = ReplayRequest {
            selection: Selection {
                reason: None,
                key: Some("stripe:b".into()),
            },
            ..ReplayRequest::default()
        };
        let dry = ReplayRequest {
            dry_run: true,
            ..only_b.clone()
        };
        let would = admin.replay(&dry, None, Utc::now()).await.unwrap();
        assert_eq!(would.moved_count, 1);
        assert_eq!(dlq.len(), 2, "a dry run moves nothing");

        let report = admin.replay(&only_b, None, Utc::now()).await.unwrap();
        assert_eq!(report.kept, 1);
        assert_eq!(report.moved.len(), 1);
        assert_eq!(report.moved[0].event_key.as_deref(), Some("stripe:b"));
        let back = q.peek();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].body, "b");
        assert_eq!(back[0].receive_count, 0);
        assert!(
            back[0].attributes.is_empty(),
            "the parking reason stays behind"
        );
        assert_eq!(dlq.peek()[0].body, "a");

        let listed = admin.list(Utc::now()).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].reason.as_deref(), Some("SCIM 503"));
        let gone = admin
            .delete(&ReplayRequest::default(), Utc::now())
            .await
            .unwrap();
        assert_eq!(gone.moved_count, 1);
        assert!(dlq.is_empty());
        assert_eq!(q.len(), 1, "a delete sends nothing back");
    }
}
