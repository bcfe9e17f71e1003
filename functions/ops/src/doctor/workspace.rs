//! The SCIM side: the token answers, and every Group the catalog names exists.

use super::{closest, quoted_list, refused, retry_policy, Check};
use enroll_core::catalog::GroupRef;
use enroll_core::config::Config;
use enroll_core::ids::GroupId;
use enroll_notion::{ScimClient, TokenBucket};
use std::sync::Arc;

const TOKEN: &str = "SCIM token";

const NEW_TOKEN: &str =
    "a workspace owner makes a new SCIM token in Notion (Settings → Identity & \
     provisioning → SCIM provisioning; a token dies when the owner who made it leaves or changes \
     role) and sets it as ENROLL_SCIM_TOKEN, scim.token, or scim_token in the stack's secret";

/// The token check, then one check per catalog Group.
pub(super) async fn checks(config: &Config) -> Vec<Check> {
    let groups = config.catalog.managed_groups();
    let not_checked = |why: &str| {
        groups
            .iter()
            .map(|g| {
                Check::fail(
                    format!("Group {g}"),
                    format!("not checked: {why}"),
                    "fix the SCIM token check first",
                )
            })
            .collect::<Vec<_>>()
    };
    if config.scim.token.is_empty() {
        let mut out = vec![Check::fail(TOKEN, "no SCIM token configured", NEW_TOKEN)];
        out.extend(not_checked("no SCIM token"));
        return out;
    }
    let budget = Arc::new(TokenBucket::from_config(config.rate.scim()));
    let client = match ScimClient::new(&config.scim, budget) {
        Ok(c) => c.with_retry(retry_policy()),
        Err(f) => {
            let mut out = vec![Check::fail(TOKEN, f.reason, "correct the [scim] settings")];
            out.extend(not_checked("the SCIM settings are invalid"));
            return out;
        }
    };
    let (token, listed) = tokio::join!(client.check_token(), client.list_groups());
    let mut out = vec![match &token {
        Ok(members) => Check::pass(
            TOKEN,
            format!(
                "valid: {} answers with {members} workspace member(s)",
                config.scim.base_url
            ),
        ),
        Err(r) => {
            let (detail, fix) = refused("scim", &config.scim.base_url, r, NEW_TOKEN);
            Check::fail(TOKEN, detail, fix)
        }
    }];
    match (token, listed) {
        (Ok(_), Ok(existing)) => out.extend(groups.iter().map(|g| group_check(g, &existing))),
        (Err(_), _) => out.extend(not_checked("SCIM refused the token")),
        (Ok(_), Err(r)) => out.extend(not_checked(&r.failure.reason)),
    }
    out
}

/// One catalog Group against the workspace's, found the way provision finds it: by id, or by
/// display name (an exact match first, else the one match that differs in case only).
fn group_check(group: &GroupRef, existing: &[(GroupId, String)]) -> Check {
    let name = format!("Group {group}");
    let total = existing.len();
    match group {
        GroupRef::Id(id) => match existing.iter().find(|(g, _)| g == id) {
            Some((_, display)) => Check::pass(name, format!("exists: \"{display}\"")),
            None => {
                let ids: Vec<&str> = existing.iter().map(|(g, _)| g.as_str()).collect();
                let near = closest(id.as_str(), ids);
                let named: Vec<String> = near
                    .iter()
                    .filter_map(|n| existing.iter().find(|(g, _)| g.as_str() == *n))
                    .map(|(g, d)| format!("{g} (\"{d}\")"))
                    .collect();
                let mut fix = String::from(
                    "correct the Group id in the catalog ([[products]] groups = [{ id = \"...\" }]), \
                     or name the Group by its display name ({ name = \"...\" })",
                );
                if !named.is_empty() {
                    fix.push_str(&format!("; close ids: {}", named.join(", ")));
                }
                Check::fail(
                    name,
                    format!("no Group has id {id} in the workspace ({total} Groups there)"),
                    fix,
                )
            }
        },
        GroupRef::Name(wanted) => {
            if let Some((id, _)) = existing.iter().find(|(_, d)| d == wanted) {
                return Check::pass(name, format!("exists: id {id}"));
            }
            let same_but_case: Vec<&(GroupId, String)> = existing
                .iter()
                .filter(|(_, d)| d.to_lowercase() == wanted.to_lowercase())
                .collect();
            match same_but_case.as_slice() {
                [(id, display)] => Check::warn(
                    name,
                    format!("found as \"{display}\" (id {id}): the name differs in case only"),
                    format!("write \"{display}\" in the catalog, as the workspace spells it"),
                ),
                [_, _, ..] => Check::fail(
                    name,
                    format!(
                        "{} Groups are named \"{wanted}\" but for case: provision cannot tell \
                         which one is meant",
                        same_but_case.len()
                    ),
                    "rename all but one in Notion, or name the Group by id in the catalog",
                ),
                [] => {
                    let near = closest(wanted, existing.iter().map(|(_, d)| d.as_str()));
                    let mut fix = format!(
                        "create the Group \"{wanted}\" in Notion (Settings → People → Groups) \
                         and add it to its teamspaces, or correct the name in the catalog"
                    );
                    if !near.is_empty() {
                        fix.push_str(&format!("; did you mean {}?", quoted_list(&near)));
                    }
                    Check::fail(
                        name,
                        format!(
                            "no Group named \"{wanted}\" in the workspace ({total} Groups there)"
                        ),
                        fix,
                    )
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> Vec<(GroupId, String)> {
        [
            ("g1", "Notion Mastery"),
            ("g2", "Formula Fundamentals 2.0"),
            ("g3", "staff"),
        ]
        .into_iter()
        .map(|(id, n)| (GroupId::parse(id).unwrap(), n.to_owned()))
        .collect()
    }

    #[test]
    fn a_named_group_is_found_exactly_or_but_for_case() {
        let ws = workspace();
        let c = group_check(&GroupRef::Name("Notion Mastery".into()), &ws);
        assert!(c.ok && !c.warn, "{c:?}");
        let c = group_check(&GroupRef::Name("Staff".into()), &ws);
        assert!(c.ok && c.warn, "{c:?}");
    }

    #[test]
    fn a_missing_group_is_named_with_the_closest_names() {
        let c = group_check(&GroupRef::Name("Formula Fundamentals".into()), &workspace());
        assert!(!c.ok);
        assert!(c.detail.contains("\"Formula Fundamentals\""), "{c:?}");
        let fix = c.fix.unwrap();
        assert!(
            fix.contains("did you mean \"Formula Fundamentals 2.0\"?"),
            "{fix}"
        );
    }

    #[test]
    fn a_group_named_by_id_must_exist() {
        let ws = workspace();
        let c = group_check(&GroupRef::Id(GroupId::parse("g2").unwrap()), &ws);
        assert!(
            c.ok && c.detail.contains("Formula Fundamentals 2.0"),
            "{c:?}"
        );
        let c = group_check(&GroupRef::Id(GroupId::parse("g9").unwrap()), &ws);
        assert!(!c.ok && c.detail.contains("g9"), "{c:?}");
    }
}
