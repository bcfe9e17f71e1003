//! The simulated workspace: what `GET/PUT /_sim/state` dumps and seeds. JSON field names are
//! the Rust field names (snake_case, like every `/_sim/` body) and almost everything has a
//! default, so a hand-written seed can stay short:
//! `{"users": [{"user_name": "a@b.co"}], "groups": [{"display_name": "Course"}]}`.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Notion reports timestamps to the millisecond; keeping the same precision makes a dumped
/// state compare equal after a round trip.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// Everything the simulator knows. Order matters: lists are answered in this order.
#[derive(Serialize, Deserialize, Clone, Default, Debug, PartialEq)]
pub struct SimState {
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub groups: Vec<Group>,
    #[serde(default)]
    pub databases: Vec<Database>,
    #[serde(default)]
    pub pages: Vec<Page>,
}

/// A Notion account as SCIM sees it. `active = false` means it was deactivated (PATCH/PUT);
/// `deleted = true` means `DELETE /Users/{id}` removed it: SCIM then answers 404 for it, but the
/// account survives so a later `POST /Users` with the same userName brings back the same id.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct User {
    #[serde(default = "new_id")]
    pub id: String,
    pub user_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default)]
    pub emails: Vec<Email>,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub deleted: bool,
    /// owner | membership_admin | member | restricted_member
    #[serde(default = "member")]
    pub role: String,
    #[serde(default = "now")]
    pub created: DateTime<Utc>,
    #[serde(default = "now")]
    pub last_modified: DateTime<Utc>,
}

impl User {
    /// A member of the workspace: visible to SCIM and allowed in Groups.
    pub fn is_member(&self) -> bool {
        self.active && !self.deleted
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Name {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatted: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Email {
    pub value: String,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub primary: bool,
}

fn yes() -> bool {
    true
}

fn member() -> String {
    "member".to_owned()
}

/// A Notion Group; `members` holds user ids.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Group {
    #[serde(default = "new_id")]
    pub id: String,
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default)]
    pub members: Vec<String>,
    #[serde(default = "now")]
    pub created: DateTime<Utc>,
    #[serde(default = "now")]
    pub last_modified: DateTime<Utc>,
}

/// A database of the public API (version 2025-09-03 shape: it holds data sources, which hold
/// the property schema).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Database {
    #[serde(default = "new_id")]
    pub id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub data_sources: Vec<DataSource>,
    #[serde(default = "now")]
    pub created_time: DateTime<Utc>,
    #[serde(default = "now")]
    pub last_edited_time: DateTime<Utc>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DataSource {
    #[serde(default = "new_id")]
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// Property name to its type, e.g. `{"Name": "title", "Email": "email"}`.
    #[serde(default)]
    pub properties: BTreeMap<String, PropertyKind>,
}

/// The property types the simulator can store and filter.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PropertyKind {
    Title,
    RichText,
    Email,
    Number,
    Select,
    Checkbox,
    Url,
    PhoneNumber,
}

impl PropertyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Title => "title",
            Self::RichText => "rich_text",
            Self::Email => "email",
            Self::Number => "number",
            Self::Select => "select",
            Self::Checkbox => "checkbox",
            Self::Url => "url",
            Self::PhoneNumber => "phone_number",
        }
    }

    pub fn is_text(self) -> bool {
        matches!(
            self,
            Self::Title | Self::RichText | Self::Email | Self::Url | Self::PhoneNumber
        )
    }
}

/// A row of a data source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Page {
    #[serde(default = "new_id")]
    pub id: String,
    pub data_source_id: String,
    /// Property name to value; properties of the schema that are absent read as empty.
    #[serde(default)]
    pub properties: BTreeMap<String, PropertyValue>,
    #[serde(default)]
    pub in_trash: bool,
    #[serde(default = "now")]
    pub created_time: DateTime<Utc>,
    #[serde(default = "now")]
    pub last_edited_time: DateTime<Utc>,
}

/// A stored property value. Text keeps its segments (one per rich text object) but not their
/// annotations, e.g. `{"rich_text": ["part one", "part two"]}` or `{"email": "a@b.co"}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum PropertyValue {
    Title(Vec<String>),
    RichText(Vec<String>),
    Email(Option<String>),
    Number(Option<f64>),
    Select(Option<String>),
    Checkbox(bool),
    Url(Option<String>),
    PhoneNumber(Option<String>),
}

impl PropertyValue {
    pub fn kind(&self) -> PropertyKind {
        match self {
            Self::Title(_) => PropertyKind::Title,
            Self::RichText(_) => PropertyKind::RichText,
            Self::Email(_) => PropertyKind::Email,
            Self::Number(_) => PropertyKind::Number,
            Self::Select(_) => PropertyKind::Select,
            Self::Checkbox(_) => PropertyKind::Checkbox,
            Self::Url(_) => PropertyKind::Url,
            Self::PhoneNumber(_) => PropertyKind::PhoneNumber,
        }
    }

    /// The empty value Notion reports for a property that was never set.
    pub fn empty(kind: PropertyKind) -> Self {
        match kind {
            PropertyKind::Title => Self::Title(Vec::new()),
            PropertyKind::RichText => Self::RichText(Vec::new()),
            PropertyKind::Email => Self::Email(None),
            PropertyKind::Number => Self::Number(None),
            PropertyKind::Select => Self::Select(None),
            PropertyKind::Checkbox => Self::Checkbox(false),
            PropertyKind::Url => Self::Url(None),
            PropertyKind::PhoneNumber => Self::PhoneNumber(None),
        }
    }

    /// The value as plain text, for text filters; `None` when it is not text or is empty.
    pub fn plain_text(&self) -> Option<String> {
        match self {
            Self::Title(parts) | Self::RichText(parts) => {
                let text = parts.concat();
                (!text.is_empty()).then_some(text)
            }
            Self::Email(v) | Self::Url(v) | Self::PhoneNumber(v) | Self::Select(v) => {
                v.clone().filter(|s| !s.is_empty())
            }
            Self::Number(_) | Self::Checkbox(_) => None,
        }
    }
}
