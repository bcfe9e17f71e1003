//! Tenant management on a stack, through the real `enroll` binary against moto (a stack faked
//! in moto's CloudFormation whose outputs name a table and the queues, as `template.yaml`'s do,
//! without `TenantSecretPrefix`, so the `<stack>/tenant/` fallback is used):
//!
//! - `tenant add` from files holding secrets: the table's items hold none of them, each
//!   tenant's secret holds its own, and the functions' loader gives back the file's
//!   configuration; a second add is refused without `--replace`;
//! - `tenant list` shows both; `tenant remove` is refused while a buyer has an active grant and
//!   keeps the item, `--force` removes the item and schedules the secret's deletion; adding the
//!   tenant again brings its secret back;
//! - `tenant rotate-secret` keeps the old signing secrets after the new one until
//!   `--retire-old`; locally it is refused, saying where the secrets are;
//! - `dlq list --tenant a` lists a's parked message and not b's; without `--tenant` a tenant
//!   column names both; `dlq replay --tenant a` sends a's back and leaves b's parked.

use anyhow::{Context, Result};
use chrono::Utc;
use enroll_aws::tenants::TenantRegistry;
use enroll_aws::{DynamoStore, SecretsDoc, SqsDeadLetters};
use enroll_core::config::Config;
use enroll_core::ids::{BuyerEmail, OrderId, OrderKey, Platform, ProductId};
use enroll_core::ledger::{Grant, OrderRecord};
use enroll_core::ports::{DeadLetters, LedgerStore, ParkedReason};
use enroll_core::tenant::TenantId;
use enroll_tests::{enroll_bin, moto};
use std::path::Path;
use std::process::Output;

/// A seller's configuration file with every kind of secret in it.
fn config_text(tenant: &str) -> String {
    format!(
        r#"
[scim]
base_url = "https://scim.{tenant}.example.com/scim/v2"
token = "scim-token-secret-{tenant}"

[notion]
token = "notion-token-secret-{tenant}"
database_id = "db-{tenant}"

[platforms.stripe]
secrets = ["whsec_stripe_secret_{tenant}_1", "whsec_stripe_secret_{tenant}_2"]

[[outbound]]
url = "https://hooks.{tenant}.example.com/enroll"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
events = ["access.granted"]

[[products]]
id = "course"
name = "Course of {tenant}"
groups = [{{ name = "Course" }}]
platform_ids = {{ stripe = ["price_{tenant}"] }}
"#
    )
}

fn secrets_of(tenant: &str) -> Vec<String> {
    vec![
        format!("scim-token-secret-{tenant}"),
        format!("notion-token-secret-{tenant}"),
        format!("whsec_stripe_secret_{tenant}_1"),
        format!("whsec_stripe_secret_{tenant}_2"),
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
    ]
}

/// `enroll args...` against moto.
fn enroll(args: &[&str]) -> Result<Output> {
    Ok(enroll_bin::simulated(args)?
        .env("AWS_ENDPOINT_URL", moto::endpoint())
        .env("AWS_ACCESS_KEY_ID", moto::ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", moto::SECRET_ACCESS_KEY)
        .env("AWS_REGION", moto::REGION)
        .output()?)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(out: Output) -> Result<String> {
    let all = text(&out);
    anyhow::ensure!(out.status.success(), "enroll failed: {all}");
    Ok(all)
}

fn failed(out: Output) -> Result<String> {
    let all = text(&out);
    anyhow::ensure!(!out.status.success(), "enroll should have refused: {all}");
    Ok(all)
}

/// Every attribute of every item in the table, as text.
async fn table_dump(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<String> {
    let out = client.scan().table_name(table).send().await?;
    Ok(format!("{:?}", out.items()))
}

async fn secret_doc(sdk: &aws_config::SdkConfig, name: &str) -> Result<SecretsDoc> {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    enroll_aws::load_secrets(&client, name)
        .await
        .map_err(|f| anyhow::anyhow!(f.reason))
}

fn stripe_secrets(doc: &SecretsDoc) -> Vec<String> {
    doc.platforms
        .get(&Platform::Stripe)
        .map(|l| l.iter().map(|s| s.expose().to_owned()).collect())
        .unwrap_or_default()
}

async fn fake_stack(
    sdk: &aws_config::SdkConfig,
    stack: &str,
    table: &str,
    provision: &moto::QueuePair,
    align: &moto::QueuePair,
) -> Result<()> {
    let template = serde_json::json!({
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {
            "TableName": {"Value": table},
            "ProvisionQueueUrl": {"Value": provision.url},
            "ProvisionDeadLetterQueueUrl": {"Value": provision.dlq_url},
            "AlignQueueUrl": {"Value": align.url},
            "AlignDeadLetterQueueUrl": {"Value": align.dlq_url},
            "WebhookBaseUrl": {"Value": "https://fn.lambda-url.us-east-1.on.aws/webhooks/"},
        },
    });
    aws_sdk_cloudformation::Client::new(sdk)
        .create_stack()
        .stack_name(stack)
        .template_body(template.to_string())
        .send()
        .await?;
    Ok(())
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().context("a UTF-8 path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_added_listed_rotated_and_removed_on_a_stack() -> Result<()> {
    let sdk = moto::sdk_config().await;
    let stack = moto::unique("tenants");
    let table = moto::unique("tenants");
    let dynamo = moto::create_table(&sdk, &table).await?;
    let provision = moto::queue_with_dlq(3, 30).await?;
    let align = moto::queue_with_dlq(3, 30).await?;
    fake_stack(&sdk, &stack, &table, &provision, &align).await?;
    let prefix = format!("{stack}/tenant/");
    let registry = TenantRegistry::new(&sdk, &table, &prefix);

    let dir = enroll_bin::scratch_dir("tenants-aws");
    for t in ["a", "b"] {
        std::fs::write(dir.join(format!("{t}.toml")), config_text(t))?;
    }
    let file = |t: &str| dir.join(format!("{t}.toml"));

    // Add both; nothing printed holds a secret.
    for t in ["a", "b"] {
        let f = file(t);
        let out = ok(enroll(&[
            "tenant",
            "add",
            t,
            "--config",
            path_str(&f)?,
            "--stack",
            &stack,
        ])?)?;
        assert!(
            out.contains(&format!("/t/{t}/webhooks/{{platform}}")),
            "{out}"
        );
        assert!(
            out.contains(&format!("{prefix}{t}")),
            "the secret's name: {out}"
        );
        for s in secrets_of(t) {
            assert!(!out.contains(&s), "a secret printed: {out}");
        }
    }

    // The table holds no secret; each tenant's secret holds its own; the functions' loader
    // gives back the file's configuration.
    let dump = table_dump(&dynamo, &table).await?;
    assert!(dump.contains("db-a") && dump.contains("db-b"), "{dump}");
    for s in secrets_of("a").into_iter().chain(secrets_of("b")) {
        assert!(!dump.contains(&s), "secret {s} in the table");
    }
    for t in ["a", "b"] {
        let doc = secret_doc(&sdk, &format!("{prefix}{t}")).await?;
        assert_eq!(
            doc.scim_token.as_ref().map(|s| s.expose().to_owned()),
            Some(format!("scim-token-secret-{t}"))
        );
        assert_eq!(
            stripe_secrets(&doc),
            vec![
                format!("whsec_stripe_secret_{t}_1"),
                format!("whsec_stripe_secret_{t}_2")
            ]
        );
        let tenant = TenantId::parse(t)?;
        let loaded = registry
            .load(&tenant)
            .await
            .map_err(|f| anyhow::anyhow!(f.reason))?
            .context("the tenant loads")?;
        assert_eq!(loaded, Config::from_toml(&config_text(t), |_| None)?);
    }

    // Both listed; a second add refused without --replace, accepted with it.
    let list = ok(enroll(&["tenant", "list", "--stack", &stack])?)?;
    assert!(list.contains("TENANT"), "{list}");
    for t in ["a", "b"] {
        assert!(
            list.lines().any(|l| l.starts_with(&format!("{t} "))),
            "{list}"
        );
    }
    let fa = file("a");
    let again = [
        "tenant",
        "add",
        "a",
        "--config",
        path_str(&fa)?,
        "--stack",
        &stack,
    ];
    let refused = failed(enroll(&again)?)?;
    assert!(refused.contains("--replace"), "{refused}");
    let mut replace = again.to_vec();
    replace.push("--replace");
    assert!(ok(enroll(&replace)?)?.contains("replaced"));

    // One parked message per tenant: `dlq list --tenant a` shows a's only; without --tenant a
    // tenant column names both.
    let sqs = provision.client.clone();
    for t in ["a", "b"] {
        SqsDeadLetters::new(sqs.clone(), &provision.dlq_url, "provision")
            .for_tenant(TenantId::parse(t)?)
            .park(
                r#"{"kind":"purchase"}"#,
                &ParkedReason {
                    reason: format!("SCIM 400 for tenant {t}"),
                    event_key: Some(format!("stripe:evt_parked_{t}")),
                    buyer: None,
                },
            )
            .await
            .map_err(|f| anyhow::anyhow!(f.reason))?;
    }
    let only_a = ok(enroll(&[
        "dlq", "list", "--stack", &stack, "--tenant", "a",
    ])?)?;
    assert!(only_a.contains("stripe:evt_parked_a"), "{only_a}");
    assert!(!only_a.contains("stripe:evt_parked_b"), "{only_a}");
    let all = ok(enroll(&["dlq", "list", "--stack", &stack])?)?;
    assert!(all.contains("TENANT"), "{all}");
    assert!(
        all.contains("stripe:evt_parked_a") && all.contains("stripe:evt_parked_b"),
        "{all}"
    );
    // A's replay moves a's message back to the provision queue, body unchanged (it names its
    // tenant), and leaves b's parked.
    ok(enroll(&[
        "dlq",
        "replay",
        "--stack",
        &stack,
        "--tenant",
        "a",
        "--queue",
        "provision",
    ])?)?;
    let back = enroll_aws::receive_batch(&sqs, &provision.url, Default::default())
        .await
        .map_err(|f| anyhow::anyhow!(f.reason))?;
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(
        enroll_core::tenant::tenant_of_message(&back[0].body)?,
        TenantId::parse("a")?
    );
    let left = ok(enroll(&["dlq", "list", "--stack", &stack])?)?;
    assert!(
        !left.contains("stripe:evt_parked_a") && left.contains("stripe:evt_parked_b"),
        "{left}"
    );
    let unknown = failed(enroll(&[
        "dlq", "list", "--stack", &stack, "--tenant", "zz",
    ])?)?;
    assert!(unknown.contains("no tenant zz"), "{unknown}");

    // A buyer of a with an active grant: remove is refused and the item stays.
    let order = OrderRecord {
        buyer: Some(BuyerEmail::parse("buyer@example.com")?),
        grants: vec![Grant {
            product: ProductId::parse("course")?,
            groups: Vec::new(),
            starts_at: Utc::now() - chrono::Duration::days(1),
            ends_at: None,
        }],
        ..OrderRecord::new(OrderKey {
            platform: Platform::Stripe,
            order_id: OrderId::parse("ord_1")?,
        })
    };
    DynamoStore::new(dynamo.clone(), &table)
        .for_tenant(TenantId::parse("a")?)
        .put_order(&order)
        .await
        .map_err(|f| anyhow::anyhow!(f.reason))?;
    let list = ok(enroll(&["tenant", "list", "--stack", &stack])?)?;
    assert!(
        list.lines()
            .any(|l| l.starts_with("a ") && l.trim_end().ends_with(" 1")),
        "a has one active buyer: {list}"
    );
    let refused = failed(enroll(&["tenant", "remove", "a", "--stack", &stack])?)?;
    assert!(refused.contains("active access"), "{refused}");
    let a = TenantId::parse("a")?;
    assert!(registry
        .get(&a)
        .await
        .map_err(|f| anyhow::anyhow!(f.reason))?
        .is_some());

    // --force removes the item and schedules the secret's deletion; the ledger stays.
    let removed = ok(enroll(&[
        "tenant", "remove", "a", "--stack", &stack, "--force",
    ])?)?;
    assert!(removed.contains("scheduled for deletion"), "{removed}");
    assert!(removed.contains("stay"), "{removed}");
    assert!(registry
        .get(&a)
        .await
        .map_err(|f| anyhow::anyhow!(f.reason))?
        .is_none());
    let described = aws_sdk_secretsmanager::Client::new(&sdk)
        .describe_secret()
        .secret_id(format!("{prefix}a"))
        .send()
        .await?;
    assert!(
        described.deleted_date().is_some(),
        "the secret is scheduled for deletion"
    );
    let list = ok(enroll(&["tenant", "list", "--stack", &stack])?)?;
    assert!(!list.lines().any(|l| l.starts_with("a ")), "{list}");
    assert!(
        table_dump(&dynamo, &table).await?.contains("t#a#order#"),
        "the ledger stays"
    );

    // Added again, its secret comes back with the file's values.
    ok(enroll(&again)?)?;
    assert_eq!(
        stripe_secrets(&secret_doc(&sdk, &format!("{prefix}a")).await?).len(),
        2
    );

    // Rotation: the new secret first, the old ones still valid; then only the newest.
    let generated = ok(enroll(&[
        "tenant",
        "rotate-secret",
        "b",
        "--stack",
        &stack,
        "--platform",
        "stripe",
        "--generate",
    ])?)?;
    let new = generated
        .lines()
        .find(|l| l.starts_with("whsec_"))
        .context("the generated secret is printed")?
        .to_owned();
    assert_eq!(
        stripe_secrets(&secret_doc(&sdk, &format!("{prefix}b")).await?),
        vec![
            new.clone(),
            "whsec_stripe_secret_b_1".to_owned(),
            "whsec_stripe_secret_b_2".to_owned()
        ]
    );
    let secret_file = dir.join("new-stripe-secret");
    std::fs::write(&secret_file, "whsec_stripe_from_a_file\n")?;
    let retired = ok(enroll(&[
        "tenant",
        "rotate-secret",
        "b",
        "--stack",
        &stack,
        "--platform",
        "stripe",
        "--secret-file",
        path_str(&secret_file)?,
        "--retire-old",
    ])?)?;
    assert!(!retired.contains("whsec_stripe_from_a_file"), "{retired}");
    let doc_b = secret_doc(&sdk, &format!("{prefix}b")).await?;
    assert_eq!(stripe_secrets(&doc_b), vec!["whsec_stripe_from_a_file"]);
    assert_eq!(
        doc_b.scim_token.as_ref().map(|s| s.expose().to_owned()),
        Some("scim-token-secret-b".to_owned()),
        "the tokens are untouched"
    );

    // Locally, rotation is refused and says where the secrets are.
    let local = failed(enroll(&[
        "tenant",
        "--tenants",
        path_str(&dir)?,
        "rotate-secret",
        "b",
        "--platform",
        "stripe",
        "--generate",
    ])?)?;
    assert!(local.contains("b.toml"), "{local}");

    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
