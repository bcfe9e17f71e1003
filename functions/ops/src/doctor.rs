//! `enroll doctor`: the configuration checked against the live services it names, each check
//! with what to fix. The console's Setup page renders the same [`Report`].
//!
//! - `workspace`: the SCIM token answers, and every Group the catalog names exists (by id or
//!   display name, as provision finds it), with the closest existing names when one does not.
//! - `sales`: the sales database is shared with the integration, and the data source rows are
//!   written to has the configured properties with the types enroll writes.
//! - `settings`: what needs no request: a secret per platform, the webhook URL to register on
//!   each, and the rate budgets against Notion's documented limits.
//!
//! Every call is a read. Failures name what to change and where; no check prints a secret.

mod sales;
mod settings;
mod workspace;

use enroll_core::config::Config;
use enroll_notion::RetryPolicy;
use serde::Serialize;
use std::time::Duration;

/// One check's outcome. `ok` false is a failure (the command exits non-zero); `warn` marks a
/// check that passes but deserves a look (shown as `!`), and is only ever set with `ok` true.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub warn: bool,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: true,
            warn: false,
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            warn: true,
            fix: Some(fix.into()),
            ..Self::pass(name, detail)
        }
    }

    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            ok: false,
            fix: Some(fix.into()),
            ..Self::pass(name, detail)
        }
    }

    /// `✓`, `!` or `✗`: how the command line and the console mark it.
    pub fn mark(&self) -> &'static str {
        match (self.ok, self.warn) {
            (false, _) => "✗",
            (true, true) => "!",
            (true, false) => "✓",
        }
    }
}

/// Every check, in the order they ran.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// True when no check failed (warnings pass).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    pub fn failures(&self) -> usize {
        self.checks.iter().filter(|c| !c.ok).count()
    }

    pub fn warnings(&self) -> usize {
        self.checks.iter().filter(|c| c.ok && c.warn).count()
    }
}

/// Runs every check. `webhook_base` is the public base URL webhooks arrive at (a tunnel in
/// front of `enroll dev`, or the stack's function URL), when known; the URL to register on a
/// platform is `<webhook_base>/webhooks/<platform>`.
pub async fn run(config: &Config, webhook_base: Option<&str>) -> Report {
    let (workspace, sales) = tokio::join!(workspace::checks(config), sales::checks(config));
    let mut checks = workspace;
    checks.extend(sales);
    checks.extend(settings::platforms(config));
    checks.extend(settings::webhooks(config, webhook_base));
    checks.extend(settings::rates(config));
    Report { checks }
}

/// A check waits for an answer, not for an outage to pass: two attempts, short waits.
fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        attempts: 2,
        max_wait: Duration::from_secs(2),
        first_backoff: Duration::from_millis(200),
    }
}

/// What a refused call means for a setup, as a detail and a fix; `api` names the setting
/// (`scim` or `notion`), `token_fix` says how to replace its token.
fn refused(
    api: &str,
    base_url: &str,
    r: &enroll_notion::Refusal,
    token_fix: &str,
) -> (String, String) {
    let why = &r.failure.reason;
    match r.status {
        None => (
            format!("cannot reach {api}.base_url ({base_url}): {why}"),
            format!("check {api}.base_url and this machine's network access to it"),
        ),
        Some(401 | 403) => (
            format!("token invalid or revoked: {why}"),
            token_fix.to_owned(),
        ),
        Some(_) => (
            why.clone(),
            format!("check {api}.base_url ({base_url}) and the token"),
        ),
    }
}

/// Up to three `candidates` closest to `wanted`, nearest first, comparing without case: those
/// within an edit distance of half `wanted`'s length (at least 2), or containing it or
/// contained in it. A name far from every candidate gets no suggestion.
pub fn closest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let w = wanted.to_lowercase();
    let limit = (w.chars().count() / 2).max(2);
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter(|c| !c.is_empty())
        .filter_map(|c| {
            let lc = c.to_lowercase();
            let d = levenshtein(&w, &lc);
            (d <= limit || lc.contains(&w) || w.contains(&lc)).then_some((d, c))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(3).map(|(_, c)| c).collect()
}

/// The edit distance (insertions, deletions, substitutions) between two strings, by
/// characters.
pub fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// `"a", "b" or "c"`, for a fix that suggests names.
fn quoted_list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levenshtein_counts_edits() {
        assert_eq!(levenshtein("", ""), 0);
        assert_eq!(levenshtein("abc", ""), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("Notion Mastry", "Notion Mastery"), 1);
        assert_eq!(levenshtein("flaw", "lawn"), 2);
        assert_eq!(levenshtein("é", "e"), 1);
    }

    #[test]
    fn closest_suggests_near_names_nearest_first_ignoring_case() {
        let groups = [
            "Notion Mastery",
            "Notion Mastery Alumni",
            "Formula Fundamentals 2.0",
            "Staff",
        ];
        assert_eq!(closest("notion mastry", groups), vec!["Notion Mastery"]);
        assert_eq!(
            closest("Mastery", groups),
            vec!["Notion Mastery", "Notion Mastery Alumni"]
        );
        assert_eq!(
            closest("Formula Fundamentals", groups),
            vec!["Formula Fundamentals 2.0"]
        );
        assert_eq!(closest("STAFF", groups), vec!["Staff"]);
    }

    #[test]
    fn closest_suggests_nothing_far_away_and_at_most_three() {
        assert!(closest("Accounting", ["Notion Mastery", "Staff"]).is_empty());
        assert!(closest("x", Vec::<&str>::new()).is_empty());
        let many = ["ab", "abc", "abd", "abe", "abf"];
        assert_eq!(closest("ab", many).len(), 3);
        assert_eq!(closest("ab", many)[0], "ab");
    }

    #[test]
    fn quoted_list_reads_as_a_sentence() {
        assert_eq!(quoted_list(&["a"]), "\"a\"");
        assert_eq!(quoted_list(&["a", "b", "c"]), "\"a\", \"b\" or \"c\"");
    }

    #[test]
    fn a_report_passes_with_warnings_and_fails_with_a_failure() {
        let mut report = Report {
            checks: vec![Check::pass("a", "fine"), Check::warn("b", "hm", "look")],
        };
        assert!(report.passed());
        assert_eq!((report.failures(), report.warnings()), (0, 1));
        report.checks.push(Check::fail("c", "broken", "fix it"));
        assert!(!report.passed());
        assert_eq!(
            report.checks.iter().map(Check::mark).collect::<Vec<_>>(),
            ["✓", "!", "✗"]
        );
    }
}
