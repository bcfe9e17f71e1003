//! A simulated workspace that matches a configuration: every Group the catalog names, and the
//! sales database with the configured property names.

use enroll_core::catalog::GroupRef;
use enroll_core::config::Config;
use enroll_simulator::{DataSource, Database, Group, PropertyKind, SimState};
use std::collections::BTreeMap;

pub fn from_config(config: &Config) -> SimState {
    let mut state = SimState::default();
    for group in config.catalog.managed_groups() {
        let (id, name) = match group {
            GroupRef::Id(id) => (id.as_str().to_owned(), format!("Group {id}")),
            GroupRef::Name(n) => (uuid::Uuid::new_v4().to_string(), n),
        };
        state.groups.push(seed_group(id, name));
    }
    let p = &config.notion.properties;
    let mut properties = BTreeMap::from([
        (p.title.clone(), PropertyKind::Title),
        (p.email.clone(), PropertyKind::Email),
        (p.order_id.clone(), PropertyKind::RichText),
        (p.notion_user_id.clone(), PropertyKind::RichText),
    ]);
    if let Some(products) = &p.products {
        properties.insert(products.clone(), PropertyKind::RichText);
    }
    state.databases.push(Database {
        id: config.notion.database_id.clone(),
        title: "Sales".into(),
        data_sources: vec![DataSource {
            id: config
                .notion
                .data_source_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            name: "Sales".into(),
            properties,
        }],
        created_time: chrono::Utc::now(),
        last_edited_time: chrono::Utc::now(),
    });
    state
}

fn seed_group(id: String, display_name: String) -> Group {
    Group {
        id,
        display_name,
        external_id: None,
        members: Vec::new(),
        created: chrono::Utc::now(),
        last_modified: chrono::Utc::now(),
    }
}
