//! `SqsQueue`, `SqsDeadLetters` and the receive/delete helpers against moto: redrive after
//! `maxReceiveCount`, parking with readable reasons, and replay from the dead-letter queue.

use anyhow::Result;
use chrono::{TimeDelta, Utc};
use enroll_aws::sqs::{ATTR_BUYER, ATTR_REASON, MAX_REASON_CHARS};
use enroll_aws::{
    delete, receive_batch, ReceiveOptions, ReceivedMessage, SqsDeadLetters, SqsQueue,
};
use enroll_core::ports::{DeadLetters, ParkedReason, Queue};
use enroll_tests::moto::{self, QueuePair};

/// Receives whatever is visible right now, at most one batch.
async fn receive(pair: &QueuePair, url: &str) -> Result<Vec<ReceivedMessage>> {
    Ok(receive_batch(&pair.client, url, ReceiveOptions::default()).await?)
}

#[tokio::test]
async fn a_sent_message_is_received_once_and_deleted() -> Result<()> {
    let pair = moto::queue_with_dlq(3, 30).await?;
    let queue = SqsQueue::new(pair.client.clone(), &pair.url);
    queue.send(r#"{"event":"stripe:evt_1"}"#).await?;

    // Visible again at once, so the empty receive below proves the delete.
    let visible_again = ReceiveOptions {
        visibility_timeout: Some(0),
        ..ReceiveOptions::default()
    };
    let got = receive_batch(&pair.client, &pair.url, visible_again).await?;
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.body, r#"{"event":"stripe:evt_1"}"#);
    assert_eq!(m.receive_count, 1);
    let sent = m.sent_at.expect("SentTimestamp requested");
    assert!((Utc::now() - sent).abs() < TimeDelta::minutes(1));
    assert_eq!(m.parked(), None);

    delete(&pair.client, &pair.url, &m.receipt_handle).await?;
    assert!(receive(&pair, &pair.url).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_message_received_max_receive_count_times_is_redriven_to_the_dlq() -> Result<()> {
    let max_receive_count = 2;
    let pair = moto::queue_with_dlq(max_receive_count, 30).await?;
    SqsQueue::new(pair.client.clone(), &pair.url)
        .send("poison")
        .await?;

    // Each failed attempt hands the message back at once, as a failed batch item would after
    // its visibility timeout.
    let mut receives = 0;
    for _ in 0..=max_receive_count + 1 {
        let got = receive(&pair, &pair.url).await?;
        let Some(m) = got.first() else { break };
        receives += 1;
        assert_eq!(m.receive_count, receives);
        pair.client
            .change_message_visibility()
            .queue_url(&pair.url)
            .receipt_handle(&m.receipt_handle)
            .visibility_timeout(0)
            .send()
            .await?;
    }
    assert_eq!(receives, max_receive_count);

    let parked = receive(&pair, &pair.dlq_url).await?;
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].body, "poison");
    // Redrive records no reason: that is how an operator tells it from a parked message.
    assert_eq!(parked[0].parked(), None);
    Ok(())
}

#[tokio::test]
async fn park_puts_the_message_in_the_dlq_at_once_with_its_reason() -> Result<()> {
    let pair = moto::queue_with_dlq(5, 30).await?;
    let dead = SqsDeadLetters::new(pair.client.clone(), &pair.dlq_url, "provision");
    let long_reason = format!(
        "permanent failure: unknown Group \"Alumni\" {}",
        "x".repeat(1500)
    );
    let before = Utc::now() - TimeDelta::seconds(1);
    dead.park(
        r#"{"event":"stripe:evt_9"}"#,
        &ParkedReason {
            reason: long_reason.clone(),
            event_key: Some("stripe:evt_9".into()),
            buyer: Some("a***@e***.com".into()),
        },
    )
    .await?;
    dead.park(
        "second",
        &ParkedReason {
            reason: "bad body".into(),
            event_key: None,
            buyer: None,
        },
    )
    .await?;

    // Nothing went through the source queue.
    assert!(receive(&pair, &pair.url).await?.is_empty());
    let mut got = receive(&pair, &pair.dlq_url).await?;
    got.sort_by_key(|m| m.body.len());
    assert_eq!(got.len(), 2);

    let first = got[1].parked().expect("parked attributes");
    assert_eq!(got[1].body, r#"{"event":"stripe:evt_9"}"#);
    assert_eq!(first.why.reason.chars().count(), MAX_REASON_CHARS);
    assert!(long_reason.starts_with(&first.why.reason));
    assert_eq!(first.why.event_key.as_deref(), Some("stripe:evt_9"));
    assert_eq!(first.why.buyer.as_deref(), Some("a***@e***.com"));
    assert_eq!(first.source.as_deref(), Some("provision"));
    let at = first.parked_at.expect("parked_at is RFC 3339");
    assert!(at >= before && at <= Utc::now() + TimeDelta::seconds(1));

    let second = got[0].parked().expect("parked attributes");
    assert_eq!(second.why.reason, "bad body");
    assert_eq!(second.why.event_key, None);
    assert!(!got[0].attributes.contains_key(ATTR_BUYER));
    assert!(got[0].attributes.contains_key(ATTR_REASON));
    Ok(())
}

#[tokio::test]
async fn replay_moves_a_parked_message_back_as_a_new_message() -> Result<()> {
    let pair = moto::queue_with_dlq(5, 30).await?;
    let dead = SqsDeadLetters::new(pair.client.clone(), &pair.dlq_url, "align");
    dead.park(
        "retry me",
        &ParkedReason {
            reason: "Notion was down".into(),
            event_key: Some("paddle:ntf_1".into()),
            buyer: None,
        },
    )
    .await?;

    // What `enroll dlq replay` does where StartMessageMoveTask is unavailable.
    let source = SqsQueue::new(pair.client.clone(), &pair.url);
    let parked = receive(&pair, &pair.dlq_url).await?;
    assert_eq!(parked.len(), 1);
    for m in &parked {
        source.send(&m.body).await?;
        delete(&pair.client, &pair.dlq_url, &m.receipt_handle).await?;
    }

    let replayed = receive(&pair, &pair.url).await?;
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].body, "retry me");
    assert_ne!(replayed[0].message_id, parked[0].message_id);
    assert_eq!(replayed[0].receive_count, 1);
    Ok(())
}

#[tokio::test]
async fn sending_to_a_missing_queue_is_a_permanent_failure() -> Result<()> {
    let pair = moto::queue_with_dlq(1, 30).await?;
    let url = pair.url.replace("enroll-", "enroll-missing-");
    let err = SqsQueue::new(pair.client.clone(), url)
        .send("x")
        .await
        .unwrap_err();
    assert!(err.is_permanent(), "{err}");
    Ok(())
}

#[tokio::test]
async fn a_cold_start_names_queue_settings_that_break_the_stage_timings() -> anyhow::Result<()> {
    use enroll_core::timings::PROVISION;
    // As template.yaml sets the provision queue: nothing to report.
    let good = enroll_tests::moto::queue_with_dlq(5, 360).await?;
    assert!(
        enroll_aws::lambda_env::check_queue_timings(&good.client, &good.url, &PROVISION)
            .await
            .is_empty()
    );
    // Changed by hand: a visibility shorter than 6 claims, and another receive limit.
    let bad = enroll_tests::moto::queue_with_dlq(3, 30).await?;
    let problems =
        enroll_aws::lambda_env::check_queue_timings(&bad.client, &bad.url, &PROVISION).await;
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("VisibilityTimeout is 30 s"),
        "{problems:?}"
    );
    assert!(problems[1].contains("maxReceiveCount is 3"), "{problems:?}");
    Ok(())
}
