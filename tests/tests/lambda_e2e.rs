//! The real `ingest`, `provision` and `align` binaries under `cargo lambda watch`, against moto
//! (DynamoDB, SQS) and the in-process Notion simulator.
//!
//! The test plays the parts AWS plays in production: the function URL is cargo-lambda's
//! `/lambda-url/ingest/...`, and the event source mappings are this test, which receives from a
//! queue in moto, invokes the function with the `SqsEvent` an event source mapping would build,
//! and deletes the messages the function did not report as failed.
//!
//! It needs `<repo>/.venv` with moto and cargo-lambda. The first invocation of each function
//! waits for cargo to build it: allow several minutes on a cold target directory.
//!
//! Also here: a quick check that `infra/events/*.json` hold real messages. Run it with
//! `ENROLL_BLESS_FIXTURES=1` to rewrite them from the types.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use enroll_core::event::{AlignRequest, Buyer, EventKind, OrderEvent};
use enroll_core::ids::{
    BuyerEmail, EventId, EventKey, NotionUserId, OrderId, OrderKey, Platform, PlatformProductRef,
    ProductId,
};
use enroll_platforms::{sample, Sample};
use enroll_simulator::{
    DataSource, Database, Group, PropertyKind, PropertyValue, SimConfig, SimHandle, SimState, User,
};
use enroll_tests::event_source::{batch_failures, deliver, Source};
use enroll_tests::lambda_watch::{self, LambdaWatch};
use enroll_tests::moto::{self, REGION};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

const SCIM_TOKEN: &str = "scim-e2e-token";
const NOTION_TOKEN: &str = "secret_e2e_notion";
const STRIPE_SECRET: &str = "whsec_e2e_stripe_signing_secret";
/// `whsec_` and base64, as Standard Webhooks senders hand it out.
const STANDARD_SECRET: &str = "whsec_ZTJlLXN0YW5kYXJkLXNpZ25pbmcta2V5LTAxMjM0NTY3";
const DATABASE_ID: &str = "3c9e1f0a-5b7d-4e2a-8f61-0d4c2b7a9e15";
const DATA_SOURCE_ID: &str = "8b2f6d1e-4a3c-4f5b-9e7d-1c0a2b3d4e5f";
const MASTERY_GROUP: &str = "Notion Mastery";
const FORMULA_GROUP: &str = "Formula Fundamentals";

const USER_ID_PROPERTY: &str = "Notion User ID";
const SCIM_USER_CREATES: &str = "POST /scim/v2/Users";
const SCIM_GROUP_PATCHES: &str = "PATCH /scim/v2/Groups/{id}";

// The buyer the fixtures in infra/events describe; the test seeds them as an existing member.
const FIXTURE_EMAIL: &str = "grace.hopper@example.com";
const FIXTURE_NAME: &str = "Grace Hopper";
const FIXTURE_USER_ID: &str = "0f8e3b52-7c4d-4a1e-9b6f-2d5c8a7e1b34";
const FIXTURE_EVENT_ID: &str = "evt_1QfixtureEnrollE2e0001";
const FIXTURE_ORDER_ID: &str = "pi_3QfixtureEnrollE2e0001";
const FIXTURE_PRODUCT: &str = "formula-fundamentals";
const FIXTURE_QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:enroll-provision";
const FIXTURE_ALIGN_QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:enroll-align";

fn config_toml(sim: &SimHandle) -> String {
    format!(
        r#"
[scim]
base_url = "{scim}"
token = "{SCIM_TOKEN}"

[notion]
base_url = "{notion}"
token = "{NOTION_TOKEN}"
database_id = "{DATABASE_ID}"

[rate]
requests_per_second = 50
burst = 10

[platforms.stripe]
secrets = ["{STRIPE_SECRET}"]

[platforms.standard]
secrets = ["{STANDARD_SECRET}"]

[[products]]
id = "notion-mastery"
name = "Notion Mastery"
platform_ids = {{ stripe = ["price_1E2eMastery"] }}
groups = [{{ name = "{MASTERY_GROUP}" }}]
access_months = 12

[[products]]
id = "{FIXTURE_PRODUCT}"
name = "Formula Fundamentals"
groups = [{{ name = "{FORMULA_GROUP}" }}]
"#,
        scim = sim.scim_base_url(),
        notion = sim.notion_base_url(),
    )
}

fn seed() -> SimState {
    let group = |name: &str| Group {
        id: uuid::Uuid::new_v4().to_string(),
        display_name: name.into(),
        external_id: None,
        members: Vec::new(),
        created: Utc::now(),
        last_modified: Utc::now(),
    };
    // A member of the workspace already, in no Group: the buyer the fixtures describe.
    let grace: User = serde_json::from_value(json!({
        "id": FIXTURE_USER_ID,
        "user_name": FIXTURE_EMAIL,
        "display_name": FIXTURE_NAME,
        "emails": [{ "value": FIXTURE_EMAIL, "primary": true }],
    }))
    .expect("a valid seed user");
    SimState {
        users: vec![grace],
        groups: vec![group(MASTERY_GROUP), group(FORMULA_GROUP), group("Staff")],
        databases: vec![Database {
            id: DATABASE_ID.into(),
            title: "Sales".into(),
            data_sources: vec![DataSource {
                id: DATA_SOURCE_ID.into(),
                name: "Sales".into(),
                properties: BTreeMap::from([
                    ("Name".to_owned(), PropertyKind::Title),
                    ("Email".to_owned(), PropertyKind::Email),
                    ("Order ID".to_owned(), PropertyKind::RichText),
                    (USER_ID_PROPERTY.to_owned(), PropertyKind::RichText),
                ]),
            }],
            created_time: Utc::now(),
            last_edited_time: Utc::now(),
        }],
        pages: Vec::new(),
    }
}

/// The Groups (display names, sorted) that have `user_id` as a member.
fn groups_of(sim: &SimHandle, user_id: &str) -> Vec<String> {
    let mut names: Vec<String> = sim
        .state()
        .groups
        .into_iter()
        .filter(|g| g.members.iter().any(|m| m == user_id))
        .map(|g| g.display_name)
        .collect();
    names.sort();
    names
}

/// Live pages of the sales data source whose Notion User ID property is `user_id`.
fn pages_with_user_id(sim: &SimHandle, user_id: &str) -> usize {
    sim.state()
        .pages
        .iter()
        .filter(|p| p.data_source_id == DATA_SOURCE_ID && !p.in_trash)
        .filter(|p| {
            p.properties
                .get(USER_ID_PROPERTY)
                .and_then(PropertyValue::plain_text)
                .as_deref()
                == Some(user_id)
        })
        .count()
}

fn counter(sim: &SimHandle, endpoint: &str) -> u64 {
    sim.counters().get(endpoint).copied().unwrap_or(0)
}

fn step(started: Instant, what: &str) {
    eprintln!(
        "[lambda_e2e {:>6.1}s] {what}",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stripe_purchase_goes_through_the_real_lambda_binaries() -> Result<()> {
    let started = Instant::now();
    let bins = ["ingest", "provision", "align"];
    tokio::task::spawn_blocking(move || lambda_watch::prebuild(&bins))
        .await?
        .context("step 0: pre-building the function binaries")?;
    step(started, "binaries built");

    // Step 1: moto, the table, the two queue pairs, the simulator.
    let sdk = moto::sdk_config().await;
    let table = moto::unique("enroll-e2e");
    enroll_aws::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table)
        .await
        .context("step 1: creating the table")?;
    let provision_q = Source::new().await.context("step 1: provision queue")?;
    let align_q = Source::new().await.context("step 1: align queue")?;
    let sim = enroll_simulator::start(
        SimConfig {
            scim_token: SCIM_TOKEN.into(),
            notion_token: NOTION_TOKEN.into(),
            scim_rate_limit: None,
            notion_rate_limit: None,
            admin_token: None,
            max_members_per_patch: None,
            state: seed(),
        },
        "127.0.0.1:0".parse()?,
    )
    .await
    .context("step 1: starting the simulator")?;

    // Step 2: the watcher, with everything the functions read from their environment.
    let env = [
        ("AWS_ENDPOINT_URL", moto::endpoint().to_owned()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_DEFAULT_REGION", REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("ENROLL_CONFIG", config_toml(&sim)),
        ("ENROLL_TABLE", table.clone()),
        ("ENROLL_PROVISION_QUEUE_URL", provision_q.pair.url.clone()),
        ("ENROLL_PROVISION_DLQ_URL", provision_q.pair.dlq_url.clone()),
        ("ENROLL_ALIGN_QUEUE_URL", align_q.pair.url.clone()),
        ("ENROLL_ALIGN_DLQ_URL", align_q.pair.dlq_url.clone()),
    ];
    let mut watch = LambdaWatch::start(&env)
        .await
        .context("step 2: starting cargo lambda watch")?;
    step(
        started,
        &format!(
            "cargo lambda watch listens on {} (log: {})",
            watch.port(),
            watch.log_path().display()
        ),
    );

    // Cold starts, without side effects: a GET on the webhook path, empty batches.
    let (status, body) = watch
        .get_url("ingest", "/webhooks/stripe")
        .await
        .context("step 2: starting ingest")?;
    assert_eq!(status, 200, "step 2: ingest's readiness GET: {body}");
    step(started, "ingest started");
    for function in ["provision", "align"] {
        let response = watch
            .invoke(function, &json!({ "Records": [] }))
            .await
            .with_context(|| format!("step 2: starting {function}"))?;
        assert!(
            batch_failures(&response)?.is_empty(),
            "step 2: {function} on an empty batch: {response}"
        );
        step(started, &format!("{function} started"));
    }

    // Step 3: a tampered webhook is refused and enqueues nothing; the genuine one is accepted.
    let email = format!("{}@example.com", moto::unique("buyer"));
    let purchase = |now: DateTime<Utc>| {
        sample(
            Platform::Stripe,
            &Sample {
                kind: EventKind::Purchase,
                product: "price_1E2eMastery".into(),
                email: email.clone(),
                name: Some("Ada Lovelace".into()),
                order_id: Some("pi_3E2eLambdaOrder0001".into()),
                event_id: Some("evt_1E2eLambdaEvent0001".into()),
            },
            STRIPE_SECRET,
            now,
        )
    };
    let genuine = purchase(Utc::now());
    let tampered_body = String::from_utf8(genuine.body.clone())?.replace("19900", "100");
    assert_ne!(tampered_body.as_bytes(), genuine.body.as_slice());
    let (status, body) = watch
        .post_url(
            "ingest",
            "/webhooks/stripe",
            &genuine.headers,
            tampered_body.into_bytes(),
        )
        .await
        .context("step 3: posting the tampered webhook")?;
    assert_eq!(
        status, 401,
        "step 3: a tampered webhook must be refused: {body}"
    );
    let queued = provision_q.visible(&provision_q.pair.url).await?;
    assert!(
        queued.is_empty(),
        "step 3: a refused webhook enqueued {} message(s)",
        queued.len()
    );

    let (status, body) = watch
        .post_url(
            "ingest",
            "/webhooks/stripe",
            &genuine.headers,
            genuine.body.clone(),
        )
        .await
        .context("step 3: posting the signed webhook")?;
    assert_eq!(
        status, 202,
        "step 3: the signed webhook must be accepted: {body}"
    );
    step(started, "webhooks: tampered 401, genuine 202");

    // Step 4: provision, then align, as their event source mappings would run them.
    let delivered = deliver(&mut watch, "provision", &provision_q, 1)
        .await
        .context("step 4: provision")?;
    assert_eq!(
        delivered.len(),
        1,
        "step 4: one event in the provision queue"
    );
    let event: OrderEvent = serde_json::from_str(&delivered[0])
        .context("step 4: the provision message is an OrderEvent")?;
    assert_eq!(event.key.as_string(), "stripe:evt_1E2eLambdaEvent0001");
    assert_eq!(
        event.buyer.as_ref().map(|b| b.email.as_str()),
        Some(email.as_str())
    );
    step(started, "provision ran");

    let delivered = deliver(&mut watch, "align", &align_q, 1)
        .await
        .context("step 4: align")?;
    assert_eq!(delivered.len(), 1, "step 4: one request in the align queue");
    let align: AlignRequest = serde_json::from_str(&delivered[0])
        .context("step 4: the align message is an AlignRequest")?;
    assert_eq!(align.email.as_str(), email);
    step(started, "align ran");

    // Step 5: the buyer is a member, in exactly the product's Group, with one sales row.
    let user = sim
        .user_by_email(&email)
        .expect("step 5: provision created a SCIM user for the buyer");
    assert!(user.is_member(), "step 5: the buyer is an active member");
    assert_eq!(user.user_name.to_lowercase(), email);
    assert_eq!(align.notion_user_id.as_str(), user.id);
    assert_eq!(
        groups_of(&sim, &user.id),
        [MASTERY_GROUP],
        "step 5: the buyer is in exactly the product's Group"
    );
    assert_eq!(
        pages_with_user_id(&sim, &user.id),
        1,
        "step 5: one sales page holds the buyer's Notion user id"
    );

    // The platform delivers the same event again (re-signed, as a retry is): nothing changes.
    let creates = counter(&sim, SCIM_USER_CREATES);
    let patches = counter(&sim, SCIM_GROUP_PATCHES);
    assert_eq!(creates, 1, "step 5: one SCIM user created so far");
    assert!(patches >= 1, "step 5: the buyer was added to a Group");
    let again = purchase(Utc::now());
    let (status, body) = watch
        .post_url("ingest", "/webhooks/stripe", &again.headers, again.body)
        .await
        .context("step 5: posting the redelivery")?;
    assert_eq!(status, 202, "step 5: the redelivery is accepted: {body}");
    let delivered = deliver(&mut watch, "provision", &provision_q, 1)
        .await
        .context("step 5: provision on the redelivery")?;
    assert_eq!(delivered.len(), 1);
    // Whatever provision passed on goes through align too, as in production.
    deliver(&mut watch, "align", &align_q, 0)
        .await
        .context("step 5: align after the redelivery")?;
    assert_eq!(
        counter(&sim, SCIM_USER_CREATES),
        creates,
        "step 5: no second POST /Users on a redelivery"
    );
    assert_eq!(
        counter(&sim, SCIM_GROUP_PATCHES),
        patches,
        "step 5: no second Group PATCH on a redelivery"
    );
    assert_eq!(groups_of(&sim, &user.id), [MASTERY_GROUP]);
    assert_eq!(pages_with_user_id(&sim, &user.id), 1);
    step(started, "redelivery changed nothing");

    // Step 6: a body that is not JSON is parked with its reason, not retried.
    provision_q
        .pair
        .client
        .send_message()
        .queue_url(&provision_q.pair.url)
        .message_body("this is not an order event")
        .send()
        .await?;
    deliver(&mut watch, "provision", &provision_q, 1)
        .await
        .context("step 6: provision on a malformed body")?;
    let parked = provision_q.visible(&provision_q.pair.dlq_url).await?;
    assert_eq!(
        parked.len(),
        1,
        "step 6: the malformed message is in the DLQ"
    );
    assert_eq!(parked[0].body, "this is not an order event");
    let why = parked[0]
        .parked()
        .expect("step 6: the parked message carries enroll.reason");
    assert!(!why.why.reason.is_empty(), "step 6: a reason is recorded");
    assert_eq!(why.source.as_deref(), Some("provision"));
    assert!(
        provision_q.visible(&provision_q.pair.url).await?.is_empty(),
        "step 6: nothing left in the provision queue"
    );
    step(
        started,
        &format!("malformed body parked: {}", why.why.reason),
    );

    // Step 7: the committed fixtures, through `cargo lambda invoke --data-file` as a person
    // would run them. Grace is a seeded member whose id the align fixture names.
    let out = watch
        .cargo_lambda_invoke("provision", &events_dir().join("sqs-provision.json"))
        .await
        .context("step 7: cargo lambda invoke provision")?;
    let response: Value = serde_json::from_str(out.trim())
        .with_context(|| format!("step 7: provision's output is JSON: {out}"))?;
    assert!(
        batch_failures(&response)?.is_empty(),
        "step 7: the provision fixture succeeds: {response}"
    );
    assert_eq!(groups_of(&sim, FIXTURE_USER_ID), [FORMULA_GROUP]);
    let out = watch
        .cargo_lambda_invoke("align", &events_dir().join("sqs-align.json"))
        .await
        .context("step 7: cargo lambda invoke align")?;
    let response: Value = serde_json::from_str(out.trim())
        .with_context(|| format!("step 7: align's output is JSON: {out}"))?;
    assert!(
        batch_failures(&response)?.is_empty(),
        "step 7: the align fixture succeeds: {response}"
    );
    // Provision's own align request for Grace names the same id: it changes nothing.
    let delivered = deliver(&mut watch, "align", &align_q, 1)
        .await
        .context("step 7: align on provision's request")?;
    let request: AlignRequest = serde_json::from_str(&delivered[0])?;
    assert_eq!(request.notion_user_id.as_str(), FIXTURE_USER_ID);
    assert_eq!(pages_with_user_id(&sim, FIXTURE_USER_ID), 1);
    assert!(
        provision_q.visible(&align_q.pair.dlq_url).await?.is_empty(),
        "step 7: nothing parked by align"
    );
    step(started, "fixtures invoked");

    // Step 8: each invocation ended with Embedded Metric Format lines on stdout, which the
    // watcher's log holds as CloudWatch Logs would: valid, in namespace Enroll, by function,
    // and without the buyer's address.
    let log = std::fs::read_to_string(watch.log_path()).context("step 8: reading the log")?;
    let data = enroll_tests::emf::blocks(&log)
        .map_err(|e| anyhow::anyhow!("step 8: an invalid EMF line: {e}"))?;
    let from = |name: &str, function: &str| -> Vec<f64> {
        data.iter()
            .filter(|d| d.namespace == "Enroll" && d.name == name)
            .filter(|d| d.dimensions.first() == Some(&("Function".into(), function.into())))
            .flat_map(|d| d.values.clone())
            .collect()
    };
    let sum = |name: &str, function: &str| from(name, function).iter().sum::<f64>();
    assert_eq!(sum("WebhooksAccepted", "ingest"), 2.0, "step 8: {data:?}");
    let refused: Vec<_> = data
        .iter()
        .filter(|d| d.name == "WebhooksRejected")
        .map(|d| d.dimensions.clone())
        .collect();
    assert_eq!(
        refused,
        [vec![
            ("Function".to_owned(), "ingest".to_owned()),
            ("Reason".to_owned(), "signature".to_owned())
        ]],
        "step 8: the tampered webhook, by reason"
    );
    let waits = from("TimeToAccessMs", "provision");
    assert_eq!(
        waits.len(),
        1,
        "step 8: one purchase reached access from a webhook (the fixture has no accepted_at)"
    );
    assert!(sum("EventsApplied", "provision") >= 2.0);
    assert_eq!(
        sum("EventsDuplicate", "provision"),
        1.0,
        "step 8: the redelivery"
    );
    assert_eq!(
        sum("EventsParked", "provision"),
        1.0,
        "step 8: the malformed body"
    );
    assert!(sum("ScimRequests", "provision") >= 2.0);
    assert!(sum("NotionApiRequests", "align") >= 1.0);
    assert!(sum("RecordsAligned", "align") >= 1.0);
    for line in log.lines().filter(|l| l.contains("\"_aws\"")) {
        assert!(
            !line.contains('@') && !line.contains(&email),
            "step 8: an address in a metric line: {line}"
        );
    }
    step(
        started,
        &format!("EMF: {} metric values checked", data.len()),
    );

    drop(watch);
    step(started, "watcher stopped");
    Ok(())
}

// ---- The fixtures in infra/events ----

fn events_dir() -> PathBuf {
    lambda_watch::workspace_root().join("infra/events")
}

fn fixture_order_event() -> OrderEvent {
    OrderEvent {
        key: EventKey::new(
            Platform::Stripe,
            EventId::parse(FIXTURE_EVENT_ID).expect("event id"),
        ),
        kind: EventKind::Purchase,
        order: OrderKey {
            platform: Platform::Stripe,
            order_id: OrderId::parse(FIXTURE_ORDER_ID).expect("order id"),
        },
        buyer: Some(Buyer {
            email: BuyerEmail::parse(FIXTURE_EMAIL).expect("email"),
            name: Some(FIXTURE_NAME.into()),
        }),
        items: vec![PlatformProductRef::parse(FIXTURE_PRODUCT).expect("product ref")],
        occurred_at: "2026-01-15T10:30:00Z".parse().expect("timestamp"),
        accepted_at: None,
    }
}

fn fixture_align_request() -> AlignRequest {
    let event = fixture_order_event();
    AlignRequest {
        source: event.key,
        order: event.order,
        email: BuyerEmail::parse(FIXTURE_EMAIL).expect("email"),
        name: Some(FIXTURE_NAME.into()),
        notion_user_id: NotionUserId::parse(FIXTURE_USER_ID).expect("user id"),
        products: vec![ProductId::parse(FIXTURE_PRODUCT).expect("product id")],
    }
}

/// One record as an event source mapping delivers it.
fn sqs_event(message_id: &str, body: &str, queue_arn: &str) -> Value {
    json!({
        "Records": [{
            "messageId": message_id,
            "receiptHandle": "AQEBfixtureReceiptHandleNotValidForDeleteMessage==",
            "body": body,
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": "1768473000000",
                "SenderId": "AROAEXAMPLEINGEST:ingest",
                "ApproximateFirstReceiveTimestamp": "1768473000100"
            },
            "messageAttributes": {},
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": REGION
        }]
    })
}

fn expected_fixtures() -> Result<Vec<(&'static str, Value)>> {
    Ok(vec![
        (
            "sqs-provision.json",
            sqs_event(
                "5f0c2a8e-3d1b-4e6f-a7c9-1b2d3e4f5a60",
                &serde_json::to_string(&fixture_order_event())?,
                FIXTURE_QUEUE_ARN,
            ),
        ),
        (
            "sqs-align.json",
            sqs_event(
                "7a1e4c9d-2b3f-4d5e-8f6a-0c1b2d3e4f71",
                &serde_json::to_string(&fixture_align_request())?,
                FIXTURE_ALIGN_QUEUE_ARN,
            ),
        ),
    ])
}

#[test]
fn event_fixtures_hold_real_messages() -> Result<()> {
    let bless = std::env::var_os("ENROLL_BLESS_FIXTURES").is_some();
    for (name, expected) in expected_fixtures()? {
        let path = events_dir().join(name);
        if bless {
            std::fs::write(&path, serde_json::to_string_pretty(&expected)? + "\n")?;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{} (ENROLL_BLESS_FIXTURES=1 writes it)", path.display()))?;
        let found: Value = serde_json::from_str(&text)?;
        assert_eq!(
            found,
            expected,
            "{} is out of date: rerun with ENROLL_BLESS_FIXTURES=1",
            path.display()
        );
        let body = found["Records"][0]["body"].as_str().expect("a body");
        match name {
            "sqs-provision.json" => {
                serde_json::from_str::<OrderEvent>(body)?;
            }
            _ => {
                serde_json::from_str::<AlignRequest>(body)?;
            }
        }
    }
    Ok(())
}
