//! One table, several sellers (#16): `DynamoStore::for_tenant` against moto. The same event
//! key, buyer, Notion user and order in the single seller and in a tenant are separate items;
//! each one's reads, the `due` index and the whole-ledger scans the audit and backfill use see
//! only that seller's records.

use anyhow::Result;
use chrono::{TimeDelta, Utc};
use enroll_aws::DynamoStore;
use enroll_core::idempotency::{Claim, IdempotencyRecord};
use enroll_core::ids::{BuyerEmail, NotionUserId, OrderId, OrderKey, Platform};
use enroll_core::ledger::{BuyerRecord, OrderRecord};
use enroll_core::ports::{IdempotencyStore, LedgerScan, LedgerStore};
use enroll_core::tenant::TenantId;
use enroll_tests::moto;

#[tokio::test]
async fn a_tenants_records_are_its_own_in_the_shared_table() -> Result<()> {
    let single = moto::store().await?;
    let acme = single.clone().for_tenant(TenantId::parse("acme")?);
    let bright = single.clone().for_tenant(TenantId::parse("bright")?);
    let now = Utc::now();
    let ada = BuyerEmail::parse("ada@example.com")?;
    let user = NotionUserId::parse("8f0e6b2c-0000-4000-8000-0000000000aa")?;
    let order = OrderKey {
        platform: Platform::Stripe,
        order_id: OrderId::parse("cs_shared")?,
    };

    // The same event key is claimed once in each seller.
    for store in [&single, &acme, &bright] {
        let claim = IdempotencyRecord::in_progress(
            "stripe:evt_shared",
            "hash",
            "owner",
            now,
            now + TimeDelta::seconds(60),
        );
        assert_eq!(store.claim(&claim, now).await?, Claim::Acquired);
    }

    // The same buyer in two sellers: different names, only one of them due, only acme's
    // linked to the Notion user.
    let mut in_single = BuyerRecord::new(ada.clone());
    in_single.name = Some("Ada (single)".into());
    let mut in_acme = BuyerRecord::new(ada.clone());
    in_acme.name = Some("Ada (acme)".into());
    in_acme.notion_user_id = Some(user.clone());
    in_acme.next_change_at = Some(now - TimeDelta::hours(1));
    single.put_buyer(&in_single).await?;
    acme.put_buyer(&in_acme).await?;
    acme.put_order(&OrderRecord::new(order.clone())).await?;

    let name = |b: Option<BuyerRecord>| b.and_then(|b| b.name);
    assert_eq!(
        name(single.buyer(&ada).await?).as_deref(),
        Some("Ada (single)")
    );
    assert_eq!(name(acme.buyer(&ada).await?).as_deref(), Some("Ada (acme)"));
    assert_eq!(bright.buyer(&ada).await?, None);
    assert_eq!(acme.buyer_by_user(&user).await?, Some(ada.clone()));
    assert_eq!(single.buyer_by_user(&user).await?, None);
    assert_eq!(acme.buyers_due(now).await?, vec![ada.clone()]);
    assert!(single.buyers_due(now).await?.is_empty());
    assert!(bright.buyers_due(now).await?.is_empty());
    assert!(acme.order(&order).await?.is_some());
    assert!(single.order(&order).await?.is_none());

    // Whole-ledger scans (audit, backfill, tenant list's active buyers) stay in their seller.
    let names = |v: Vec<BuyerRecord>| v.into_iter().filter_map(|b| b.name).collect::<Vec<_>>();
    assert_eq!(
        names(LedgerScan::all_buyers(&single).await?),
        ["Ada (single)"]
    );
    assert_eq!(names(LedgerScan::all_buyers(&acme).await?), ["Ada (acme)"]);
    assert!(LedgerScan::all_buyers(&bright).await?.is_empty());
    assert!(LedgerScan::all_orders(&single).await?.is_empty());
    assert_eq!(LedgerScan::all_orders(&acme).await?.len(), 1);
    Ok(())
}

/// Whether the table holds a buyer item under exactly this partition key.
async fn buyer_item_at(store: &DynamoStore, pk: &str) -> Result<bool> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let out = store
        .client
        .get_item()
        .table_name(&store.table)
        .key("pk", AttributeValue::S(pk.into()))
        .key("sk", AttributeValue::S("buyer".into()))
        .send()
        .await?;
    Ok(out.item.is_some())
}

#[tokio::test]
async fn a_single_sellers_keys_are_unchanged() -> Result<()> {
    let single: DynamoStore = moto::store().await?;
    let ada = BuyerEmail::parse("ada@example.com")?;
    single.put_buyer(&BuyerRecord::new(ada.clone())).await?;
    assert!(
        buyer_item_at(&single, "buyer#ada@example.com").await?,
        "the single seller's buyer is at buyer#<email>"
    );
    let acme = single.clone().for_tenant(TenantId::parse("acme")?);
    acme.put_buyer(&BuyerRecord::new(ada)).await?;
    assert!(
        buyer_item_at(&single, "t#acme#buyer#ada@example.com").await?,
        "a tenant's buyer is behind t#<name>#"
    );
    Ok(())
}
