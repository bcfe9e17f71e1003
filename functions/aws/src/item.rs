//! Mapping between domain records and DynamoDB items, in both directions, through one trait.
//!
//! Ledger records travel as a JSON document in `doc` beside a numeric `version`: the document's
//! shape belongs to `enroll-core`, while the version, the keys and the `due` index attributes
//! are what conditions and queries need to see.

use crate::error::AwsError;
use crate::schema::{
    buyer_pk, idem_pk, order_pk, sortable_time, user_pk, DUE_AT, DUE_PARTITION, DUE_PK, PK, SK,
    SK_BUYER, SK_IDEM, SK_ORDER, SK_USER, TTL_ATTRIBUTE,
};
use aws_sdk_dynamodb::types::AttributeValue;
use enroll_core::idempotency::{IdempotencyRecord, Status};
use enroll_core::ids::{BuyerEmail, NotionUserId};
use enroll_core::ledger::{BuyerRecord, OrderRecord};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::str::FromStr;

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) const ID: &str = "id";
pub(crate) const STATUS: &str = "status";
pub(crate) const EXPIRATION: &str = TTL_ATTRIBUTE;
pub(crate) const IN_PROGRESS_EXPIRATION: &str = "in_progress_expiration";
pub(crate) const PAYLOAD_HASH: &str = "payload_hash";
pub(crate) const OWNER: &str = "owner";
pub(crate) const OUTCOME: &str = "outcome";
pub(crate) const DOC: &str = "doc";
pub(crate) const VERSION: &str = "version";
pub(crate) const EMAIL: &str = "email";

pub(crate) const IN_PROGRESS: &str = "INPROGRESS";
pub(crate) const COMPLETED: &str = "COMPLETED";

/// A domain record stored as one item.
pub(crate) trait Record: Sized {
    /// Names the record in errors.
    const WHAT: &'static str;
    fn to_item(&self) -> Result<Item, AwsError>;
    fn from_item(item: &Item) -> Result<Self, AwsError>;
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Typed reads of one item's attributes, naming the record and attribute when one is wrong.
struct Attrs<'a> {
    what: &'static str,
    item: &'a Item,
}

impl<'a> Attrs<'a> {
    fn bad(&self, why: String) -> AwsError {
        AwsError::malformed(format!("{} item", self.what), why)
    }

    fn opt_s(&self, name: &str) -> Result<Option<&'a str>, AwsError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v)),
            Some(_) => Err(self.bad(format!("{name} is not a string"))),
        }
    }

    fn s(&self, name: &str) -> Result<&'a str, AwsError> {
        self.opt_s(name)?
            .ok_or_else(|| self.bad(format!("{name} is missing")))
    }

    fn n<T: FromStr>(&self, name: &str) -> Result<T, AwsError> {
        match self.item.get(name) {
            Some(AttributeValue::N(v)) => v
                .parse()
                .map_err(|_| self.bad(format!("{name} is not a whole number"))),
            Some(_) => Err(self.bad(format!("{name} is not a number"))),
            None => Err(self.bad(format!("{name} is missing"))),
        }
    }

    /// Parse errors name the position only: serde's messages may quote a value, such as an
    /// email address.
    fn json<T: DeserializeOwned>(&self, name: &str) -> Result<T, AwsError> {
        serde_json::from_str(self.s(name)?)
            .map_err(|e| self.bad(format!("{name} is not a valid document ({})", json_why(&e))))
    }
}

pub(crate) fn json_why(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

fn to_doc<T: serde::Serialize>(what: &'static str, value: &T) -> Result<AttributeValue, AwsError> {
    serde_json::to_string(value)
        .map(AttributeValue::S)
        .map_err(|e| AwsError::malformed(what, json_why(&e)))
}

impl Record for IdempotencyRecord {
    const WHAT: &'static str = "idempotency";

    fn to_item(&self) -> Result<Item, AwsError> {
        let status = match self.status {
            Status::InProgress => IN_PROGRESS,
            Status::Completed => COMPLETED,
        };
        let mut item = Item::from([
            (PK.to_owned(), s(idem_pk(&self.key))),
            (SK.to_owned(), s(SK_IDEM)),
            (ID.to_owned(), s(&self.key)),
            (STATUS.to_owned(), s(status)),
            (EXPIRATION.to_owned(), n(self.expiration)),
            (
                IN_PROGRESS_EXPIRATION.to_owned(),
                n(self.in_progress_expiration),
            ),
            (PAYLOAD_HASH.to_owned(), s(&self.payload_hash)),
            (OWNER.to_owned(), s(&self.owner)),
        ]);
        if let Some(outcome) = &self.outcome {
            item.insert(OUTCOME.to_owned(), s(outcome));
        }
        Ok(item)
    }

    fn from_item(item: &Item) -> Result<Self, AwsError> {
        let a = Attrs {
            what: Self::WHAT,
            item,
        };
        let status = match a.s(STATUS)? {
            IN_PROGRESS => Status::InProgress,
            COMPLETED => Status::Completed,
            other => return Err(a.bad(format!("unknown status {other:?}"))),
        };
        Ok(Self {
            key: a.s(ID)?.to_owned(),
            status,
            expiration: a.n(EXPIRATION)?,
            in_progress_expiration: a.n(IN_PROGRESS_EXPIRATION)?,
            payload_hash: a.opt_s(PAYLOAD_HASH)?.unwrap_or_default().to_owned(),
            owner: a.s(OWNER)?.to_owned(),
            outcome: a.opt_s(OUTCOME)?.map(str::to_owned),
        })
    }
}

impl Record for OrderRecord {
    const WHAT: &'static str = "order";

    fn to_item(&self) -> Result<Item, AwsError> {
        Ok(Item::from([
            (PK.to_owned(), s(order_pk(&self.order))),
            (SK.to_owned(), s(SK_ORDER)),
            (DOC.to_owned(), to_doc(Self::WHAT, self)?),
            (VERSION.to_owned(), n(self.version)),
        ]))
    }

    fn from_item(item: &Item) -> Result<Self, AwsError> {
        let a = Attrs {
            what: Self::WHAT,
            item,
        };
        let mut record: Self = a.json(DOC)?;
        // The attribute is what conditional writes compare, so it is the truth.
        record.version = a.n(VERSION)?;
        Ok(record)
    }
}

impl Record for BuyerRecord {
    const WHAT: &'static str = "buyer";

    fn to_item(&self) -> Result<Item, AwsError> {
        let mut item = Item::from([
            (PK.to_owned(), s(buyer_pk(&self.email))),
            (SK.to_owned(), s(SK_BUYER)),
            (DOC.to_owned(), to_doc(Self::WHAT, self)?),
            (VERSION.to_owned(), n(self.version)),
        ]);
        // Absent attributes keep the buyer out of the sparse `due` index.
        if let Some(at) = self.next_change_at {
            item.insert(DUE_PK.to_owned(), s(DUE_PARTITION));
            item.insert(DUE_AT.to_owned(), s(sortable_time(at)));
        }
        Ok(item)
    }

    fn from_item(item: &Item) -> Result<Self, AwsError> {
        let a = Attrs {
            what: Self::WHAT,
            item,
        };
        let mut record: Self = a.json(DOC)?;
        record.version = a.n(VERSION)?;
        Ok(record)
    }
}

/// The identity index: which buyer a Notion user id belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserIndex {
    pub user: NotionUserId,
    pub email: BuyerEmail,
}

impl Record for UserIndex {
    const WHAT: &'static str = "user index";

    fn to_item(&self) -> Result<Item, AwsError> {
        Ok(Item::from([
            (PK.to_owned(), s(user_pk(&self.user))),
            (SK.to_owned(), s(SK_USER)),
            (EMAIL.to_owned(), s(self.email.as_str())),
        ]))
    }

    fn from_item(item: &Item) -> Result<Self, AwsError> {
        let a = Attrs {
            what: Self::WHAT,
            item,
        };
        let pk = a.s(PK)?;
        let user = pk
            .strip_prefix("user#")
            .and_then(|u| NotionUserId::parse(u).ok())
            .ok_or_else(|| a.bad("pk is not user#<id>".into()))?;
        let email = BuyerEmail::parse(a.s(EMAIL)?)
            .map_err(|_| a.bad("email is not a valid address".into()))?;
        Ok(Self { user, email })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use enroll_core::ids::{OrderId, OrderKey, Platform};

    #[test]
    fn idempotency_record_round_trips() {
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut r = IdempotencyRecord::in_progress("stripe:evt_1", "h", "o", now, now);
        assert_eq!(
            IdempotencyRecord::from_item(&r.to_item().unwrap()).unwrap(),
            r
        );
        r.status = Status::Completed;
        r.outcome = Some("done".into());
        assert_eq!(
            IdempotencyRecord::from_item(&r.to_item().unwrap()).unwrap(),
            r
        );
    }

    #[test]
    fn version_attribute_wins_over_the_document() {
        let key = OrderKey {
            platform: Platform::Stripe,
            order_id: OrderId::parse("cs_1").unwrap(),
        };
        let mut item = OrderRecord::new(key).to_item().unwrap();
        item.insert(VERSION.into(), n(7));
        assert_eq!(OrderRecord::from_item(&item).unwrap().version, 7);
    }

    #[test]
    fn buyer_with_next_change_joins_the_due_index_and_parse_errors_hide_values() {
        let mut b = BuyerRecord::new(BuyerEmail::parse("ada@example.com").unwrap());
        assert!(!b.to_item().unwrap().contains_key(DUE_PK));
        b.next_change_at = Some("2026-02-01T00:00:00Z".parse().unwrap());
        let mut item = b.to_item().unwrap();
        assert_eq!(item.get(DUE_PK), Some(&s(DUE_PARTITION)));
        item.insert(DOC.into(), s(r#"{"email": 5}"#));
        let err = BuyerRecord::from_item(&item).unwrap_err().to_string();
        assert!(err.contains("doc is not a valid document"), "{err}");
        item.insert(DOC.into(), s(r#"{"email": "not-an-address@@"}"#));
        let err = BuyerRecord::from_item(&item).unwrap_err().to_string();
        assert!(!err.contains("not-an-address"), "{err}");
    }
}
