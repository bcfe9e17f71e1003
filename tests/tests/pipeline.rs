//! The embedded pipeline end to end: signed webhooks over HTTP, the embedded queues, provision
//! and align, against the Notion simulator's state.

use chrono::Utc;
use enroll_core::config::Config;
use enroll_core::event::EventKind;
use enroll_core::ids::{BuyerEmail, NotionUserId, OrderId, OrderKey, Platform};
use enroll_core::timings::Timings;
use enroll_embedded::config_file;
use enroll_embedded::queue::{ATTR_EVENT_KEY, ATTR_REASON};
use enroll_embedded::runtime::{Options, Runtime};
use enroll_lab::send;
use enroll_platforms::Sample;
use enroll_simulator::{FaultAction, FaultRule, Faults, SimHandle};
use std::sync::Arc;
use std::time::Duration;

const NM: &str = "Notion Mastery";
const FF: &str = "Formula Fundamentals 2.0";

fn config() -> Config {
    let mut c = config_file::load(None).expect("the example configuration is valid");
    c.rate.requests_per_second = 200.0;
    c.rate.burst = 50;
    c
}

async fn runtime() -> Arc<Runtime> {
    Runtime::start(Options {
        config: config(),
        data_dir: None,
        timings: Timings::default(),
        simulate: true,
    })
    .await
    .expect("runtime starts")
}

fn sim(rt: &Runtime) -> &SimHandle {
    rt.simulator.as_ref().expect("simulated workspace")
}

fn groups_of(rt: &Runtime, email: &str) -> Vec<String> {
    let state = sim(rt).state();
    let Some(user) = state
        .users
        .iter()
        .find(|u| u.user_name == email && !u.deleted)
    else {
        return Vec::new();
    };
    let mut g: Vec<String> = state
        .groups
        .iter()
        .filter(|g| g.members.contains(&user.id))
        .map(|g| g.display_name.clone())
        .collect();
    g.sort();
    g
}

fn sample(kind: EventKind, product: &str, email: &str, order: &str, event: &str) -> Sample {
    Sample {
        kind,
        product: product.into(),
        email: email.into(),
        name: Some("Ada Lovelace".into()),
        order_id: Some(order.into()),
        event_id: Some(event.into()),
    }
}

async fn drain(rt: &Runtime) {
    rt.run_until_idle().await.expect("the queues drain");
}

fn fault(method: &str, path: &str, action: FaultAction, remaining: Option<u64>) -> Faults {
    Faults {
        rules: vec![FaultRule {
            method: Some(method.into()),
            path_prefix: Some(path.into()),
            probability: 1.0,
            remaining,
            action,
        }],
        seed: 7,
    }
}

#[tokio::test]
async fn demo_passes_every_check() {
    let report = enroll_lab::demo::run(config(), 200.0)
        .await
        .expect("demo runs");
    let failed: Vec<_> = report.check_list.iter().filter(|c| !c.passed).collect();
    assert!(failed.is_empty(), "failed checks: {failed:?}");
    assert_eq!(report.buyers.len(), 4);
    assert!(report.buyers.iter().filter(|b| b.record_written).count() >= 3);
}

#[tokio::test]
async fn a_signed_webhook_over_http_ends_in_the_group_and_the_sales_record() {
    let rt = runtime().await;
    let (addr, server) = enroll_embedded::server::serve(rt.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = send::webhook_url(&format!("http://{addr}"), Platform::Standard);
    let secret = send::signing_secret(&rt.config, Platform::Standard).unwrap();
    let s = sample(
        EventKind::Purchase,
        "notion-mastery",
        "Zoë.Quote+NM@Example.com",
        "ord_http_1",
        "msg_http_1",
    );
    let (status, body) = send::post(
        &reqwest::Client::new(),
        &url,
        Platform::Standard,
        &s,
        &secret,
    )
    .await
    .unwrap();
    assert_eq!(status, 202, "{body}");
    assert_eq!(rt.provision_queue.len(), 1, "accepted means enqueued");
    drain(&rt).await;

    let email = "zoë.quote+nm@example.com";
    assert_eq!(groups_of(&rt, email), vec![NM.to_owned()]);
    let user = sim(&rt).user_by_email(email).expect("member created").id;
    let state = sim(&rt).state();
    let rows: Vec<_> = state
        .pages
        .iter()
        .filter(|p| format!("{:?}", p.properties.get("Notion User ID")).contains(&user))
        .collect();
    assert_eq!(rows.len(), 1, "one sales record holds the member's id");
    server.abort();
}

#[tokio::test]
async fn a_duplicate_delivery_makes_no_second_scim_write() {
    let rt = runtime().await;
    let ev = sample(
        EventKind::Purchase,
        "price_1FormulaFundamentals",
        "dup@example.com",
        "pi_dup",
        "evt_dup",
    );
    let secret = send::signing_secret(&rt.config, Platform::Stripe).unwrap();
    let out = enroll_platforms::sample(Platform::Stripe, &ev, &secret, Utc::now());
    let req = ingest::WebhookRequest {
        method: "POST".into(),
        path: "/webhooks/stripe".into(),
        query: out.query.clone(),
        headers: out.headers.clone(),
        body: out.body.clone(),
    };
    assert_eq!(rt.ingest.handle(&req, Utc::now()).await.status, 202);
    drain(&rt).await;
    let writes = |rt: &Runtime| -> u64 {
        sim(rt)
            .counters()
            .iter()
            .filter(|(k, _)| !k.starts_with("GET") && k.contains("/scim/"))
            .map(|(_, v)| *v)
            .sum()
    };
    let before = writes(&rt);
    assert!(before >= 2, "create and one Group PATCH happened");
    assert_eq!(rt.ingest.handle(&req, Utc::now()).await.status, 202);
    drain(&rt).await;
    assert_eq!(
        writes(&rt),
        before,
        "the second delivery wrote nothing to SCIM"
    );
    assert_eq!(groups_of(&rt, "dup@example.com"), vec![FF.to_owned()]);
}

#[tokio::test]
async fn create_answering_409_still_ends_in_the_group() {
    let rt = runtime().await;
    // The member already exists in the workspace.
    let mut state = sim(&rt).state();
    state.users.push(
        serde_json::from_value(serde_json::json!({"user_name": "exists@example.com"})).unwrap(),
    );
    sim(&rt).set_state(state);

    // A new buyer is created directly (one request); the member already exists, so the
    // create answers 409 and enroll looks the member up instead.
    let p = &rt.provisioner;
    let event = enroll_core::event::OrderEvent {
        key: enroll_core::ids::EventKey::parse("stripe:evt_409").unwrap(),
        kind: EventKind::Purchase,
        order: OrderKey {
            platform: Platform::Stripe,
            order_id: OrderId::parse("pi_409").unwrap(),
        },
        buyer: Some(enroll_core::event::Buyer {
            email: BuyerEmail::parse("exists@example.com").unwrap(),
            name: None,
        }),
        items: vec![
            enroll_core::ids::PlatformProductRef::parse("price_1NotionMasteryYear").unwrap(),
        ],
        occurred_at: Utc::now(),
        accepted_at: None,
    };
    let outcome = p
        .process(
            &event,
            Utc::now(),
            Utc::now() + chrono::TimeDelta::seconds(30),
        )
        .await
        .unwrap();
    assert!(
        matches!(outcome, provision::Outcome::Applied(ref r) if !r.created),
        "{outcome:?}"
    );
    assert_eq!(
        sim(&rt).counters().get("POST /scim/v2/Users"),
        Some(&1),
        "the create was tried and answered 409"
    );
    assert_eq!(groups_of(&rt, "exists@example.com"), vec![NM.to_owned()]);
    assert_eq!(sim(&rt).state().users.len(), 1, "no second member");
}

#[tokio::test]
async fn transient_failures_retry_and_permanent_ones_are_parked_with_a_reason() {
    let rt = runtime().await;
    let secret = send::signing_secret(&rt.config, Platform::Stripe).unwrap();
    let post = |ev: Sample| {
        let out = enroll_platforms::sample(Platform::Stripe, &ev, &secret, Utc::now());
        ingest::WebhookRequest {
            method: "POST".into(),
            path: "/webhooks/stripe".into(),
            query: out.query,
            headers: out.headers,
            body: out.body,
        }
    };
    // Transient: two 503s on the Group PATCH; the client and the queue retry until it lands.
    sim(&rt).set_faults(fault(
        "PATCH",
        "/scim/v2/Groups",
        FaultAction::Status {
            code: 503,
            retry_after_secs: None,
        },
        Some(4),
    ));
    let r = post(sample(
        EventKind::Purchase,
        "price_1FormulaFundamentals",
        "transient@example.com",
        "pi_t",
        "evt_t",
    ));
    assert_eq!(rt.ingest.handle(&r, Utc::now()).await.status, 202);
    drain(&rt).await;
    assert_eq!(groups_of(&rt, "transient@example.com"), vec![FF.to_owned()]);
    assert!(
        rt.provision_dlq().is_empty(),
        "a transient failure is not parked"
    );

    // Permanent: SCIM refuses the PATCH with 403; the event is parked at once with the reason.
    sim(&rt).set_faults(fault(
        "PATCH",
        "/scim/v2/Groups",
        FaultAction::Status {
            code: 403,
            retry_after_secs: None,
        },
        None,
    ));
    let r = post(sample(
        EventKind::Purchase,
        "price_1FormulaFundamentals",
        "denied@example.com",
        "pi_d",
        "evt_d",
    ));
    assert_eq!(rt.ingest.handle(&r, Utc::now()).await.status, 202);
    drain(&rt).await;
    let parked = rt.provision_dlq().peek();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].receive_count, 0, "parked without burning retries");
    assert_eq!(parked[0].attributes[ATTR_EVENT_KEY], "stripe:evt_d");
    assert!(
        parked[0].attributes[ATTR_REASON].contains("403"),
        "{:?}",
        parked[0].attributes
    );
    assert!(!parked[0].attributes[ATTR_REASON].contains("denied@example.com"));
    // The key was released, so a replay after the fault is fixed applies the event.
    sim(&rt).set_faults(Faults::default());
    rt.provision_queue
        .send_with(&parked[0].body, Default::default())
        .unwrap();
    rt.provision_dlq().delete(&parked[0].id).unwrap();
    drain(&rt).await;
    assert_eq!(groups_of(&rt, "denied@example.com"), vec![FF.to_owned()]);
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out() {
    let rt = runtime().await;
    sim(&rt).set_faults(fault(
        "POST",
        "/scim/v2/Users",
        FaultAction::Status {
            code: 429,
            retry_after_secs: Some(1),
        },
        Some(1),
    ));
    let secret = send::signing_secret(&rt.config, Platform::Stripe).unwrap();
    let ev = sample(
        EventKind::Purchase,
        "price_1NotionMasteryYear",
        "slow@example.com",
        "pi_s",
        "evt_s",
    );
    let out = enroll_platforms::sample(Platform::Stripe, &ev, &secret, Utc::now());
    let req = ingest::WebhookRequest {
        method: "POST".into(),
        path: "/webhooks/stripe".into(),
        query: out.query,
        headers: out.headers,
        body: out.body,
    };
    assert_eq!(rt.ingest.handle(&req, Utc::now()).await.status, 202);
    let started = std::time::Instant::now();
    drain(&rt).await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After: 1 was honoured"
    );
    assert_eq!(
        sim(&rt).counters().get("POST /scim/v2/Users"),
        Some(&2),
        "one 429, then the create"
    );
    assert_eq!(groups_of(&rt, "slow@example.com"), vec![NM.to_owned()]);
    assert!(rt.provision_dlq().is_empty());
}

#[tokio::test]
async fn align_creates_the_record_once_and_then_only_updates_it() {
    let rt = runtime().await;
    let req = enroll_core::event::AlignRequest {
        source: enroll_core::ids::EventKey::parse("stripe:evt_a").unwrap(),
        order: OrderKey {
            platform: Platform::Stripe,
            order_id: OrderId::parse("pi_align").unwrap(),
        },
        email: BuyerEmail::parse("align@example.com").unwrap(),
        name: Some("Al Ign".into()),
        notion_user_id: NotionUserId::parse("11111111-2222-4333-8444-555555555555").unwrap(),
        products: vec![],
    };
    assert_eq!(
        rt.aligner.align(&req).await.unwrap(),
        align::Aligned::Created
    );
    let writes = |rt: &Runtime| -> u64 {
        sim(rt)
            .counters()
            .iter()
            .filter(|(k, _)| k.starts_with("POST /v1/pages") || k.starts_with("PATCH /v1/pages"))
            .map(|(_, v)| *v)
            .sum()
    };
    let after_first = writes(&rt);
    assert_eq!(
        rt.aligner.align(&req).await.unwrap(),
        align::Aligned::Unchanged
    );
    assert_eq!(
        writes(&rt),
        after_first,
        "running align twice changes nothing the second time"
    );
    let moved = enroll_core::event::AlignRequest {
        notion_user_id: NotionUserId::parse("99999999-2222-4333-8444-555555555555").unwrap(),
        ..req
    };
    assert_eq!(
        rt.aligner.align(&moved).await.unwrap(),
        align::Aligned::Updated
    );
    assert_eq!(
        sim(&rt).state().pages.len(),
        1,
        "updated in place, never a second record"
    );
}
