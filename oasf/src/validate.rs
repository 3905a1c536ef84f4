//! Validation of OASF records given as JSON, with a report of errors and warnings.
//!
//! The rules are those of the OASF schema definitions for the record's `schema_version`
//! (agntcy/oasf tags v0.7.8, v0.8.7, v1.0.4 and v1.1.1: `objects/record.json`,
//! `objects/locator.json`, `objects/descriptor.json`, `objects/a2a_data.json`,
//! `modules/base_module.json`, `skills/base_skill.json`, `domains/base_domain.json`), plus the
//! AGNTCY conventions the schema only states in prose or in its protobuf definitions:
//! `agntcy.`-prefixed annotation keys are reserved, ids are `uint32`, each locator type appears
//! at most once.
//!
//! Schema versions. Directory and oasf-sdk accept `0.7.0`, `0.8.0` and `1.0.0`; those validate
//! without remark. `1.1.0` is a released schema whose record shape is that of 1.0.0, so it is
//! valid too, with a warning that today's tools may refuse it. Any other version is an error;
//! the rest of such a record is still checked, by the 1.x rules. The 0.x shapes differ from
//! 1.x: a locator has one `url` and the types `docker_image` / `python_package`; the record may
//! carry `previous_record_cid` (and in 0.7.0 `signature`, with `locators` required); 0.8.0
//! skills and domains have no `annotations`; modules have no `artifact`. Module payloads are
//! checked only for the 1.x `integration/a2a` module.

use std::collections::HashMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256, Sha512};

use super::record::A2A_MODULE;
use super::taxonomy::{ClassRefError, Family, Taxonomy};

/// Prefix of annotation keys reserved for AGNTCY systems (`proto/agntcy/oasf/types/v1/*.proto`).
pub const RESERVED_ANNOTATION_PREFIX: &str = "agntcy.";

/// The record schema versions AGNTCY tools (Directory, oasf-sdk) accept.
pub const TOOL_ACCEPTED_SCHEMA_VERSIONS: [&str; 3] = ["0.7.0", "0.8.0", "1.0.0"];

/// A record schema version this validator knows the rules of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SchemaVersion {
    /// `0.7.0`.
    V0_7_0,
    /// `0.8.0`.
    V0_8_0,
    /// `1.0.0`.
    V1_0_0,
    /// `1.1.0` (same record shape as 1.0.0; newer than the tools accept).
    V1_1_0,
}

impl SchemaVersion {
    /// The version for a `schema_version` string, if it is one of the known ones.
    pub fn parse(s: &str) -> Option<SchemaVersion> {
        match s {
            "0.7.0" => Some(SchemaVersion::V0_7_0),
            "0.8.0" => Some(SchemaVersion::V0_8_0),
            "1.0.0" => Some(SchemaVersion::V1_0_0),
            "1.1.0" => Some(SchemaVersion::V1_1_0),
            _ => None,
        }
    }

    /// The version as written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaVersion::V0_7_0 => "0.7.0",
            SchemaVersion::V0_8_0 => "0.8.0",
            SchemaVersion::V1_0_0 => "1.0.0",
            SchemaVersion::V1_1_0 => "1.1.0",
        }
    }

    fn legacy(self) -> bool {
        matches!(self, SchemaVersion::V0_7_0 | SchemaVersion::V0_8_0)
    }
}

/// What is wrong, as a stable snake_case code (the `code` of an [`Issue`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum IssueCode {
    /// The value is not a JSON object (the record itself, or an element that must be one).
    NotAnObject,
    /// A required attribute is absent (or `null`).
    MissingRequired,
    /// A recommended attribute is absent or empty (a warning).
    MissingRecommended,
    /// An attribute the schema does not define.
    UnknownAttribute,
    /// The value has the wrong JSON type (or an integer is out of range).
    WrongType,
    /// A string that must not be empty is.
    EmptyString,
    /// An array that must not be empty is.
    EmptyArray,
    /// `schema_version` is not a semantic version (semver.org 2.0.0).
    InvalidSemver,
    /// `schema_version` is a semantic version this validator has no rules for.
    UnsupportedSchemaVersion,
    /// `schema_version` is released but newer than AGNTCY tools accept (a warning).
    SchemaVersionNewerThanTools,
    /// `created_at` is not an RFC 3339 date-time.
    InvalidDatetime,
    /// A skill or domain has neither `id` nor `name`.
    MissingIdAndName,
    /// A locator `type` outside the schema's enum.
    InvalidLocatorType,
    /// A locator `type` used a second time.
    DuplicateLocatorType,
    /// An annotation key with the reserved `agntcy.` prefix.
    ReservedAnnotation,
    /// A descriptor `data` that is not standard padded base64.
    InvalidBase64,
    /// A descriptor `size` that differs from the length of its decoded `data`.
    ArtifactSizeMismatch,
    /// A descriptor `digest` that differs from the digest of its decoded `data`.
    ArtifactDigestMismatch,
    /// A descriptor with none of `urls`, `data`, `json`.
    ConstraintAtLeastOne,
    /// A descriptor with both `data` and `json`.
    ConstraintJustOne,
    /// A skill or domain id the taxonomy does not have.
    UnknownTaxonomyId,
    /// A skill or domain name the taxonomy does not have.
    UnknownTaxonomyName,
    /// A skill or domain whose id and name are different classes.
    TaxonomyMismatch,
    /// The taxonomy is from another schema version than the record (a warning).
    TaxonomyVersionMismatch,
}

impl IssueCode {
    /// The code as serialized (`missing_required`).
    pub fn as_str(self) -> &'static str {
        match self {
            IssueCode::NotAnObject => "not_an_object",
            IssueCode::MissingRequired => "missing_required",
            IssueCode::MissingRecommended => "missing_recommended",
            IssueCode::UnknownAttribute => "unknown_attribute",
            IssueCode::WrongType => "wrong_type",
            IssueCode::EmptyString => "empty_string",
            IssueCode::EmptyArray => "empty_array",
            IssueCode::InvalidSemver => "invalid_semver",
            IssueCode::UnsupportedSchemaVersion => "unsupported_schema_version",
            IssueCode::SchemaVersionNewerThanTools => "schema_version_newer_than_tools",
            IssueCode::InvalidDatetime => "invalid_datetime",
            IssueCode::MissingIdAndName => "missing_id_and_name",
            IssueCode::InvalidLocatorType => "invalid_locator_type",
            IssueCode::DuplicateLocatorType => "duplicate_locator_type",
            IssueCode::ReservedAnnotation => "reserved_annotation",
            IssueCode::InvalidBase64 => "invalid_base64",
            IssueCode::ArtifactSizeMismatch => "artifact_size_mismatch",
            IssueCode::ArtifactDigestMismatch => "artifact_digest_mismatch",
            IssueCode::ConstraintAtLeastOne => "constraint_at_least_one",
            IssueCode::ConstraintJustOne => "constraint_just_one",
            IssueCode::UnknownTaxonomyId => "unknown_taxonomy_id",
            IssueCode::UnknownTaxonomyName => "unknown_taxonomy_name",
            IssueCode::TaxonomyMismatch => "taxonomy_mismatch",
            IssueCode::TaxonomyVersionMismatch => "taxonomy_version_mismatch",
        }
    }
}

impl fmt::Display for IssueCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding: where (`skills[0].id`, `annotations["agntcy.x"]`; empty for the record
/// itself), a stable code, and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// Where, as attribute names, `[index]` and `["map key"]`.
    pub path: String,
    /// What, stable.
    pub code: IssueCode,
    /// What, for people.
    pub message: String,
}

/// The outcome of [`validate_record`]: errors make the record invalid; warnings (recommended
/// attributes missing, a version newer than the tools) do not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Violations of the schema.
    pub errors: Vec<Issue>,
    /// Advice.
    pub warnings: Vec<Issue>,
}

impl Report {
    /// No errors.
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// The errors as `(path, code)`, for matching in tests and callers.
    pub fn error_codes(&self) -> Vec<(&str, IssueCode)> {
        self.errors
            .iter()
            .map(|i| (i.path.as_str(), i.code))
            .collect()
    }

    /// The warnings as `(path, code)`.
    pub fn warning_codes(&self) -> Vec<(&str, IssueCode)> {
        self.warnings
            .iter()
            .map(|i| (i.path.as_str(), i.code))
            .collect()
    }

    pub(crate) fn not_an_object(message: String) -> Report {
        Report {
            errors: vec![Issue {
                path: String::new(),
                code: IssueCode::NotAnObject,
                message,
            }],
            warnings: Vec::new(),
        }
    }

    fn error(&mut self, path: &str, code: IssueCode, message: impl Into<String>) {
        self.errors.push(Issue {
            path: path.to_string(),
            code,
            message: message.into(),
        });
    }

    fn warn(&mut self, path: &str, code: IssueCode, message: impl Into<String>) {
        self.warnings.push(Issue {
            path: path.to_string(),
            code,
            message: message.into(),
        });
    }
}

/// Validates an OASF record given as JSON; with a taxonomy, also checks every skill and domain
/// `{id, name}` against it. See the module documentation for the rules and versions.
pub fn validate_record(record: &Value, taxonomy: Option<&Taxonomy>) -> Report {
    let mut v = Validator {
        report: Report::default(),
        taxonomy,
        version: SchemaVersion::V1_0_0,
    };
    let Some(obj) = record.as_object() else {
        return Report::not_an_object(format!("a record is a JSON object, not {}", kind(record)));
    };
    v.record(obj);
    v.report
}

struct Validator<'t> {
    report: Report,
    taxonomy: Option<&'t Taxonomy>,
    version: SchemaVersion,
}

fn join(parent: &str, attribute: &str) -> String {
    if parent.is_empty() {
        attribute.to_string()
    } else {
        format!("{parent}.{attribute}")
    }
}

fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

fn map_key(parent: &str, key: &str) -> String {
    format!("{parent}[{}]", Value::String(key.to_string()))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// How much a schema asks for an attribute.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Required,
    Recommended,
    Optional,
}

/// Semantic Versioning 2.0.0 (<https://semver.org/#backusnaur-form-grammar-for-valid-semver-versions>).
fn is_semver(s: &str) -> bool {
    let numeric = |p: &str| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (p == "0" || !p.starts_with('0'))
    };
    let ident_ok =
        |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let (rest, build) = match s.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (s, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| numeric(p))
        && pre.is_none_or(|p| {
            p.split('.')
                .all(|id| ident_ok(id) && (!id.bytes().all(|b| b.is_ascii_digit()) || numeric(id)))
        })
        && build.is_none_or(|b| b.split('.').all(ident_ok))
}

fn lower_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3339 §5.6 `date-time`. The `time` crate accepts any separator between date and time;
/// RFC 3339 names `T` (case-insensitive) and allows a space, which OASF's own examples use.
fn is_rfc3339(s: &str) -> bool {
    matches!(s.as_bytes().get(10), Some(b'T' | b't' | b' '))
        && time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
}

impl Validator<'_> {
    /// Reports attributes not in `allowed`, in name order (whatever the map's order).
    fn unknown(&mut self, path: &str, obj: &Map<String, Value>, allowed: &[&str], what: &str) {
        let mut extra: Vec<&String> = obj
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .collect();
        extra.sort();
        for key in extra {
            self.report.error(
                &join(path, key),
                IssueCode::UnknownAttribute,
                format!(
                    "{what} has no attribute {key:?} (allowed: {})",
                    allowed.join(", ")
                ),
            );
        }
    }

    /// The attribute's value, or a finding for its absence; `null` counts as absent.
    fn get<'v>(
        &mut self,
        path: &str,
        obj: &'v Map<String, Value>,
        attribute: &str,
        need: Need,
    ) -> Option<&'v Value> {
        match obj.get(attribute) {
            Some(Value::Null) | None => {
                let at = join(path, attribute);
                match need {
                    Need::Required => self.report.error(
                        &at,
                        IssueCode::MissingRequired,
                        format!("{attribute} is required"),
                    ),
                    Need::Recommended => self.report.warn(
                        &at,
                        IssueCode::MissingRecommended,
                        format!("{attribute} is recommended"),
                    ),
                    Need::Optional => {}
                }
                None
            }
            Some(v) => Some(v),
        }
    }

    fn string<'v>(
        &mut self,
        path: &str,
        obj: &'v Map<String, Value>,
        attribute: &str,
        need: Need,
    ) -> Option<&'v str> {
        let at = join(path, attribute);
        match self.get(path, obj, attribute, need)? {
            Value::String(s) if s.is_empty() => {
                self.report
                    .error(&at, IssueCode::EmptyString, format!("{attribute} is empty"));
                None
            }
            Value::String(s) => Some(s),
            other => {
                self.report.error(
                    &at,
                    IssueCode::WrongType,
                    format!("{attribute} must be a string, not {}", kind(other)),
                );
                None
            }
        }
    }

    fn integer(&mut self, at: &str, value: &Value, max: u64) -> Option<u64> {
        match value.as_u64().filter(|n| *n <= max) {
            Some(n) => Some(n),
            None => {
                self.report.error(
                    at,
                    IssueCode::WrongType,
                    format!("{at} must be an integer from 0 to {max}, not {value}"),
                );
                None
            }
        }
    }

    fn array<'v>(&mut self, at: &str, value: &'v Value) -> Option<&'v Vec<Value>> {
        match value {
            Value::Array(items) => Some(items),
            other => {
                self.report.error(
                    at,
                    IssueCode::WrongType,
                    format!("{at} must be an array, not {}", kind(other)),
                );
                None
            }
        }
    }

    fn object<'v>(&mut self, at: &str, value: &'v Value) -> Option<&'v Map<String, Value>> {
        match value {
            Value::Object(obj) => Some(obj),
            other => {
                self.report.error(
                    at,
                    IssueCode::NotAnObject,
                    format!("{at} must be an object, not {}", kind(other)),
                );
                None
            }
        }
    }

    /// An array of non-empty strings; `non_empty` refuses an empty array.
    fn strings(&mut self, at: &str, value: &Value, non_empty: bool) {
        let Some(items) = self.array(at, value) else {
            return;
        };
        if non_empty && items.is_empty() {
            self.report
                .error(at, IssueCode::EmptyArray, format!("{at} must not be empty"));
        }
        for (i, item) in items.iter().enumerate() {
            let item_at = index(at, i);
            match item {
                Value::String(s) if s.is_empty() => self.report.error(
                    &item_at,
                    IssueCode::EmptyString,
                    format!("{item_at} is empty"),
                ),
                Value::String(_) => {}
                other => self.report.error(
                    &item_at,
                    IssueCode::WrongType,
                    format!("{item_at} must be a string, not {}", kind(other)),
                ),
            }
        }
    }

    /// A string-to-string map whose keys do not use the reserved prefix.
    fn annotations(&mut self, path: &str, obj: &Map<String, Value>) {
        let at = join(path, "annotations");
        let Some(value) = self.get(path, obj, "annotations", Need::Optional) else {
            return;
        };
        let Some(map) = self.object(&at, value) else {
            return;
        };
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        for key in keys {
            let key_at = map_key(&at, key);
            if key.starts_with(RESERVED_ANNOTATION_PREFIX) {
                self.report.error(
                    &key_at,
                    IssueCode::ReservedAnnotation,
                    format!("annotation keys starting {RESERVED_ANNOTATION_PREFIX:?} are reserved for AGNTCY systems"),
                );
            }
            if let Some(other) = map.get(key).filter(|v| !v.is_string()) {
                self.report.error(
                    &key_at,
                    IssueCode::WrongType,
                    format!("annotation values are strings, not {}", kind(other)),
                );
            }
        }
    }

    fn record(&mut self, obj: &Map<String, Value>) {
        // The version decides the rules, so it comes first.
        let version = self.schema_version(obj);
        if let Some(v) = version {
            self.version = v;
        }
        let mut allowed = vec![
            "name",
            "version",
            "schema_version",
            "description",
            "authors",
            "annotations",
            "created_at",
            "skills",
            "domains",
            "locators",
            "modules",
        ];
        if self.version.legacy() {
            allowed.push("previous_record_cid");
        }
        if self.version == SchemaVersion::V0_7_0 {
            allowed.push("signature");
        }
        self.unknown("", obj, &allowed, "a record");

        self.string("", obj, "name", Need::Required);
        self.string("", obj, "version", Need::Required);
        self.string("", obj, "description", Need::Required);
        if let Some(authors) = self.get("", obj, "authors", Need::Required) {
            self.strings("authors", authors, true);
        }
        if let Some(created) = self.string("", obj, "created_at", Need::Required) {
            if !is_rfc3339(created) {
                self.report.error(
                    "created_at",
                    IssueCode::InvalidDatetime,
                    format!("{created:?} is not an RFC 3339 date-time (e.g. 2025-01-01T00:00:00Z)"),
                );
            }
        }
        if let Some(skills) = self.get("", obj, "skills", Need::Required) {
            if let Some(items) = self.array("skills", skills) {
                if items.is_empty() {
                    self.report.error(
                        "skills",
                        IssueCode::EmptyArray,
                        "a record needs at least one skill",
                    );
                }
                for (i, item) in items.iter().enumerate() {
                    self.class_ref(&index("skills", i), item, Family::Skill);
                }
            }
        }
        if let Some(domains) = self.get("", obj, "domains", Need::Recommended) {
            if let Some(items) = self.array("domains", domains) {
                if items.is_empty() {
                    self.report.warn(
                        "domains",
                        IssueCode::MissingRecommended,
                        "domains is recommended and empty",
                    );
                }
                for (i, item) in items.iter().enumerate() {
                    self.class_ref(&index("domains", i), item, Family::Domain);
                }
            }
        }
        if let Some(modules) = self.get("", obj, "modules", Need::Recommended) {
            if let Some(items) = self.array("modules", modules) {
                if items.is_empty() {
                    self.report.warn(
                        "modules",
                        IssueCode::MissingRecommended,
                        "modules is recommended and empty",
                    );
                }
                for (i, item) in items.iter().enumerate() {
                    self.module(&index("modules", i), item);
                }
            }
        }
        let locators_need = if self.version == SchemaVersion::V0_7_0 {
            Need::Required
        } else {
            Need::Optional
        };
        if let Some(locators) = self.get("", obj, "locators", locators_need) {
            self.locators(locators);
        }
        self.annotations("", obj);
        if self.version.legacy() {
            self.string("", obj, "previous_record_cid", Need::Optional);
        }
        if self.version == SchemaVersion::V0_7_0 {
            if let Some(sig) = self.get("", obj, "signature", Need::Optional) {
                self.signature(sig);
            }
        }
        if let (Some(t), Some(v)) = (self.taxonomy, version) {
            if let Some(tv) = t.version().filter(|tv| *tv != v.as_str()) {
                self.report.warn(
                    "schema_version",
                    IssueCode::TaxonomyVersionMismatch,
                    format!(
                        "the record is schema {}, the taxonomy it was checked against is {tv}",
                        v.as_str()
                    ),
                );
            }
        }
    }

    fn schema_version(&mut self, obj: &Map<String, Value>) -> Option<SchemaVersion> {
        let s = self.string("", obj, "schema_version", Need::Required)?;
        if !is_semver(s) {
            self.report.error(
                "schema_version",
                IssueCode::InvalidSemver,
                format!("{s:?} is not a semantic version (MAJOR.MINOR.PATCH)"),
            );
            return None;
        }
        let Some(v) = SchemaVersion::parse(s) else {
            self.report.error(
                "schema_version",
                IssueCode::UnsupportedSchemaVersion,
                format!(
                    "schema {s} is not one of 0.7.0, 0.8.0, 1.0.0 (accepted by AGNTCY tools) or 1.1.0"
                ),
            );
            return None;
        };
        if !TOOL_ACCEPTED_SCHEMA_VERSIONS.contains(&s) {
            self.report.warn(
                "schema_version",
                IssueCode::SchemaVersionNewerThanTools,
                format!(
                    "schema {s} is released, but Directory and oasf-sdk accept only {}",
                    TOOL_ACCEPTED_SCHEMA_VERSIONS.join(", ")
                ),
            );
        }
        Some(v)
    }

    /// A skill or domain: `{id?, name?, annotations?}` with at least one of id and name.
    fn class_ref(&mut self, at: &str, value: &Value, family: Family) {
        let Some(obj) = self.object(at, value) else {
            return;
        };
        let allowed: &[&str] = if self.version == SchemaVersion::V0_8_0 {
            &["id", "name"]
        } else {
            &["id", "name", "annotations"]
        };
        self.unknown(at, obj, allowed, &format!("a {family}"));
        let id_at = join(at, "id");
        let id_value = obj.get("id").filter(|v| !v.is_null());
        let name_value = obj.get("name").filter(|v| !v.is_null());
        if id_value.is_none() && name_value.is_none() {
            self.report.error(
                at,
                IssueCode::MissingIdAndName,
                format!("a {family} needs an id, a name, or both"),
            );
            return;
        }
        let id = match id_value {
            Some(v) => self.integer(&id_at, v, u64::from(u32::MAX)),
            None => {
                self.report.warn(
                    &id_at,
                    IssueCode::MissingRecommended,
                    format!("the {family} id is recommended"),
                );
                None
            }
        };
        let name = self.string(at, obj, "name", Need::Recommended);
        if self.version != SchemaVersion::V0_8_0 {
            self.annotations(at, obj);
        }
        let Some(taxonomy) = self.taxonomy else {
            return;
        };
        // Only well-typed parts are looked up; a badly typed one is already reported.
        if (id_value.is_some() && id.is_none()) || (name_value.is_some() && name.is_none()) {
            return;
        }
        match taxonomy.check(family, id, name) {
            Ok(()) => {}
            Err(e @ ClassRefError::UnknownId { .. }) => {
                self.report
                    .error(&id_at, IssueCode::UnknownTaxonomyId, e.to_string())
            }
            Err(e @ ClassRefError::UnknownName { .. }) => self.report.error(
                &join(at, "name"),
                IssueCode::UnknownTaxonomyName,
                e.to_string(),
            ),
            Err(e @ ClassRefError::Mismatch { .. }) => {
                self.report
                    .error(at, IssueCode::TaxonomyMismatch, e.to_string())
            }
            Err(e) => self
                .report
                .error(at, IssueCode::MissingIdAndName, e.to_string()),
        }
    }

    fn locators(&mut self, value: &Value) {
        let Some(items) = self.array("locators", value) else {
            return;
        };
        let legacy = self.version.legacy();
        let types: &[&str] = if legacy {
            // objects/locator.json at v0.7.8 and v0.8.7.
            &[
                "unspecified",
                "helm_chart",
                "docker_image",
                "python_package",
                "source_code",
                "binary",
            ]
        } else {
            &[
                "unspecified",
                "helm_chart",
                "container_image",
                "package",
                "source_code",
                "binary",
                "url",
            ]
        };
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let at = index("locators", i);
            let Some(obj) = self.object(&at, item) else {
                continue;
            };
            if legacy {
                self.unknown(
                    &at,
                    obj,
                    &["type", "url", "annotations", "size", "digest"],
                    "a locator",
                );
            } else {
                self.unknown(&at, obj, &["type", "urls", "annotations"], "a locator");
            }
            if let Some(t) = self.string(&at, obj, "type", Need::Required) {
                if !types.contains(&t) {
                    self.report.error(
                        &join(&at, "type"),
                        IssueCode::InvalidLocatorType,
                        format!(
                            "{t:?} is not a locator type of schema {} ({})",
                            self.version.as_str(),
                            types.join(", ")
                        ),
                    );
                } else if let Some(&first) = seen.get(t) {
                    self.report.error(
                        &join(&at, "type"),
                        IssueCode::DuplicateLocatorType,
                        format!("locator type {t:?} is already used by locators[{first}]"),
                    );
                } else {
                    seen.insert(t, i);
                }
            }
            if legacy {
                self.string(&at, obj, "url", Need::Required);
                if let Some(size) = self.get(&at, obj, "size", Need::Optional) {
                    self.integer(&join(&at, "size"), size, u64::MAX);
                }
                self.string(&at, obj, "digest", Need::Optional);
            } else if let Some(urls) = self.get(&at, obj, "urls", Need::Required) {
                self.strings(&join(&at, "urls"), urls, true);
            }
            self.annotations(&at, obj);
        }
    }

    fn module(&mut self, at: &str, value: &Value) {
        let Some(obj) = self.object(at, value) else {
            return;
        };
        let legacy = self.version.legacy();
        let allowed: &[&str] = if legacy {
            &["name", "id", "annotations", "data"]
        } else {
            &["name", "id", "annotations", "data", "artifact"]
        };
        self.unknown(at, obj, allowed, "a module");
        let name = self.string(at, obj, "name", Need::Required);
        if let Some(id) = self.get(at, obj, "id", Need::Recommended) {
            self.integer(&join(at, "id"), id, u64::from(u32::MAX));
        }
        let data_at = join(at, "data");
        let data = self
            .get(at, obj, "data", Need::Required)
            .and_then(|d| self.object(&data_at, d));
        self.annotations(at, obj);
        if !legacy {
            if let Some(artifact) = self.get(at, obj, "artifact", Need::Optional) {
                self.descriptor(&join(at, "artifact"), artifact);
            }
            if let (Some(A2A_MODULE), Some(data)) = (name, data) {
                // objects/a2a_data.json: both required, nothing else.
                self.unknown(
                    &data_at,
                    data,
                    &["card_data", "card_schema_version"],
                    "A2A module data",
                );
                if let Some(card) = self.get(&data_at, data, "card_data", Need::Required) {
                    self.object(&join(&data_at, "card_data"), card);
                }
                self.string(&data_at, data, "card_schema_version", Need::Required);
            }
        }
    }

    /// objects/descriptor.json.
    fn descriptor(&mut self, at: &str, value: &Value) {
        let Some(obj) = self.object(at, value) else {
            return;
        };
        self.unknown(
            at,
            obj,
            &[
                "media_type",
                "artifact_type",
                "size",
                "digest",
                "urls",
                "data",
                "json",
            ],
            "a descriptor",
        );
        self.string(at, obj, "media_type", Need::Required);
        self.string(at, obj, "artifact_type", Need::Optional);
        let size = self
            .get(at, obj, "size", Need::Required)
            .and_then(|s| self.integer(&join(at, "size"), s, u64::MAX));
        let digest = self.string(at, obj, "digest", Need::Required);
        let urls = self.get(at, obj, "urls", Need::Optional);
        if let Some(urls) = urls {
            self.strings(&join(at, "urls"), urls, false);
        }
        let data = self.string(at, obj, "data", Need::Optional);
        let json = self.get(at, obj, "json", Need::Optional);
        if let Some(json) = json {
            self.object(&join(at, "json"), json);
        }
        let has_data = obj.get("data").is_some_and(|v| !v.is_null());
        if urls.is_none() && !has_data && json.is_none() {
            self.report.error(
                at,
                IssueCode::ConstraintAtLeastOne,
                "a descriptor needs at least one of urls, data, json",
            );
        }
        if has_data && json.is_some() {
            self.report.error(
                at,
                IssueCode::ConstraintJustOne,
                "a descriptor has data or json, not both",
            );
        }
        let Some(data) = data else {
            return;
        };
        let Ok(bytes) = STANDARD.decode(data) else {
            self.report.error(
                &join(at, "data"),
                IssueCode::InvalidBase64,
                "data is not standard padded base64",
            );
            return;
        };
        if let Some(size) = size.filter(|s| *s != bytes.len() as u64) {
            self.report.error(
                &join(at, "size"),
                IssueCode::ArtifactSizeMismatch,
                format!("size is {size} but data decodes to {} bytes", bytes.len()),
            );
        }
        if let Some((algorithm, hex)) = digest.and_then(|d| d.split_once(':')) {
            let actual = match algorithm {
                "sha256" => Some(lower_hex(&Sha256::digest(&bytes))),
                "sha512" => Some(lower_hex(&Sha512::digest(&bytes))),
                // Other algorithms are not checked.
                _ => None,
            };
            if let Some(actual) = actual.filter(|a| !a.eq_ignore_ascii_case(hex)) {
                self.report.error(
                    &join(at, "digest"),
                    IssueCode::ArtifactDigestMismatch,
                    format!("data has digest {algorithm}:{actual}"),
                );
            }
        }
    }

    /// objects/signature.json at v0.7.8.
    fn signature(&mut self, value: &Value) {
        let Some(obj) = self.object("signature", value) else {
            return;
        };
        let strings = [
            "signed_at",
            "algorithm",
            "certificate",
            "content_type",
            "content_bundle",
        ];
        let mut allowed = vec!["annotations", "signature"];
        allowed.extend(strings);
        self.unknown("signature", obj, &allowed, "a signature");
        self.string("signature", obj, "signature", Need::Required);
        for attribute in strings {
            self.string("signature", obj, attribute, Need::Optional);
        }
        self.annotations("signature", obj);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The grammar of semver.org 2.0.0, both sides.
    #[test]
    fn semver_grammar() {
        for ok in [
            "0.0.0",
            "1.0.0",
            "10.20.30",
            "1.0.0-rc.1+build.5",
            "1.2.0-dev",
            "1.0.0-0.3.7",
            "1.0.0+20130313144700",
            "1.0.0-x-y.z--",
        ] {
            assert!(is_semver(ok), "{ok}");
        }
        for bad in [
            "",
            "1",
            "1.0",
            "1.0.0.0",
            "01.0.0",
            "1.00.0",
            "v1.0.0",
            "1.0.0-",
            "1.0.0-01",
            "1.0.0+",
            "1.0.0-a..b",
            "1.0.0-é",
            " 1.0.0",
        ] {
            assert!(!is_semver(bad), "{bad}");
        }
    }
}
