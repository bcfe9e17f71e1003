//! One provision batch: each message an [`OrderEvent`], handled by [`Provisioner::process`].

use crate::Provisioner;
use chrono::{DateTime, Utc};
use enroll_core::batch::{self, BatchReport, Incoming};
use enroll_core::event::OrderEvent;
use enroll_core::ports::DeadLetters;

/// Runs a batch; `deadline` is when the invocation runs out of time.
pub async fn run(
    provisioner: &Provisioner,
    dead: &dyn DeadLetters,
    messages: &[Incoming],
    deadline: DateTime<Utc>,
) -> BatchReport {
    batch::run(messages, dead, |event: OrderEvent| async move {
        provisioner
            .process(&event, Utc::now(), deadline)
            .await
            .map(drop)
    })
    .await
}
