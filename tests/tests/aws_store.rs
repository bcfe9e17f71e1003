//! `DynamoStore` and `load_secrets` against moto: real conditional writes, transactions, the
//! sparse `due` index and the TTL attribute, through the AWS SDK.

use anyhow::Result;
use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveStatus};
use chrono::{DateTime, TimeDelta, Utc};
use enroll_aws::{load_secrets, DynamoStore};
use enroll_core::catalog::GroupRef;
use enroll_core::config::Config;
use enroll_core::event::EventKind;
use enroll_core::idempotency::{Claim, IdempotencyRecord, Status};
use enroll_core::ids::{
    BuyerEmail, EventId, EventKey, GroupId, NotionUserId, OrderId, OrderKey, Platform,
    PlatformProductRef, ProductId,
};
use enroll_core::ledger::{BuyerRecord, Grant, OrderRecord, Revocation};
use enroll_core::ports::{IdempotencyStore, LedgerStore};
use enroll_tests::moto;
use std::collections::HashMap;

const KEY: &str = "stripe:evt_1";

fn in_progress(owner: &str, now: DateTime<Utc>, seconds_left: i64) -> IdempotencyRecord {
    IdempotencyRecord::in_progress(
        KEY,
        "hash",
        owner,
        now,
        now + TimeDelta::seconds(seconds_left),
    )
}

async fn stored_idem_item(
    store: &DynamoStore,
    key: &str,
) -> Result<Option<HashMap<String, AttributeValue>>> {
    let out = store
        .client
        .get_item()
        .table_name(&store.table)
        .key("pk", AttributeValue::S(format!("idem#{key}")))
        .key("sk", AttributeValue::S("idem".into()))
        .consistent_read(true)
        .send()
        .await?;
    Ok(out.item)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_claims_of_one_key_acquire_it_once() -> Result<()> {
    let store = moto::store().await?;
    let now = Utc::now();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let owner = format!("invocation-{i}");
                let claim = store.claim(&in_progress(&owner, now, 30), now).await;
                (owner, claim)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut holders_seen = Vec::new();
    for t in tasks {
        let (owner, claim) = t.await?;
        match claim? {
            Claim::Acquired => winners.push(owner),
            Claim::InProgress(r) => holders_seen.push(r.owner),
            Claim::Completed(r) => panic!("nobody completed, yet {r:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    assert_eq!(holders_seen.len(), 15);
    // Each loser was told who holds the key, from the item DynamoDB returned with the failure.
    assert!(holders_seen.iter().all(|h| *h == winners[0]));
    Ok(())
}

#[tokio::test]
async fn a_key_whose_holder_ran_out_of_time_is_taken_over() -> Result<()> {
    let store = moto::store().await?;
    let t0 = Utc::now();
    assert_eq!(
        store.claim(&in_progress("a", t0, 30), t0).await?,
        Claim::Acquired
    );
    let before_deadline = t0 + TimeDelta::seconds(29);
    assert!(matches!(
        store.claim(&in_progress("b", before_deadline, 30), before_deadline).await?,
        Claim::InProgress(r) if r.owner == "a"
    ));
    let after_deadline = t0 + TimeDelta::seconds(31);
    assert_eq!(
        store
            .claim(&in_progress("b", after_deadline, 30), after_deadline)
            .await?,
        Claim::Acquired
    );
    // The timed-out holder can no longer complete or release the key.
    let late = store.complete(KEY, "a", "done by a").await.unwrap_err();
    assert!(late.is_retryable(), "{late}");
    store.release(KEY, "a").await?;
    store.complete(KEY, "b", "done by b").await?;
    match store
        .claim(&in_progress("c", after_deadline, 30), after_deadline)
        .await?
    {
        Claim::Completed(r) => assert_eq!(r.outcome.as_deref(), Some("done by b")),
        other => panic!("expected completed, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_completed_key_replays_its_outcome_and_keeps_it_at_least_seven_days() -> Result<()> {
    let store = moto::store().await?;
    let now = Utc::now();
    store.claim(&in_progress("a", now, 30), now).await?;
    store.complete(KEY, "a", "granted notion-mastery").await?;

    let item = stored_idem_item(&store, KEY).await?.expect("record exists");
    let expiration: i64 = match item.get("expiration") {
        Some(AttributeValue::N(n)) => n.parse()?,
        other => panic!("expiration should be a number, got {other:?}"),
    };
    assert!(expiration >= (now + TimeDelta::days(7)).timestamp());
    assert_eq!(
        item.get("status"),
        Some(&AttributeValue::S("COMPLETED".into()))
    );

    // A platform retry three days later is answered from the record.
    let retry = now + TimeDelta::days(3);
    match store.claim(&in_progress("b", retry, 30), retry).await? {
        Claim::Completed(r) => {
            assert_eq!(r.status, Status::Completed);
            assert_eq!(r.owner, "a");
            assert_eq!(r.outcome.as_deref(), Some("granted notion-mastery"));
        }
        other => panic!("expected completed, got {other:?}"),
    }

    // The TTL attribute the table expires records by is `expiration`.
    let ttl = store
        .client
        .describe_time_to_live()
        .table_name(&store.table)
        .send()
        .await?
        .time_to_live_description
        .expect("TTL description");
    assert_eq!(ttl.attribute_name(), Some("expiration"));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
    Ok(())
}

#[tokio::test]
async fn an_expired_completed_key_is_claimed_again_though_ttl_has_not_deleted_it() -> Result<()> {
    let store = moto::store().await?;
    let now = Utc::now();
    store.claim(&in_progress("a", now, 30), now).await?;
    store.complete(KEY, "a", "done").await?;
    let much_later = now + TimeDelta::days(9);
    assert!(stored_idem_item(&store, KEY).await?.is_some());
    assert_eq!(
        store
            .claim(&in_progress("b", much_later, 30), much_later)
            .await?,
        Claim::Acquired
    );
    Ok(())
}

#[tokio::test]
async fn release_by_another_owner_leaves_the_claim_in_place() -> Result<()> {
    let store = moto::store().await?;
    let now = Utc::now();
    store.claim(&in_progress("a", now, 30), now).await?;
    store.release(KEY, "b").await?;
    assert!(matches!(
        store.claim(&in_progress("c", now, 30), now).await?,
        Claim::InProgress(r) if r.owner == "a"
    ));
    store.release(KEY, "a").await?;
    assert_eq!(
        store.claim(&in_progress("c", now, 30), now).await?,
        Claim::Acquired
    );
    // Releasing a key nobody holds is fine too.
    store.release("stripe:evt_never", "a").await?;
    Ok(())
}

fn order_key(id: &str) -> OrderKey {
    OrderKey {
        platform: Platform::Stripe,
        order_id: OrderId::parse(id).unwrap(),
    }
}

fn email(s: &str) -> BuyerEmail {
    BuyerEmail::parse(s).unwrap()
}

fn sample_order(id: &str) -> OrderRecord {
    let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let mut order = OrderRecord::new(order_key(id));
    order.buyer = Some(email("ada@example.com"));
    order.purchased_by = Some(EventKey::new(
        Platform::Stripe,
        EventId::parse("evt_1").unwrap(),
    ));
    order.grants.push(Grant {
        product: ProductId::parse("notion-mastery").unwrap(),
        groups: vec![GroupRef::Name("Notion Mastery".into())],
        starts_at: start,
        ends_at: Some(start + TimeDelta::days(365)),
    });
    order
        .unknown_items
        .push(PlatformProductRef::parse("price_unknown").unwrap());
    order
}

#[tokio::test]
async fn orders_round_trip_and_a_stale_version_write_is_a_transient_failure() -> Result<()> {
    let store = moto::store().await?;
    let mut order = sample_order("cs_1");
    assert_eq!(store.order(&order.order).await?, None);
    assert_eq!(store.put_order(&order).await?, 1);
    order.version = 1;
    assert_eq!(store.order(&order.order).await?, Some(order.clone()));

    let stale = order.clone();
    order.revoked = Some(Revocation {
        kind: EventKind::Refund,
        by: EventKey::new(Platform::Stripe, EventId::parse("evt_2").unwrap()),
        at: Utc::now(),
    });
    assert_eq!(store.put_order(&order).await?, 2);
    let lost = store.put_order(&stale).await.unwrap_err();
    assert!(
        lost.is_retryable() && lost.reason.contains("concurrent update"),
        "{lost}"
    );
    // Creating a record that another invocation created first also loses.
    let lost = store
        .put_order(&OrderRecord::new(order_key("cs_1")))
        .await
        .unwrap_err();
    assert!(lost.is_retryable(), "{lost}");
    assert_eq!(store.order(&order.order).await?.map(|o| o.version), Some(2));
    Ok(())
}

#[tokio::test]
async fn orders_reads_more_than_one_batch_in_the_callers_order() -> Result<()> {
    let store = moto::store().await?;
    let ids: Vec<String> = (0..105).map(|i| format!("cs_{i:03}")).collect();
    for id in &ids {
        store.put_order(&sample_order(id)).await?;
    }
    let mut keys: Vec<OrderKey> = ids.iter().rev().map(|id| order_key(id)).collect();
    keys.insert(3, order_key("cs_missing"));
    keys.push(order_key("cs_000"));
    let found = store.orders(&keys).await?;
    assert_eq!(found.len(), 105);
    let found_ids: Vec<&str> = found.iter().map(|o| o.order.order_id.as_str()).collect();
    let expected: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(found_ids, expected);
    assert!(found.iter().all(|o| o.version == 1));
    assert!(store.orders(&[]).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn buyers_are_found_by_notion_user_id_and_by_when_their_access_changes() -> Result<()> {
    let store = moto::store().await?;
    let now = Utc::now();
    let user = NotionUserId::parse("8f0e6b2c-0000-4000-8000-000000000001")?;

    let mut ada = BuyerRecord::new(email("ada@example.com"));
    ada.name = Some("Ada".into());
    ada.notion_user_id = Some(user.clone());
    ada.orders.insert(order_key("cs_1"));
    ada.applied_groups.insert(GroupId::parse("g-mastery")?);
    ada.next_change_at = Some(now - TimeDelta::hours(1));
    let mut bob = BuyerRecord::new(email("bob@example.com"));
    bob.next_change_at = Some(now + TimeDelta::days(1));
    let cy = BuyerRecord::new(email("cy@example.com"));
    for b in [&ada, &bob, &cy] {
        assert_eq!(store.put_buyer(b).await?, 1);
    }

    ada.version = 1;
    assert_eq!(store.buyer(&ada.email).await?, Some(ada.clone()));
    assert_eq!(store.buyer_by_user(&user).await?, Some(ada.email.clone()));
    assert_eq!(
        store
            .buyer_by_user(&NotionUserId::parse("unknown-user")?)
            .await?,
        None
    );

    assert_eq!(store.buyers_due(now).await?, vec![ada.email.clone()]);
    let mut later = store.buyers_due(now + TimeDelta::days(2)).await?;
    later.sort();
    assert_eq!(later, vec![ada.email.clone(), bob.email.clone()]);

    // Reconciled with nothing left to change: the buyer leaves the sparse index.
    let stale = ada.clone();
    ada.next_change_at = None;
    assert_eq!(store.put_buyer(&ada).await?, 2);
    assert!(store.buyers_due(now).await?.is_empty());

    // The transactional write with the identity index refuses a stale version too.
    let lost = store.put_buyer(&stale).await.unwrap_err();
    assert!(
        lost.is_retryable() && lost.reason.contains("concurrent update"),
        "{lost}"
    );
    let lost = store.put_buyer(&cy).await.unwrap_err();
    assert!(lost.is_retryable(), "{lost}");
    Ok(())
}

#[tokio::test]
async fn a_missing_table_is_a_permanent_failure() -> Result<()> {
    let store = moto::store().await?;
    let gone = DynamoStore::new(store.client.clone(), moto::unique("no-such-table"));
    let err = gone.order(&order_key("cs_1")).await.unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert!(err.reason.contains("ResourceNotFound"), "{err}");
    Ok(())
}

const CONFIG: &str = r#"
[notion]
database_id = "db1"

[platforms.stripe]
secrets = ["whsec_file"]

[[products]]
id = "notion-mastery"
name = "Notion Mastery"
groups = [{ name = "Notion Mastery" }]
"#;

#[tokio::test]
async fn secrets_from_secrets_manager_fill_the_configuration() -> Result<()> {
    let client = aws_sdk_secretsmanager::Client::new(&moto::sdk_config().await);
    let name = moto::unique("enroll/secrets");
    client
        .create_secret()
        .name(&name)
        .secret_string(
            serde_json::json!({
                "scim_token": "scim-123",
                "notion_token": "ntn_456",
                "platforms": {"stripe": ["whsec_new", "whsec_old"], "paddle": ["pdl_1"]},
            })
            .to_string(),
        )
        .send()
        .await?;
    let doc = load_secrets(&client, &name).await?;
    let mut cfg = Config::from_toml(CONFIG, |_| None)?;
    doc.apply(&mut cfg);
    assert_eq!(cfg.scim.token.expose(), "scim-123");
    assert_eq!(cfg.notion.token.expose(), "ntn_456");
    let stripe: Vec<&str> = cfg.platforms[&Platform::Stripe]
        .secrets
        .iter()
        .map(|s| s.expose())
        .collect();
    assert_eq!(stripe, ["whsec_new", "whsec_old"]);
    assert_eq!(cfg.platforms[&Platform::Paddle].secrets.len(), 1);
    assert!(!format!("{doc:?}").contains("whsec_new"));

    let missing = load_secrets(&client, "enroll/no-such-secret")
        .await
        .unwrap_err();
    assert!(missing.is_permanent(), "{missing}");
    Ok(())
}
