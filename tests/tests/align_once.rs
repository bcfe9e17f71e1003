//! One sales record per buyer, on the embedded default with the shipped timings: two align
//! requests for one buyer on two workers at once, and a create whose answer is lost.

use enroll_core::event::AlignRequest;
use enroll_core::ids::{BuyerEmail, EventKey, NotionUserId, OrderId, OrderKey, Platform};
use enroll_core::ports::Queue;
use enroll_embedded::config_file;
use enroll_embedded::runtime::{Options, Runtime};
use enroll_simulator::{FaultAction, FaultRule, Faults, PropertyValue};
use std::sync::Arc;
use std::time::Duration;

const USER: &str = "11111111-2222-4333-8444-555555555555";

async fn runtime(notion_timeout_secs: u64) -> Arc<Runtime> {
    let mut config = config_file::load(None).expect("the example configuration");
    config.notion.timeout_secs = notion_timeout_secs;
    config.rate.requests_per_second = 200.0;
    config.rate.burst = 50;
    Runtime::start(Options {
        config,
        data_dir: None,
        timings: Default::default(),
        simulate: true,
    })
    .await
    .expect("runtime starts")
}

fn request(event: &str, order: &str) -> AlignRequest {
    AlignRequest {
        source: EventKey::parse(&format!("stripe:{event}")).unwrap(),
        order: OrderKey {
            platform: Platform::Stripe,
            order_id: OrderId::parse(order).unwrap(),
        },
        email: BuyerEmail::parse("twice@example.com").unwrap(),
        name: Some("Twice".into()),
        notion_user_id: NotionUserId::parse(USER).unwrap(),
        products: vec![],
    }
}

/// Sales records holding the buyer's Notion user id.
fn records_of(rt: &Runtime, user: &str) -> usize {
    let prop = &rt.config.notion.properties.notion_user_id;
    rt.simulator
        .as_ref()
        .expect("simulated workspace")
        .state()
        .pages
        .iter()
        .filter(|p| !p.in_trash)
        .filter(|p| matches!(p.properties.get(prop), Some(PropertyValue::RichText(t)) if t.concat() == user))
        .count()
}

fn creates(rt: &Runtime) -> u64 {
    rt.simulator
        .as_ref()
        .expect("simulated workspace")
        .counters()
        .iter()
        .filter(|(k, _)| k.starts_with("POST /v1/pages"))
        .map(|(_, v)| *v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_purchases_aligned_on_two_workers_at_once_make_one_record() {
    let rt = runtime(30).await;
    let sim = rt.simulator.as_ref().unwrap();
    // Slow lookups keep the first worker inside its lease while the second starts.
    sim.set_faults(Faults {
        rules: vec![FaultRule {
            method: Some("POST".into()),
            path_prefix: Some("/v1/data_sources".into()),
            probability: 1.0,
            remaining: None,
            action: FaultAction::Delay { ms: 400 },
        }],
        seed: 1,
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = rt.spawn_workers(stop_rx);
    let queue: &dyn Queue = rt.align_queue.as_ref();
    queue
        .send(&serde_json::to_string(&request("evt_1", "pi_first")).unwrap())
        .await
        .unwrap();
    // The second request arrives while the first is being handled, so the other worker
    // takes it.
    tokio::time::sleep(Duration::from_millis(150)).await;
    queue
        .send(&serde_json::to_string(&request("evt_2", "pi_second")).unwrap())
        .await
        .unwrap();
    assert!(rt.settle(Duration::from_secs(120)).await, "align drains");
    let _ = stop_tx.send(true);
    for w in workers {
        let _ = w.await;
    }
    assert_eq!(records_of(&rt, USER), 1, "one sales record for the buyer");
    assert_eq!(creates(&rt), 1, "the record was created once");
    assert!(rt.align_dlq().is_empty(), "nothing parked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_is_lost_is_not_repeated() {
    // The create is applied, then the connection closes without the answer.
    let rt = runtime(30).await;
    rt.simulator.as_ref().unwrap().set_faults(Faults {
        rules: vec![FaultRule {
            method: Some("POST".into()),
            path_prefix: Some("/v1/pages".into()),
            probability: 1.0,
            remaining: Some(1),
            action: FaultAction::DropAfterApply,
        }],
        seed: 1,
    });
    let req = request("evt_lost", "pi_lost");
    assert_eq!(
        rt.aligner
            .align(&req)
            .await
            .expect("the row is found after the lost answer"),
        align::Aligned::Created
    );
    // A redelivery finds the row too.
    assert_eq!(
        rt.aligner.align(&req).await.unwrap(),
        align::Aligned::Unchanged
    );
    assert_eq!(creates(&rt), 1, "the create was sent once");
    assert_eq!(records_of(&rt, USER), 1, "one sales record");
}
