//! Tables of JSON documents kept in memory and persisted as an append-only log.
//!
//! Every change is one line appended to the file before the call returns, so a process that is
//! killed hard loses nothing it acknowledged (the kernel holds the written bytes). Opening replays
//! the log and compacts it into one line per live document.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize)]
struct Entry {
    t: String,
    k: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v: Option<serde_json::Value>,
}

/// A set of named tables persisted in one file (or only in memory when no path is given).
pub struct Journal {
    tables: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    file: Option<(PathBuf, File)>,
}

impl Journal {
    pub fn in_memory() -> Self {
        Self {
            tables: BTreeMap::new(),
            file: None,
        }
    }

    /// Reads the journal at `path` without taking it over: for reports while another process
    /// (such as `enroll dev`) owns the file. Changes stay in memory.
    pub fn open_read_only(path: &Path) -> io::Result<Self> {
        Ok(Self {
            tables: Self::replay(path)?,
            file: None,
        })
    }

    fn replay(path: &Path) -> io::Result<BTreeMap<String, BTreeMap<String, serde_json::Value>>> {
        let mut tables: BTreeMap<String, BTreeMap<String, serde_json::Value>> = BTreeMap::new();
        if path.exists() {
            for line in BufReader::new(File::open(path)?).lines() {
                let line = line?;
                let Ok(e) = serde_json::from_str::<Entry>(&line) else {
                    continue;
                };
                let table = tables.entry(e.t).or_default();
                match e.v {
                    Some(v) => table.insert(e.k, v),
                    None => table.remove(&e.k),
                };
            }
        }
        Ok(tables)
    }

    /// Opens (or creates) the journal at `path`, replaying and compacting it. A torn last line,
    /// left by a kill in the middle of a write, is ignored.
    pub fn open(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let tables = Self::replay(path)?;
        let tmp = path.with_extension("compact");
        {
            let mut out = io::BufWriter::new(File::create(&tmp)?);
            for (t, rows) in &tables {
                for (k, v) in rows {
                    let e = Entry {
                        t: t.clone(),
                        k: k.clone(),
                        v: Some(v.clone()),
                    };
                    serde_json::to_writer(&mut out, &e)?;
                    out.write_all(b"\n")?;
                }
            }
            out.flush()?;
            out.get_ref().sync_all()?;
        }
        fs::rename(&tmp, path)?;
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Self {
            tables,
            file: Some((path.to_owned(), file)),
        })
    }

    pub fn get<V: DeserializeOwned>(&self, table: &str, key: &str) -> Option<V> {
        self.tables
            .get(table)?
            .get(key)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    pub fn all<V: DeserializeOwned>(&self, table: &str) -> Vec<(String, V)> {
        self.tables
            .get(table)
            .map(|rows| {
                rows.iter()
                    .filter_map(|(k, v)| Some((k.clone(), serde_json::from_value(v.clone()).ok()?)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The rows of `table` whose keys start with `prefix`, in key order.
    pub fn with_prefix<V: DeserializeOwned>(&self, table: &str, prefix: &str) -> Vec<(String, V)> {
        let Some(rows) = self.tables.get(table) else {
            return Vec::new();
        };
        rows.range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, v)| Some((k.clone(), serde_json::from_value(v.clone()).ok()?)))
            .collect()
    }

    pub fn put<V: Serialize>(&mut self, table: &str, key: &str, value: &V) -> io::Result<()> {
        let v = serde_json::to_value(value).map_err(io::Error::other)?;
        self.append(table, key, Some(&v))?;
        self.tables
            .entry(table.to_owned())
            .or_default()
            .insert(key.to_owned(), v);
        Ok(())
    }

    pub fn remove(&mut self, table: &str, key: &str) -> io::Result<()> {
        self.append(table, key, None)?;
        if let Some(rows) = self.tables.get_mut(table) {
            rows.remove(key);
        }
        Ok(())
    }

    fn append(&mut self, table: &str, key: &str, v: Option<&serde_json::Value>) -> io::Result<()> {
        let Some((_, file)) = self.file.as_mut() else {
            return Ok(());
        };
        let mut line = serde_json::to_vec(&Entry {
            t: table.to_owned(),
            k: key.to_owned(),
            v: v.cloned(),
        })
        .map_err(io::Error::other)?;
        line.push(b'\n');
        // One write call per entry: a kill leaves either the whole line or a torn one that
        // replay skips, never a half-applied change.
        file.write_all(&line)
    }

    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(p, _)| p.as_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_and_ignores_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.log");
        {
            let mut j = Journal::open(&path).unwrap();
            j.put("t", "a", &1).unwrap();
            j.put("t", "b", &2).unwrap();
            j.remove("t", "a").unwrap();
        }
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"t\":\"t\",\"k\":\"c\",\"v\"").unwrap();
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.get::<i32>("t", "a"), None);
        assert_eq!(j.get::<i32>("t", "b"), Some(2));
        assert_eq!(j.all::<i32>("t").len(), 1);
    }

    #[test]
    fn prefix_reads_only_matching_keys_in_order() {
        let mut j = Journal::in_memory();
        for k in ["b 2", "a 1", "b 1", "c 1", "b"] {
            j.put("t", k, &k).unwrap();
        }
        let keys: Vec<String> = j
            .with_prefix::<String>("t", "b ")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["b 1", "b 2"]);
        assert!(j.with_prefix::<String>("other", "b").is_empty());
    }
}
