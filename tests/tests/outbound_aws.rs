//! Outbound events on the AWS path: the real `notify` binary under `cargo lambda watch`, its
//! FIFO queue and FIFO dead-letter queue and its table in moto, deliveries sent by the adapter
//! provision uses ([`SqsDeliveryQueue`]), and the reference receiver (tests/outbound_receiver.py).
//!
//! The test plays the event source mapping: it receives from the queue, invokes the function
//! with the `SqsEvent` Lambda would build, and deletes what the function did not report as
//! failed. A failed delivery comes back when its retry's visibility change runs out.

use anyhow::{Context, Result};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use enroll_aws::outbound::SqsDeliveryQueue;
use enroll_core::ids::BuyerEmail;
use enroll_core::outbound::{Delivery, DeliveryQueue, EventData, EventType, Notification};
use enroll_core::ports::HistoryLog;
use enroll_tests::lambda_watch::{self, LambdaWatch};
use enroll_tests::moto::{self, REGION};
use enroll_tests::outbound_receiver::Receiver;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn config(receiver: &Receiver) -> String {
    format!(
        r#"
[notion]
database_id = "db-outbound-aws"

[[products]]
id = "course"
name = "Course"
groups = [{{ name = "Course" }}]
{}"#,
        receiver.outbound_toml()
    )
}

fn delivery(email: &str, endpoint: &str) -> Result<Delivery> {
    let n = Notification {
        seq: 1,
        event_type: EventType::Granted,
        at: chrono::Utc::now(),
        data: EventData {
            email: BuyerEmail::parse(email)?,
            notion_user_id: Some("u-1".into()),
            groups: vec!["Course".into()],
            added: vec!["Course".into()],
            removed: vec![],
            product: Some("course".into()),
            order: Some("ord_aws".into()),
            platform: Some("stripe".into()),
        },
    };
    Ok(Delivery::new(&n, endpoint))
}

/// A FIFO queue and its FIFO dead-letter queue, as the template declares them.
async fn fifo_pair(sqs: &aws_sdk_sqs::Client) -> Result<(String, String, String)> {
    let name = moto::unique("enroll-notify");
    let fifo = (QueueAttributeName::FifoQueue, "true".to_owned());
    let dlq = moto::create_queue(
        sqs,
        &format!("{name}-dlq.fifo"),
        std::slice::from_ref(&fifo),
    )
    .await?;
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .context("no QueueArn")?;
    let redrive = json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": 41 });
    let url = moto::create_queue(
        sqs,
        &format!("{name}.fifo"),
        &[
            fifo,
            (QueueAttributeName::RedrivePolicy, redrive.to_string()),
            (QueueAttributeName::VisibilityTimeout, "180".to_owned()),
        ],
    )
    .await?;
    Ok((url, dlq, dlq_arn))
}

/// Receives one message (waiting up to `within`) and hands it to the function as its event
/// source mapping would; deletes it unless reported failed. Answers the failures.
async fn one_round(
    watch: &mut LambdaWatch,
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    within: Duration,
) -> Result<Vec<Value>> {
    let until = Instant::now() + within;
    let m = loop {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(1)
            .wait_time_seconds(5)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await?;
        if let Some(m) = out.messages.unwrap_or_default().into_iter().next() {
            break m;
        }
        anyhow::ensure!(Instant::now() < until, "nothing came back in {within:?}");
    };
    let attributes: serde_json::Map<String, Value> = m
        .attributes
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.as_str().to_owned(), Value::String(v)))
        .collect();
    let event = json!({ "Records": [{
        "messageId": m.message_id,
        "receiptHandle": m.receipt_handle,
        "body": m.body,
        "attributes": attributes,
        "messageAttributes": {},
        "md5OfBody": m.md5_of_body,
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:notify.fifo",
        "awsRegion": REGION,
    }]});
    let response = watch.invoke("notify", &event).await?;
    let failures = response["batchItemFailures"]
        .as_array()
        .with_context(|| format!("not a partial batch response: {response}"))?
        .clone();
    if failures.is_empty() {
        enroll_aws::delete(sqs, url, m.receipt_handle.as_deref().unwrap_or_default()).await?;
    }
    Ok(failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notify_binary_retries_a_500_with_the_same_id_and_parks_a_400_in_its_fifo_dlq(
) -> Result<()> {
    tokio::task::spawn_blocking(|| lambda_watch::prebuild(&["notify"]))
        .await?
        .context("building notify")?;
    let dir = enroll_tests::enroll_bin::scratch_dir("outbound-aws");
    // The first delivery fails once then lands; the second is refused.
    let receiver = Receiver::start(&dir, "500,200,400")?;
    let sdk = moto::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let table = moto::unique("enroll-notify");
    let dynamo = moto::create_table(&sdk, &table).await?;
    let (url, dlq, _) = fifo_pair(&sqs).await?;
    let cfg_text = config(&receiver);
    let cfg = enroll_core::config::Config::from_toml(&cfg_text, |_| None)?;
    let endpoint = cfg.outbound[0].key();

    let env = [
        ("AWS_ENDPOINT_URL", moto::endpoint().to_owned()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_DEFAULT_REGION", REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("ENROLL_CONFIG", cfg_text.clone()),
        ("ENROLL_TABLE", table.clone()),
        ("ENROLL_NOTIFY_QUEUE_URL", url.clone()),
        ("ENROLL_NOTIFY_DLQ_URL", dlq.clone()),
    ];
    let mut watch = LambdaWatch::start(&env).await?;
    let queue = SqsDeliveryQueue::new(sqs.clone(), &url);
    let first = delivery("ana.aws@example.com", &endpoint)?;
    queue.send_delivery(&first).await?;

    // Attempt 1: 500, reported failed, back after its backoff (about 30 s).
    let failed = one_round(&mut watch, &sqs, &url, Duration::from_secs(60)).await?;
    assert_eq!(failed.len(), 1, "the 500 is a batch item failure");
    let failed = one_round(&mut watch, &sqs, &url, Duration::from_secs(180)).await?;
    assert!(failed.is_empty(), "{failed:?}");
    let got = receiver.attempts();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got.iter().all(|a| a["verified"] == true), "{got:#?}");
    assert_eq!(got[0]["webhook_id"], got[1]["webhook_id"]);
    assert_eq!(got[0]["webhook_id"], first.webhook_id.as_str());
    assert_eq!(
        (got[0]["status"].clone(), got[1]["status"].clone()),
        (json!(500), json!(200))
    );
    assert_eq!(got[1]["body"]["data"]["email"], "ana.aws@example.com");

    // A 400: parked in the FIFO dead-letter queue with its reason, nothing left to retry.
    queue
        .send_delivery(&delivery("ben.aws@example.com", &endpoint)?)
        .await?;
    let failed = one_round(&mut watch, &sqs, &url, Duration::from_secs(60)).await?;
    assert!(failed.is_empty(), "a parked delivery is acknowledged");
    let parked = enroll_aws::receive_batch(
        &sqs,
        &dlq,
        enroll_aws::ReceiveOptions {
            wait_seconds: 2,
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(parked.len(), 1);
    let why = parked[0].parked().context("parked with its reason")?;
    assert!(why.why.reason.contains("HTTP 400"), "{why:?}");
    assert_eq!(receiver.attempts().len(), 3);

    // The buyer's history in the table shows both attempts of the first delivery.
    let history = enroll_aws::DynamoHistory::new(dynamo, &table)
        .history(&BuyerEmail::parse("ana.aws@example.com")?)
        .await?;
    let lines: Vec<&str> = history.iter().map(|h| h.what.as_str()).collect();
    assert!(
        lines.iter().any(|l| l.starts_with("failed access.granted")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("delivered access.granted")),
        "{lines:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
