use crate::support::*;
use reqwest::Method;
use serde_json::json;

struct World {
    f: Fixture,
    group: String,
    a: String,
    b: String,
    c: String,
}

async fn world() -> World {
    let f = fixture().await;
    let a = f.create_user("a@example.com").await;
    let b = f.create_user("b@example.com").await;
    let c = f.create_user("c@example.com").await;
    let group = f.create_group("Notion Mastery").await;
    World { f, group, a, b, c }
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test]
async fn add_members_is_idempotent_and_answers_204() {
    let w = world().await;
    let add = json!([{"op": "add", "path": "members", "value": [{"value": w.a}, {"value": w.b}]}]);
    let (status, body) = w.f.patch_group(&w.group, add.clone()).await;
    assert_eq!((status, body), (204, serde_json::Value::Null));
    let (status, _) = w.f.patch_group(&w.group, add).await;
    assert_eq!(status, 204, "adding an existing member succeeds");
    assert_eq!(
        w.f.members(&w.group).await,
        sorted(vec![w.a.clone(), w.b.clone()])
    );
    assert_eq!(w.f.sim.group_members("notion mastery").len(), 2);

    // Asking for attributes turns the 204 into a 200 with the Group.
    let (status, body) = send(
        w.f.scim(
            Method::PATCH,
            &format!("/Groups/{}?attributes=members", w.group),
        )
        .json(&json!({"schemas": [PATCH_URN], "Operations": [
            {"op": "Add", "path": "members", "value": [{"value": w.c}]}
        ]})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["members"].as_array().unwrap().len(), 3);
    assert!(body.get("displayName").is_none());
}

#[tokio::test]
async fn remove_by_filter_path_and_by_value_list() {
    let w = world().await;
    w.f.patch_group(
        &w.group,
        json!([{"op": "add", "path": "members", "value": [{"value": w.a}, {"value": w.b}, {"value": w.c}]}]),
    )
    .await;
    let (status, _) =
        w.f.patch_group(
            &w.group,
            json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", w.a)}]),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        w.f.members(&w.group).await,
        sorted(vec![w.b.clone(), w.c.clone()])
    );

    let (status, _) =
        w.f.patch_group(
            &w.group,
            json!([{"op": "Remove", "path": "members", "value": [{"value": w.b}, {"value": w.a}]}]),
        )
        .await;
    assert_eq!(status, 204, "removing a non-member succeeds");
    assert_eq!(w.f.members(&w.group).await, vec![w.c.clone()]);
}

#[tokio::test]
async fn remove_members_without_value_removes_everyone() {
    let w = world().await;
    w.f.patch_group(
        &w.group,
        json!([{"op": "add", "path": "members", "value": [{"value": w.a}, {"value": w.b}]}]),
    )
    .await;
    let (status, _) =
        w.f.patch_group(&w.group, json!([{"op": "REMOVE", "path": "members"}]))
            .await;
    assert_eq!(status, 204);
    assert!(w.f.members(&w.group).await.is_empty());
}

#[tokio::test]
async fn replace_members_and_rename() {
    let w = world().await;
    w.f.patch_group(
        &w.group,
        json!([{"op": "add", "path": "members", "value": [{"value": w.a}]}]),
    )
    .await;
    let (status, _) =
        w.f.patch_group(
            &w.group,
            json!([
                {"op": "replace", "path": "members", "value": [{"value": w.b}, {"value": w.c}]},
                {"op": "replace", "value": {"displayName": "Renamed"}}
            ]),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(w.f.sim.group_members("Renamed").len(), 2);
    assert_eq!(
        w.f.members(&w.group).await,
        sorted(vec![w.b.clone(), w.c.clone()])
    );
}

#[tokio::test]
async fn unknown_member_is_invalid_value_and_changes_nothing() {
    let w = world().await;
    let (status, err) =
        w.f.patch_group(
            &w.group,
            json!([{"op": "add", "path": "members", "value": [
                {"value": w.a}, {"value": "00000000-0000-4000-8000-000000000000"}
            ]}]),
        )
        .await;
    assert_eq!(status, 400);
    assert_scim_error(&err, "400", Some("invalidValue"));
    assert!(w.f.members(&w.group).await.is_empty(), "PATCH is atomic");
}

#[tokio::test]
async fn malformed_patch_is_invalid_syntax() {
    let w = world().await;
    let url = format!("/Groups/{}", w.group);
    let bodies = [
        json!({"schemas": [PATCH_URN]}),
        json!({"schemas": [PATCH_URN], "Operations": {"op": "add"}}),
        json!({"schemas": [PATCH_URN], "Operations": [{"op": "merge", "path": "members", "value": []}]}),
        json!({"schemas": [PATCH_URN], "Operations": [{"op": "add", "path": "members"}]}),
        json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": w.a}]}]}),
        json!({"schemas": [PATCH_URN], "Operations": [{"op": "add", "path": "members", "value": "nope"}]}),
    ];
    for body in bodies {
        let (status, err) = send(w.f.scim(Method::PATCH, &url).json(&body)).await;
        assert_eq!(status, 400, "{body}");
        assert_scim_error(&err, "400", Some("invalidSyntax"));
    }
    let (status, err) = send(
        w.f.scim(Method::PATCH, &url)
            .header("content-type", "application/scim+json")
            .body("{not json"),
    )
    .await;
    assert_eq!(status, 400);
    assert_scim_error(&err, "400", Some("invalidSyntax"));
    let (status, err) = w.f.patch_group(&w.group, json!([{"op": "remove"}])).await;
    assert_eq!(status, 400);
    assert_scim_error(&err, "400", Some("noTarget"));
    let (status, err) =
        w.f.patch_group(
            &w.group,
            json!([{"op": "remove", "path": "members[value eq"}]),
        )
        .await;
    assert_eq!(status, 400);
    assert_scim_error(&err, "400", Some("invalidPath"));
}

#[tokio::test]
async fn duplicate_display_name_is_409() {
    let w = world().await;
    let (status, err) = send(
        w.f.scim(Method::POST, "/Groups")
            .json(&json!({"schemas": [GROUP_URN], "displayName": "notion mastery"})),
    )
    .await;
    assert_eq!(status, 409);
    assert_scim_error(&err, "409", Some("uniqueness"));
}

#[tokio::test]
async fn list_filters_by_display_name_and_can_exclude_members() {
    let w = world().await;
    w.f.create_group("Formula Fundamentals").await;
    w.f.patch_group(
        &w.group,
        json!([{"op": "add", "path": "members", "value": [{"value": w.a}]}]),
    )
    .await;
    let filter: String =
        form_urlencoded::byte_serialize(br#"displayName eq "Notion Mastery""#).collect();
    let (status, body) = send(w.f.scim(
        Method::GET,
        &format!("/Groups?filter={filter}&excludedAttributes=members"),
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["totalResults"], 1);
    let group = &body["Resources"][0];
    assert_eq!(group["id"], json!(w.group));
    assert!(group.get("members").is_none());
    assert_eq!(group["meta"]["resourceType"], "Group");

    let (_, all) = send(w.f.scim(Method::GET, "/Groups?count=1")).await;
    assert_eq!(all["totalResults"], 2);
    assert_eq!(all["itemsPerPage"], 1);
    assert_eq!(all["Resources"][0]["members"][0]["value"], json!(w.a));
}

#[tokio::test]
async fn delete_group() {
    let w = world().await;
    let (status, _) = send(w.f.scim(Method::DELETE, &format!("/Groups/{}", w.group))).await;
    assert_eq!(status, 204);
    let (status, err) = send(w.f.scim(Method::GET, &format!("/Groups/{}", w.group))).await;
    assert_eq!(status, 404);
    assert_scim_error(&err, "404", None);
}

#[tokio::test]
async fn a_watcher_sees_each_join_once_and_the_budget_counts_requests() {
    let w = world().await;
    w.f.sim
        .set_latency(Some(std::time::Duration::from_millis(5)));
    w.f.sim.reset_counters();
    let mut joins = w.f.sim.watch_joins();
    let add = |ids: &[&String]| {
        let value: Vec<_> = ids.iter().map(|id| json!({"value": id})).collect();
        json!([{"op": "add", "path": "members", "value": value}])
    };
    w.f.patch_group(&w.group, add(&[&w.a, &w.b])).await;
    // A second add of a member already in the Group is no join.
    w.f.patch_group(&w.group, add(&[&w.a, &w.c])).await;
    let mut seen = Vec::new();
    while let Ok(j) = joins.try_recv() {
        assert_eq!(j.group, "Notion Mastery");
        seen.push(j.user_name);
    }
    assert_eq!(seen, ["a@example.com", "b@example.com", "c@example.com"]);
    let used = w.f.sim.scim_budget_use();
    assert_eq!((used.accepted, used.throttled), (2, 0));
    assert!(used.first.is_some() && used.last >= used.first);
    assert_eq!(w.f.sim.notion_budget_use().accepted, 0);
}
