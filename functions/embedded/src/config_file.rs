//! Where the configuration comes from: `--config FILE`, or the commented example shipped in
//! `infra/`, compiled in so `enroll dev` and `enroll demo` run with no flags from anywhere.

use anyhow::Context;
use enroll_core::config::Config;
use std::path::Path;

pub const EXAMPLE: &str = include_str!("../../../infra/enroll.example.toml");

/// Loads and validates the configuration; errors name the file and the bad field.
pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
    let env = |k: &str| std::env::var(k).ok();
    match path {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Config::from_toml(&text, env).with_context(|| format!("in {}", p.display()))
        }
        None => Config::from_toml(EXAMPLE, env).context("in the built-in example configuration"),
    }
}
