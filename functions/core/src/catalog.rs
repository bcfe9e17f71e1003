//! The seller's products: which platform references sell them, which Groups they open, and for
//! how long.

use crate::config::ConfigError;
use crate::ids::{GroupId, Platform, PlatformProductRef, ProductId};
use chrono::{DateTime, Months, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A Group as the catalog names it: by SCIM id, or by display name resolved once through SCIM.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupRef {
    Id(GroupId),
    Name(String),
}

impl std::fmt::Display for GroupRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupRef::Id(id) => write!(f, "id:{id}"),
            GroupRef::Name(n) => write!(f, "{n}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub id: ProductId,
    pub name: String,
    /// Per platform, the references (price ids, SKUs, variant ids, product names) that sell this
    /// product. The product id itself always matches, on every platform.
    #[serde(default)]
    pub platform_ids: BTreeMap<Platform, Vec<PlatformProductRef>>,
    pub groups: Vec<GroupRef>,
    /// How long access lasts; none means for ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_months: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_days: Option<u32>,
    /// The product granted when this one's access ends (e.g. alumni access).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub then: Option<ProductId>,
}

impl Product {
    /// When access bought at `start` ends, or `None` when it does not.
    pub fn access_end(&self, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.access_months.is_none() && self.access_days.is_none() {
            return None;
        }
        let mut end = start;
        if let Some(m) = self.access_months {
            end = end
                .checked_add_months(Months::new(m))
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
        }
        if let Some(d) = self.access_days {
            end = end
                .checked_add_signed(TimeDelta::days(i64::from(d)))
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
        }
        Some(end)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    #[serde(default)]
    pub products: Vec<Product>,
}

impl Catalog {
    pub fn product(&self, id: &ProductId) -> Option<&Product> {
        self.products.iter().find(|p| &p.id == id)
    }

    /// The product a platform reference sells, if the catalog knows it.
    pub fn resolve(&self, platform: Platform, item: &PlatformProductRef) -> Option<&Product> {
        self.products.iter().find(|p| {
            p.id.as_str() == item.as_str()
                || p.platform_ids
                    .get(&platform)
                    .is_some_and(|refs| refs.contains(item))
        })
    }

    /// Every Group any product can grant: the Groups enroll manages. Nothing else is touched.
    pub fn managed_groups(&self) -> BTreeSet<GroupRef> {
        self.products
            .iter()
            .flat_map(|p| p.groups.iter().cloned())
            .collect()
    }

    /// Checks what serde cannot: unique ids, known follow-ons, no empty Group lists.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = BTreeSet::new();
        for (i, p) in self.products.iter().enumerate() {
            let at = format!("products[{i}] ({})", p.id);
            let bad =
                |field: &str, why: String| Err(ConfigError::invalid(format!("{at}.{field}"), why));
            if !seen.insert(p.id.clone()) {
                return bad("id", "duplicate product id".into());
            }
            if p.groups.is_empty() {
                return bad("groups", "a product must grant at least one Group".into());
            }
            if let Some(then) = &p.then {
                if self.product(then).is_none() {
                    return bad("then", format!("unknown product `{then}`"));
                }
                if then == &p.id {
                    return bad("then", "a product cannot follow itself".into());
                }
                if p.access_end(DateTime::<Utc>::UNIX_EPOCH).is_none() {
                    return bad(
                        "then",
                        "needs access_months or access_days, or it never starts".into(),
                    );
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: &str, groups: &[&str]) -> Product {
        Product {
            id: ProductId::parse(id).unwrap(),
            name: id.to_owned(),
            platform_ids: BTreeMap::new(),
            groups: groups
                .iter()
                .map(|g| GroupRef::Name((*g).to_owned()))
                .collect(),
            access_months: None,
            access_days: None,
            then: None,
        }
    }

    #[test]
    fn resolves_by_product_id_and_platform_reference() {
        let mut p = product("notion-mastery", &["Notion Mastery"]);
        p.platform_ids.insert(
            Platform::Stripe,
            vec![PlatformProductRef::parse("price_NM").unwrap()],
        );
        let c = Catalog { products: vec![p] };
        let r = |pl, s| {
            c.resolve(pl, &PlatformProductRef::parse(s).unwrap())
                .map(|p| p.id.as_str().to_owned())
        };
        assert_eq!(
            r(Platform::Stripe, "price_NM").as_deref(),
            Some("notion-mastery")
        );
        assert_eq!(r(Platform::Shopify, "price_NM"), None);
        assert_eq!(
            r(Platform::Gumroad, "notion-mastery").as_deref(),
            Some("notion-mastery")
        );
    }

    #[test]
    fn twelve_months_of_access_end_on_the_same_day_next_year() {
        let mut p = product("nm", &["g"]);
        p.access_months = Some(12);
        let start = "2026-01-31T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            p.access_end(start).unwrap().to_rfc3339(),
            "2027-01-31T10:00:00+00:00"
        );
        assert_eq!(product("x", &["g"]).access_end(start), None);
    }

    #[test]
    fn validation_names_the_bad_field() {
        let mut p = product("a", &["g"]);
        p.then = Some(ProductId::parse("missing").unwrap());
        let err = Catalog { products: vec![p] }
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("products[0] (a).then"), "{err}");
        let err = Catalog {
            products: vec![product("a", &[])],
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains(".groups"), "{err}");
    }
}
