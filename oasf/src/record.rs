//! Serde types for an OASF 1.x record (schema 1.0.0 as of agntcy/oasf tag v1.0.4, and 1.1.0).
//!
//! Attributes and requirements follow `schema/objects/record.json`, `objects/locator.json`,
//! `objects/descriptor.json`, `modules/base_module.json`, `skills/base_skill.json` and
//! `domains/base_domain.json`; wire types follow `proto/agntcy/oasf/types/v1/*.proto` (ids are
//! `uint32`). Unknown attributes are refused when deserializing. The older 0.7.0 / 0.8.0 record
//! shapes (a single `url` per locator, `signature`, `previous_record_cid`) are not modelled
//! here; [`crate::validate_record`] checks them on JSON values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The record `schema_version` this crate writes: the one every AGNTCY tool accepts today
/// (Directory and oasf-sdk accept 0.7.0, 0.8.0 and 1.0.0; 1.1.0 is released but newer).
pub const SCHEMA_VERSION: &str = "1.0.0";

/// The name of the module that carries an A2A agent card (`modules/integration/a2a.json`).
pub const A2A_MODULE: &str = "integration/a2a";

/// An OASF record (`objects/record.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Required. The record's name, e.g. `example.org/my-agent`.
    pub name: String,
    /// Required. The version of the record (any scheme).
    pub version: String,
    /// Required. The OASF schema version, semver ([`SCHEMA_VERSION`]).
    pub schema_version: String,
    /// Required. What the record describes.
    pub description: String,
    /// Required. Authors, by convention `Name <email>`.
    pub authors: Vec<String>,
    /// Required. Creation time, RFC 3339 (`2025-01-01T00:00:00Z`).
    pub created_at: String,
    /// Required, non-empty. Taxonomy skills.
    pub skills: Vec<ClassRef>,
    /// Recommended. Taxonomy domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<ClassRef>,
    /// Recommended. Modules (A2A card, MCP server, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<Module>,
    /// Optional. Where the artifact can be fetched; each type at most once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locators: Vec<Locator>,
    /// Optional. Free metadata; keys starting `agntcy.` are reserved for AGNTCY systems.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A reference to a skill or domain class: its full id, its full name, or both
/// (`base_skill` / `base_domain`: both recommended, at least one required).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassRef {
    /// The full id (`101`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// The full name (`natural_language_processing/natural_language_understanding`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Optional metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A locator (`objects/locator.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locator {
    /// What kind of artifact the URLs point to.
    #[serde(rename = "type")]
    pub kind: LocatorType,
    /// Non-empty list of URLs (RFC 1738; http(s) preferred).
    pub urls: Vec<String>,
    /// Optional metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The `type` of a locator, the enum of `objects/locator.json` (schema 1.x).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocatorType {
    /// `unspecified`.
    Unspecified,
    /// `helm_chart`.
    HelmChart,
    /// `container_image`.
    ContainerImage,
    /// `package`.
    Package,
    /// `source_code`.
    SourceCode,
    /// `binary`.
    Binary,
    /// `url`.
    Url,
}

impl LocatorType {
    /// Every type, in the schema's order.
    pub const ALL: [LocatorType; 7] = [
        LocatorType::Unspecified,
        LocatorType::HelmChart,
        LocatorType::ContainerImage,
        LocatorType::Package,
        LocatorType::SourceCode,
        LocatorType::Binary,
        LocatorType::Url,
    ];

    /// The wire name (`container_image`).
    pub fn as_str(self) -> &'static str {
        match self {
            LocatorType::Unspecified => "unspecified",
            LocatorType::HelmChart => "helm_chart",
            LocatorType::ContainerImage => "container_image",
            LocatorType::Package => "package",
            LocatorType::SourceCode => "source_code",
            LocatorType::Binary => "binary",
            LocatorType::Url => "url",
        }
    }
}

/// A module (`modules/base_module.json`): a named, typed payload such as an A2A card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Module {
    /// Required. The module class's full name, e.g. [`A2A_MODULE`].
    pub name: String,
    /// Recommended. The module class's full id (`integration/a2a` is 203).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// Required. The payload; its attributes depend on the module.
    pub data: Map<String, Value>,
    /// Optional metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Optional OCI-like descriptor of the payload as an artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Descriptor>,
}

impl Module {
    /// The `integration/a2a` module for an A2A agent card (`objects/a2a_data.json`):
    /// `data.card_data` is the card, `data.card_schema_version` the A2A version it follows.
    pub fn a2a(card: Map<String, Value>, card_schema_version: impl Into<String>) -> Module {
        let mut data = Map::new();
        data.insert("card_data".to_string(), Value::Object(card));
        data.insert(
            "card_schema_version".to_string(),
            Value::String(card_schema_version.into()),
        );
        Module {
            name: A2A_MODULE.to_string(),
            id: None,
            data,
            annotations: BTreeMap::new(),
            artifact: None,
        }
    }
}

/// An OCI-like descriptor of a module artifact (`objects/descriptor.json`): at least one of
/// `urls`, `data`, `json`, and not both `data` and `json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Descriptor {
    /// Required. Media type (RFC 6838) of the payload.
    pub media_type: String,
    /// Optional media type of the artifact kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Required. Size of the decoded payload in bytes.
    pub size: u64,
    /// Required. Digest of the decoded payload, `sha256:<hex>`.
    pub digest: String,
    /// Optional download locations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Optional inline payload, standard base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Optional inline JSON payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Map<String, Value>>,
}

impl Record {
    /// Checks the record with [`crate::validate_record`] (and the taxonomy, if given).
    pub fn validate(&self, taxonomy: Option<&crate::Taxonomy>) -> crate::Report {
        match serde_json::to_value(self) {
            Ok(value) => crate::validate_record(&value, taxonomy),
            // Serializing these types cannot fail (string keys, no custom Serialize impls).
            Err(e) => crate::Report::not_an_object(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_unknown_attributes() {
        let text = r#"{
            "name": "example.org/agent", "version": "1.0.0", "schema_version": "1.0.0",
            "description": "d", "authors": ["A <a@example.org>"],
            "created_at": "2025-01-01T00:00:00Z",
            "skills": [{"id": 101, "name": "natural_language_processing/natural_language_understanding"}],
            "locators": [{"type": "container_image", "urls": ["ghcr.io/x/y:1"]}],
            "modules": [{"name": "integration/a2a", "data": {"card_data": {"name": "x"}, "card_schema_version": "1.0.0"}}]
        }"#;
        let record: Record = serde_json::from_str(text).unwrap();
        assert_eq!(record.skills[0].id, Some(101));
        assert_eq!(record.locators[0].kind, LocatorType::ContainerImage);
        let back: Value = serde_json::to_value(&record).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(text).unwrap());
        assert!(
            record.validate(None).is_valid(),
            "{:?}",
            record.validate(None)
        );

        let mut extra: Value = serde_json::from_str(text).unwrap();
        extra["extra"] = Value::Bool(true);
        assert!(serde_json::from_value::<Record>(extra).is_err());
        let mut bad_type: Value = serde_json::from_str(text).unwrap();
        bad_type["locators"][0]["type"] = "docker_image".into();
        assert!(serde_json::from_value::<Record>(bad_type).is_err());
    }

    #[test]
    fn locator_type_names_match_serde() {
        for t in LocatorType::ALL {
            assert_eq!(serde_json::to_value(t).unwrap(), Value::from(t.as_str()));
        }
    }

    #[test]
    fn a2a_module_shape() {
        let mut card = Map::new();
        card.insert("name".into(), "agent".into());
        let m = Module::a2a(card, "1.0.0");
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["name"], A2A_MODULE);
        assert_eq!(v["data"]["card_data"]["name"], "agent");
        assert_eq!(v["data"]["card_schema_version"], "1.0.0");
        assert!(v.get("artifact").is_none());
    }
}
