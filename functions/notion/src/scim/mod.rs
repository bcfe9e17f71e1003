//! Notion's SCIM 2.0 API (RFC 7644) as the [`Directory`] port: find, create and remove workspace
//! members, and change Group membership in batches.

mod wire;

pub use wire::{
    add_members_body, create_user_body, encode_query_value, escape_filter_value, group_filter,
    remove_members_body, user_filter,
};
use wire::{parse_list, parse_user, Listed};

use crate::http::{Api, Http, Replay, Request};
use crate::probe::Refusal;
use crate::retry::{self, RetryPolicy, Retryable};
use enroll_core::config::{RemoveForm, ScimConfig};
use enroll_core::ids::{BuyerEmail, GroupId, NotionUserId};
use enroll_core::ports::{Created, Directory, RateBudget, ScimUser};
use enroll_core::Failure;
use futures::stream::{self, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const NOTION_USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:notion:2.0:User";
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Enough to see whether a filter matched more than one member.
const FIND_USER_COUNT: usize = 2;
/// The most SCIM list endpoints return per page.
const PAGE_SIZE: usize = 100;
/// Stops a server that never reports an end from keeping a backfill paging forever.
const MAX_PAGES: usize = 10_000;
/// Pages of a member list requested at once: enough to keep a budget of about 100 requests per
/// second busy at Notion's ~120 ms per request, few enough not to flood a slow server.
const PAGE_CONCURRENCY: usize = 16;

/// The SCIM client. Build once per process; it holds one HTTP connection pool.
///
/// - Users are found with `GET /Users?filter=<attr> eq "<address>"&startIndex=1&count=2`: two
///   results are enough to notice an ambiguous match, and only a member whose `userName` or an
///   email equals the address is returned (never merely the first result).
/// - `add_members` with no users sends nothing; `remove_members` with no users is refused as a
///   permanent failure, since a remove without members is how a Group gets emptied.
/// - Group PATCHes are retried after a 5xx (repeating them changes nothing); `POST /Users` is
///   not, see [`Directory::create_user`] below.
pub struct ScimClient {
    http: Http,
    filter_attribute: String,
    remove_form: RemoveForm,
    batch_size: usize,
    /// Notion's role for new members; `None` sends the core User schema alone.
    role: Option<String>,
}

impl ScimClient {
    pub fn new(cfg: &ScimConfig, budget: Arc<dyn RateBudget>) -> Result<Self, Failure> {
        let attr = &cfg.user_filter_attribute;
        // The attribute goes into the filter unquoted, so it must be a bare attribute path.
        if attr.is_empty() || !attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
            return Err(Failure::permanent(
                "scim.user_filter_attribute must be a SCIM attribute name such as userName",
            ));
        }
        Ok(Self {
            http: Http::new(
                Api::Scim,
                &cfg.base_url,
                &cfg.token,
                cfg.timeout_secs,
                Default::default(),
                budget,
            )?,
            filter_attribute: attr.clone(),
            remove_form: cfg.remove_form,
            batch_size: cfg.batch_size.max(1),
            role: cfg
                .role
                .as_deref()
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned),
        })
    }

    /// Replaces the default [`RetryPolicy`].
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.http.set_policy(policy);
        self
    }

    /// One page of workspace members (`startIndex` is 1-based, `count` at most 100) and the
    /// total the server reports.
    pub async fn list_users_page(
        &self,
        start_index: usize,
        count: usize,
    ) -> Result<(Vec<ScimUser>, usize), Failure> {
        let (users, _, total) = self.users_page(start_index, count).await?;
        Ok((users, total))
    }

    async fn users_page(
        &self,
        start_index: usize,
        count: usize,
    ) -> Result<(Vec<ScimUser>, usize, usize), Failure> {
        let path = format!(
            "/Users?startIndex={}&count={}",
            start_index.max(1),
            count.clamp(1, PAGE_SIZE)
        );
        let reply = self
            .http
            .send(Request::get(path, "/Users"))
            .await
            .map_err(|e| Failure::from(e).context("SCIM list users"))?;
        let (resources, total) = parse_list(&reply.body);
        let users = resources
            .iter()
            .filter_map(parse_user)
            .map(|l| l.user)
            .collect();
        Ok((users, resources.len(), total))
    }

    /// Every workspace member, for the backfill and audit tools, in the server's order.
    ///
    /// The first page tells the total; the remaining pages are then requested together, at
    /// most [`PAGE_CONCURRENCY`] at a time, each still waiting for the shared budget, so a
    /// large workspace is listed at the budget's rate rather than one round trip at a time.
    /// The stop rules of one-page-at-a-time paging still hold: an empty page ends the list,
    /// nothing past the total is asked for, and never more than [`MAX_PAGES`] pages. A page
    /// shorter than the first leaves a gap before the next one, which is filled one page at a
    /// time; a total that grew meanwhile is followed to its end the same way.
    pub async fn list_all_users(&self) -> Result<Vec<ScimUser>, Failure> {
        let (mut all, size, mut total) = self.users_page(1, PAGE_SIZE).await?;
        let mut next = 1 + size;
        let mut pages = 1;
        if size == 0 || next > total {
            return Ok(all);
        }
        // The first page's length is the server's page size.
        let starts: Vec<usize> = (next..=total)
            .step_by(size)
            .take(MAX_PAGES - pages)
            .collect();
        let mut fetched = stream::iter(starts)
            .map(|start| async move { (start, self.users_page(start, size).await) })
            .buffered(PAGE_CONCURRENCY);
        while let Some((start, page)) = fetched.next().await {
            while next < start && pages < MAX_PAGES {
                let (users, seen, _) = self.users_page(next, start - next).await?;
                pages += 1;
                if seen == 0 {
                    return Ok(all);
                }
                all.extend(users);
                next += seen;
            }
            let (users, seen, now_total) = page?;
            pages += 1;
            if seen == 0 {
                return Ok(all);
            }
            all.extend(users);
            next = start + seen;
            total = now_total;
        }
        drop(fetched);
        while next <= total && pages < MAX_PAGES {
            let (users, seen, now_total) = self.users_page(next, PAGE_SIZE).await?;
            pages += 1;
            if seen == 0 {
                break;
            }
            all.extend(users);
            next += seen;
            total = now_total;
        }
        Ok(all)
    }

    /// The user ids in a Group.
    #[tracing::instrument(name = "scim.group_members", skip_all, fields(group = %group))]
    pub async fn group_members(&self, group: &GroupId) -> Result<Vec<NotionUserId>, Failure> {
        let path = format!("/Groups/{}", encode_query_value(group.as_str()));
        let reply = self
            .http
            .send(Request::get(path, "/Groups/{id}"))
            .await
            .map_err(|e| Failure::from(e).context("SCIM group members"))?;
        Ok(reply
            .body
            .get("members")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|m| {
                m.get("type")
                    .and_then(Value::as_str)
                    .is_none_or(|t| t.eq_ignore_ascii_case("user"))
            })
            .filter_map(|m| m.get("value")?.as_str())
            .filter_map(|v| NotionUserId::parse(v).ok())
            .collect())
    }

    /// The cheapest authenticated call, `GET /Users?startIndex=1&count=1`, for a setup check:
    /// the number of members the server reports.
    pub async fn check_token(&self) -> Result<usize, Refusal> {
        let reply = self
            .http
            .send(Request::get("/Users?startIndex=1&count=1".into(), "/Users"))
            .await
            .map_err(|e| Refusal::new(e, "SCIM list users"))?;
        Ok(parse_list(&reply.body).1)
    }

    /// Every Group's id and display name (members left out), page by page, for a setup check.
    pub async fn list_groups(&self) -> Result<Vec<(GroupId, String)>, Refusal> {
        let mut all = Vec::new();
        let mut next = 1;
        for _ in 0..MAX_PAGES {
            let path =
                format!("/Groups?startIndex={next}&count={PAGE_SIZE}&excludedAttributes=members");
            let reply = self
                .http
                .send(Request::get(path, "/Groups"))
                .await
                .map_err(|e| Refusal::new(e, "SCIM list groups"))?;
            let (resources, total) = parse_list(&reply.body);
            all.extend(resources.iter().filter_map(|g| {
                let id = GroupId::parse(g.get("id")?.as_str()?).ok()?;
                let name = g.get("displayName").and_then(Value::as_str).unwrap_or("");
                Some((id, name.to_owned()))
            }));
            next += resources.len();
            if resources.is_empty() || next > total {
                break;
            }
        }
        Ok(all)
    }

    /// Sends Group PATCHes of at most `batch_size` members each; a 413 splits the batch in two
    /// until a single member is refused.
    async fn patch_members(
        &self,
        group: &GroupId,
        users: &[NotionUserId],
        body: impl Fn(&[NotionUserId]) -> Result<Value, Failure>,
        what: &str,
    ) -> Result<(), Failure> {
        let mut seen = HashSet::new();
        let users: Vec<NotionUserId> = users
            .iter()
            .filter(|u| seen.insert(u.as_str()))
            .cloned()
            .collect();
        let path = format!("/Groups/{}", encode_query_value(group.as_str()));
        let mut pending: VecDeque<&[NotionUserId]> = users.chunks(self.batch_size).collect();
        while let Some(batch) = pending.pop_front() {
            let body = body(batch)?;
            // Safe to repeat: adding a member twice or removing a non-member succeeds
            // (RFC 7644 section 3.5.2), so a 5xx after the server acted does no harm.
            let req = Request::with_body(Method::PATCH, path.clone(), "/Groups/{id}", &body)
                .replay(Replay::Safe);
            match self.http.send(req).await {
                Ok(_) => {}
                Err(e) if e.is(StatusCode::PAYLOAD_TOO_LARGE) && batch.len() > 1 => {
                    let (a, b) = batch.split_at(batch.len() / 2);
                    tracing::info!(from = batch.len(), to = a.len(), "413: splitting the batch");
                    pending.push_front(b);
                    pending.push_front(a);
                }
                Err(e) => return Err(Failure::from(e).context(what)),
            }
        }
        Ok(())
    }

    async fn lookup(&self, email: &BuyerEmail) -> Result<Option<ScimUser>, Failure> {
        let filter = user_filter(&self.filter_attribute, email.as_str());
        let path = format!(
            "/Users?filter={}&startIndex=1&count={FIND_USER_COUNT}",
            encode_query_value(&filter)
        );
        let reply = self
            .http
            .send(Request::get(path, "/Users?filter"))
            .await
            .map_err(|e| Failure::from(e).context("SCIM find user"))?;
        let (resources, _) = parse_list(&reply.body);
        let listed: Vec<Listed> = resources.iter().filter_map(parse_user).collect();
        let wanted = email.as_str();
        if let Some(i) = listed.iter().position(|l| l.is(wanted)) {
            return Ok(Some(
                listed
                    .into_iter()
                    .nth(i)
                    .expect("position is in range")
                    .user,
            ));
        }
        match listed.as_slice() {
            [] => Ok(None),
            // Nothing to check the match against: trust the server's filter.
            [only] if !only.has_user_name && only.emails.is_empty() => {
                Ok(listed.into_iter().next().map(|l| l.user))
            }
            // Never hand back somebody else's account: a server ignoring the filter, or an
            // attribute matching loosely, would otherwise grant this buyer's access to them.
            _ => Err(Failure::permanent(format!(
                "SCIM find user: {} member(s) matched {} eq <address> but none has this address; \
                 check scim.user_filter_attribute",
                listed.len(),
                self.filter_attribute
            ))),
        }
    }
}

/// How one POST of a new member failed, as the create loop's retry sees it.
enum CreateFailed {
    /// A 5xx or a timeout: the member may exist now. Retried after a look-up, which ends the
    /// call if it finds the member; never with the server's Retry-After, only the backoff.
    MaybeApplied(Failure),
    /// Anything else: the POST's own retries are done, or the look-up failed.
    Stop(Failure),
}

impl Retryable for CreateFailed {
    fn is_retryable(&self) -> bool {
        matches!(self, CreateFailed::MaybeApplied(_))
    }
}

#[async_trait::async_trait]
impl Directory for ScimClient {
    #[tracing::instrument(name = "scim.find_user", skip_all, fields(buyer = %email))]
    async fn find_user(&self, email: &BuyerEmail) -> Result<Option<ScimUser>, Failure> {
        self.lookup(email).await
    }

    #[tracing::instrument(name = "scim.get_user", skip_all, fields(user = %id))]
    async fn get_user(&self, id: &NotionUserId) -> Result<Option<ScimUser>, Failure> {
        let path = format!("/Users/{}", encode_query_value(id.as_str()));
        match self.http.send(Request::get(path, "/Users/{id}")).await {
            Ok(reply) => parse_user(&reply.body)
                .map(|l| Some(l.user))
                .ok_or_else(|| Failure::permanent("SCIM get user: the response holds no user id")),
            Err(e) if e.is(StatusCode::NOT_FOUND) => Ok(None),
            Err(e) => Err(Failure::from(e).context("SCIM get user")),
        }
    }

    /// A POST is not repeated blindly: after a 5xx or a timeout the server may have created
    /// the member, so the member is looked up first and the POST sent again only if absent
    /// (a duplicate would at worst earn a 409, reported as [`Created::AlreadyExists`]).
    #[tracing::instrument(name = "scim.create_user", skip_all, fields(buyer = %email))]
    async fn create_user(
        &self,
        email: &BuyerEmail,
        name: Option<&str>,
    ) -> Result<Created, Failure> {
        let body = create_user_body(email, name, self.role.as_deref());
        // The failure of the POST before, when the server may have acted on it.
        let maybe_created: Mutex<Option<Failure>> = Mutex::new(None);
        let op = || async {
            let before = maybe_created.lock().expect("not poisoned").take();
            if let Some(failure) = before {
                match self.lookup(email).await {
                    Ok(Some(user)) => return Ok(Created::Created(user)),
                    Ok(None) => {}
                    Err(_) => return Err(CreateFailed::Stop(failure)),
                }
            }
            let req = Request::with_body(Method::POST, "/Users".into(), "/Users", &body);
            match self.http.send(req).await {
                Ok(reply) => Ok(match parse_user(&reply.body) {
                    Some(l) => Created::Created(l.user),
                    // Created, but the body does not say as whom: let the caller look up.
                    None => Created::AlreadyExists,
                }),
                Err(e) if e.is(StatusCode::CONFLICT) => Ok(Created::AlreadyExists),
                Err(e) if e.maybe_applied && e.failure.is_retryable() => {
                    *maybe_created.lock().expect("not poisoned") = Some(e.failure.clone());
                    Err(CreateFailed::MaybeApplied(e.failure))
                }
                Err(e) => Err(CreateFailed::Stop(e.failure)),
            }
        };
        retry::retry(&self.http.policy(), op)
            .await
            .map_err(|e| match e {
                CreateFailed::MaybeApplied(f) | CreateFailed::Stop(f) => {
                    f.context("SCIM create user")
                }
            })
    }

    #[tracing::instrument(name = "scim.add_members", skip_all, fields(group = %group, n = users.len()))]
    async fn add_members(&self, group: &GroupId, users: &[NotionUserId]) -> Result<(), Failure> {
        if users.is_empty() {
            return Ok(());
        }
        self.patch_members(
            group,
            users,
            |b| Ok(add_members_body(b)),
            "SCIM add members",
        )
        .await
    }

    /// Refuses an empty list rather than sending nothing or, worse, a bare `members` remove.
    #[tracing::instrument(name = "scim.remove_members", skip_all, fields(group = %group, n = users.len()))]
    async fn remove_members(&self, group: &GroupId, users: &[NotionUserId]) -> Result<(), Failure> {
        let form = self.remove_form;
        remove_members_body(form, users)?;
        self.patch_members(
            group,
            users,
            |b| remove_members_body(form, b),
            "SCIM remove members",
        )
        .await
    }

    #[tracing::instrument(name = "scim.find_group", skip_all)]
    async fn find_group(&self, display_name: &str) -> Result<Option<GroupId>, Failure> {
        let path = format!(
            "/Groups?filter={}&excludedAttributes=members",
            encode_query_value(&group_filter(display_name))
        );
        let reply = self
            .http
            .send(Request::get(path, "/Groups?filter"))
            .await
            .map_err(|e| Failure::from(e).context("SCIM find group"))?;
        let (resources, _) = parse_list(&reply.body);
        let groups: Vec<(GroupId, Option<&str>)> = resources
            .iter()
            .filter_map(|g| {
                let id = GroupId::parse(g.get("id")?.as_str()?).ok()?;
                Some((id, g.get("displayName").and_then(Value::as_str)))
            })
            .collect();
        if let Some((id, _)) = groups.iter().find(|g| g.1 == Some(display_name)) {
            return Ok(Some(id.clone()));
        }
        // displayName compares case-insensitively under RFC 7643; one such match is the Group.
        let close: Vec<&GroupId> = groups
            .iter()
            .filter(|g| {
                g.1.is_none_or(|n| n.to_lowercase() == display_name.to_lowercase())
            })
            .map(|g| &g.0)
            .collect();
        match close.as_slice() {
            [] if groups.is_empty() => Ok(None),
            [one] => Ok(Some((*one).clone())),
            _ => Err(Failure::permanent(format!(
                "SCIM find group: {} Groups returned for one displayName, none exactly {display_name:?}",
                groups.len()
            ))),
        }
    }

    #[tracing::instrument(name = "scim.remove_user", skip_all, fields(user = %id))]
    async fn remove_user(&self, id: &NotionUserId) -> Result<(), Failure> {
        let path = format!("/Users/{}", encode_query_value(id.as_str()));
        match self.http.send(Request::delete(path, "/Users/{id}")).await {
            Ok(_) => Ok(()),
            Err(e) if e.is(StatusCode::NOT_FOUND) => Ok(()),
            Err(e) => Err(Failure::from(e).context("SCIM remove user")),
        }
    }
}
