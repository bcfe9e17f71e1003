//! `enroll doctor` against the real simulator: the shipped configuration passes; a missing
//! Group, a wrong SCIM token, a database not shared with the integration, a property of the
//! wrong type and a platform without a secret each fail with what to fix; and the built binary
//! exits non-zero exactly when a check fails.

use anyhow::Result;
use enroll_core::config::{Config, Secret};
use enroll_core::ids::Platform;
use enroll_ops::doctor::{self, Check, Report};
use enroll_simulator::{PropertyKind, SimConfig, SimHandle, SimState};
use enroll_tests::{enroll_bin, moto};

const SCIM_TOKEN: &str = "doctor-test-scim-token";
const NOTION_TOKEN: &str = "doctor-test-notion-token";

/// The shipped configuration, `enroll dev`'s default.
fn example() -> Config {
    enroll_embedded::config_file::load(None).expect("the example configuration")
}

/// A simulator holding `state`.
async fn simulator(state: SimState) -> Result<SimHandle> {
    Ok(enroll_simulator::start(
        SimConfig {
            scim_token: SCIM_TOKEN.into(),
            notion_token: NOTION_TOKEN.into(),
            scim_rate_limit: None,
            notion_rate_limit: None,
            admin_token: None,
            max_members_per_patch: None,
            state,
        },
        "127.0.0.1:0".parse()?,
    )
    .await?)
}

/// A simulator seeded the way `enroll dev` seeds it from the shipped configuration.
async fn shipped_workspace() -> Result<SimHandle> {
    simulator(enroll_embedded::seed::from_config(&example())).await
}

/// `config` pointed at `sim`, with its tokens.
fn against(mut config: Config, sim: &SimHandle) -> Config {
    config.scim.base_url = sim.scim_base_url();
    config.scim.token = Secret::new(SCIM_TOKEN);
    config.notion.base_url = sim.notion_base_url();
    config.notion.token = Secret::new(NOTION_TOKEN);
    config
}

fn check<'a>(report: &'a Report, name: &str) -> &'a Check {
    report
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check named {name:?} in {report:#?}"))
}

fn failed(report: &Report) -> Vec<&str> {
    report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.as_str())
        .collect()
}

#[tokio::test]
async fn the_shipped_configuration_passes_against_the_simulator() -> Result<()> {
    let sim = shipped_workspace().await?;
    let report = doctor::run(
        &against(example(), &sim),
        Some("https://hooks.example.com/"),
    )
    .await;
    assert!(report.passed(), "{report:#?}");
    assert!(check(&report, "SCIM token").detail.starts_with("valid"));
    for group in [
        "Notion Mastery",
        "Notion Mastery Alumni",
        "Formula Fundamentals 2.0",
    ] {
        assert!(check(&report, &format!("Group {group}")).ok);
    }
    assert!(check(&report, "Sales database").detail.contains("shared"));
    let user_id = check(
        &report,
        "Sales property notion_user_id (\"Notion User ID\")",
    );
    assert!(user_id.ok && user_id.detail.starts_with("rich_text"));
    assert_eq!(
        check(&report, "Webhook URL stripe").detail,
        "https://hooks.example.com/webhooks/stripe"
    );
    assert!(check(&report, "Platform stripe").ok);
    assert!(check(&report, "Rate public API").ok);
    Ok(())
}

#[tokio::test]
async fn a_missing_group_fails_naming_it_and_the_closest_name() -> Result<()> {
    let sim = shipped_workspace().await?;
    let text = enroll_embedded::config_file::EXAMPLE
        .replace("name = \"Notion Mastery\" }", "name = \"Notion Mastry\" }");
    let config = Config::from_toml(&text, |_| None)?;
    let report = doctor::run(&against(config, &sim), None).await;
    assert_eq!(failed(&report), ["Group Notion Mastry"], "{report:#?}");
    let missing = check(&report, "Group Notion Mastry");
    assert!(
        missing.detail.contains("no Group named \"Notion Mastry\""),
        "{missing:?}"
    );
    let fix = missing.fix.as_deref().unwrap_or_default();
    assert!(fix.contains("did you mean \"Notion Mastery\"?"), "{fix}");
    Ok(())
}

#[tokio::test]
async fn a_wrong_scim_token_or_an_unreachable_server_fails_the_token_check() -> Result<()> {
    let sim = shipped_workspace().await?;
    let mut config = against(example(), &sim);
    config.scim.token = Secret::new("revoked-token");
    let report = doctor::run(&config, None).await;
    let token = check(&report, "SCIM token");
    assert!(
        !token.ok && token.detail.contains("token invalid or revoked"),
        "{token:?}"
    );
    assert!(token
        .fix
        .as_deref()
        .unwrap_or_default()
        .contains("ENROLL_SCIM_TOKEN"));
    // The sales database has its own token: still checked, and fine.
    assert!(check(&report, "Sales database").ok);

    config.scim.base_url = "http://127.0.0.1:9/scim/v2".into();
    let report = doctor::run(&config, None).await;
    let token = check(&report, "SCIM token");
    assert!(
        !token.ok && token.detail.contains("cannot reach scim.base_url"),
        "{token:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_database_not_shared_with_the_integration_fails_with_the_sharing_fix() -> Result<()> {
    let sim = shipped_workspace().await?;
    let mut config = against(example(), &sim);
    config.notion.database_id = uuid::Uuid::new_v4().to_string();
    let report = doctor::run(&config, None).await;
    let db = check(&report, "Sales database");
    assert!(
        !db.ok && db.detail.contains("not shared with the integration"),
        "{db:?}"
    );
    assert!(
        db.fix
            .as_deref()
            .unwrap_or_default()
            .contains("Connections"),
        "{db:?}"
    );
    assert!(check(&report, "SCIM token").ok);
    Ok(())
}

#[tokio::test]
async fn a_property_of_the_wrong_type_fails_naming_it() -> Result<()> {
    let mut state = enroll_embedded::seed::from_config(&example());
    state.databases[0].data_sources[0]
        .properties
        .insert("Notion User ID".into(), PropertyKind::Number);
    state.databases[0].data_sources[0]
        .properties
        .remove("Order ID");
    let sim = simulator(state).await?;
    let report = doctor::run(&against(example(), &sim), None).await;
    assert_eq!(
        failed(&report),
        [
            "Sales property order_id (\"Order ID\")",
            "Sales property notion_user_id (\"Notion User ID\")"
        ],
        "{report:#?}"
    );
    let user_id = check(
        &report,
        "Sales property notion_user_id (\"Notion User ID\")",
    );
    assert!(
        user_id
            .detail
            .contains("\"Notion User ID\" is a number property; enroll writes rich_text"),
        "{user_id:?}"
    );
    let order = check(&report, "Sales property order_id (\"Order ID\")");
    assert!(
        order.detail.contains("no property named \"Order ID\""),
        "{order:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_platform_without_a_secret_fails_and_so_does_no_platform() -> Result<()> {
    let sim = shipped_workspace().await?;
    let mut config = against(example(), &sim);
    config
        .platforms
        .get_mut(&Platform::Stripe)
        .expect("stripe in the example")
        .secrets
        .clear();
    let report = doctor::run(&config, None).await;
    assert_eq!(failed(&report), ["Platform stripe"], "{report:#?}");
    assert!(check(&report, "Platform stripe")
        .fix
        .as_deref()
        .unwrap_or_default()
        .contains("ENROLL_STRIPE_SECRETS"));

    config.platforms.clear();
    let report = doctor::run(&config, None).await;
    let none = check(&report, "Platforms");
    assert!(
        !none.ok && none.detail.contains("no platform configured"),
        "{none:?}"
    );
    Ok(())
}

/// `enroll doctor` as a seller runs it: exit 0 with the shipped configuration (against the
/// simulated workspace when no token is set, and against a configured one), non-zero with a
/// missing Group, which stdout names. Multi-threaded: the simulator answers while this thread
/// waits for the child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exits_non_zero_exactly_when_a_check_fails() -> Result<()> {
    let dir = enroll_bin::scratch_dir("doctor");
    let data_dir = dir.join("data");
    let data_dir = data_dir.to_str().expect("a UTF-8 path");

    let out = enroll_bin::simulated(&["doctor", "--data-dir", data_dir])?.output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("! Workspace: simulated"), "{stdout}");
    assert!(stdout.contains("✓ Group Notion Mastery:"), "{stdout}");

    let sim = shipped_workspace().await?;
    let config_for = |text: &str| -> Result<std::path::PathBuf> {
        let path = dir.join(format!("{}.toml", uuid::Uuid::new_v4().simple()));
        let text = text
            .replace("https://api.notion.com/scim/v2", &sim.scim_base_url())
            .replace("https://api.notion.com/v1", &sim.notion_base_url());
        std::fs::write(&path, text)?;
        Ok(path)
    };
    let run = |config: &std::path::Path, json: bool| -> Result<std::process::Output> {
        let config = config.to_str().expect("a UTF-8 path");
        let mut args = vec!["doctor", "--config", config, "--data-dir", data_dir];
        if json {
            args.push("--json");
        }
        Ok(enroll_bin::simulated(&args)?
            .env("ENROLL_SCIM_TOKEN", SCIM_TOKEN)
            .env("ENROLL_NOTION_TOKEN", NOTION_TOKEN)
            .output()?)
    };

    let good = config_for(enroll_embedded::config_file::EXAMPLE)?;
    let out = run(&good, true)?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(json["passed"], true);
    assert!(json["checks"]
        .as_array()
        .expect("a list of checks")
        .iter()
        .all(|c| c["ok"] == true && c["name"] != "Workspace"));

    let typo = config_for(
        &enroll_embedded::config_file::EXAMPLE
            .replace("name = \"Notion Mastery\" }", "name = \"Notion Mastry\" }"),
    )?;
    let out = run(&typo, false)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("✗ Group Notion Mastry: no Group named \"Notion Mastry\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("did you mean \"Notion Mastery\"?"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `enroll doctor --stack` reads what the functions read: the configuration from the stack's
/// `EnrollConfig` parameter, the tokens and signing secrets from its secret, and the webhook
/// base from its `WebhookBaseUrl` output (a stack in moto whose outputs point at a secret made
/// there, and whose configuration points at the simulator).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_is_checked_with_its_parameter_secret_and_webhook_output() -> Result<()> {
    let sdk = moto::sdk_config().await;
    let stack = moto::unique("doctor");
    let secret = aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(&stack)
        .secret_string(
            serde_json::json!({
                "scim_token": SCIM_TOKEN,
                "notion_token": NOTION_TOKEN,
                "platforms": {"stripe": ["whsec_from_the_stack"]},
            })
            .to_string(),
        )
        .send()
        .await?;
    let secret_arn = secret.arn().expect("an ARN").to_owned();
    let sim = shipped_workspace().await?;
    // Stripe alone, with no secret in the text: the stack's secret provides it.
    let text = stripe_only(&sim);
    fake_stack(
        &sdk,
        &stack,
        serde_json::json!({"SecretArn": {"Value": secret_arn}}),
        &text,
    )
    .await?;

    let detail = doctor_json(&["doctor", "--stack", &stack, "--json"])?;
    assert!(detail("SCIM token").starts_with("valid"));
    assert_eq!(detail("Platform stripe"), "1 secret");
    assert_eq!(
        detail("Webhook URL stripe"),
        "https://fn.lambda-url.us-east-1.on.aws/webhooks/stripe"
    );
    Ok(())
}

/// The shipped workspace's configuration with Stripe alone and no secret or token in the text.
fn stripe_only(sim: &SimHandle) -> String {
    format!(
        "[scim]\nbase_url = \"{}\"\n\n[notion]\nbase_url = \"{}\"\ndatabase_id = \"{}\"\n\n\
         [notion.properties]\nproducts = \"Products\"\n\n[platforms.stripe]\n\n\
         [[products]]\nid = \"notion-mastery\"\nname = \"Notion Mastery\"\n\
         groups = [{{ name = \"Notion Mastery\" }}]\n",
        sim.scim_base_url(),
        sim.notion_base_url(),
        example().notion.database_id,
    )
}

/// A stack in moto as `enroll doctor --stack` reads one: the `EnrollConfig` parameter and these
/// outputs, plus the webhook base every stack has.
async fn fake_stack(
    sdk: &aws_config::SdkConfig,
    stack: &str,
    mut outputs: serde_json::Value,
    config: &str,
) -> Result<()> {
    outputs["WebhookBaseUrl"] =
        serde_json::json!({"Value": "https://fn.lambda-url.us-east-1.on.aws/webhooks/"});
    let template = serde_json::json!({
        "Parameters": {"EnrollConfig": {"Type": "String"}},
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
        "Outputs": outputs,
    });
    aws_sdk_cloudformation::Client::new(sdk)
        .create_stack()
        .stack_name(stack)
        .template_body(template.to_string())
        .parameters(
            aws_sdk_cloudformation::types::Parameter::builder()
                .parameter_key("EnrollConfig")
                .parameter_value(config)
                .build(),
        )
        .send()
        .await?;
    Ok(())
}

/// Runs `enroll doctor` against moto and answers each check's detail by its name; fails
/// unless the doctor passed.
fn doctor_json(args: &[&str]) -> Result<impl Fn(&str) -> String> {
    let out = enroll_bin::simulated(args)?
        .env("AWS_ENDPOINT_URL", moto::endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("ENROLL_STRIPE_SECRETS")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(move |name: &str| {
        json["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == name)
            .map(|c| c["detail"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_else(|| panic!("no check {name} in {json}"))
    })
}

/// `enroll doctor --stack S --tenant NAME` checks what the functions load for that tenant: the
/// configuration item in the table and the tenant's own secret (two Stripe secrets here, the
/// stack's secret has none), and prints the tenant's webhook URLs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stacks_tenant_is_checked_with_its_item_secret_and_path() -> Result<()> {
    let sdk = moto::sdk_config().await;
    let stack = moto::unique("doctor-tenants");
    let table = moto::unique("doctor-table");
    enroll_aws::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table).await?;
    let prefix = format!("{stack}/tenant/");
    let registry = enroll_aws::tenants::TenantRegistry::new(&sdk, &table, &prefix);
    let acme = enroll_core::tenant::TenantId::parse("acme")?;
    let sim = shipped_workspace().await?;
    registry
        .put(&enroll_aws::tenants::TenantRecord {
            tenant: acme.clone(),
            config: stripe_only(&sim),
            added_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        })
        .await
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    registry
        .secrets
        .create_secret()
        .name(registry.secret_id(&acme))
        .secret_string(
            serde_json::json!({
                "scim_token": SCIM_TOKEN,
                "notion_token": NOTION_TOKEN,
                "platforms": {"stripe": ["whsec_acme_new", "whsec_acme_old"]},
            })
            .to_string(),
        )
        .send()
        .await?;
    fake_stack(
        &sdk,
        &stack,
        serde_json::json!({
            "TableName": {"Value": table},
            "TenantSecretPrefix": {"Value": prefix},
        }),
        "",
    )
    .await?;
    let detail = doctor_json(&["doctor", "--stack", &stack, "--tenant", "acme", "--json"])?;
    assert!(detail("SCIM token").starts_with("valid"));
    assert!(detail("Platform stripe").starts_with("2 secrets"));
    assert_eq!(
        detail("Webhook URL stripe"),
        "https://fn.lambda-url.us-east-1.on.aws/t/acme/webhooks/stripe"
    );
    Ok(())
}
