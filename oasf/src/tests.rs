//! Record validation tests: the oasf-sdk fixtures and the OASF v1.0.4 schema, read in place
//! from `shared/vectors/oasf/` (third-party data, see its README.md; never copied here), and
//! small hand-written records for each rule, both sides.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::*;

/// `shared/vectors/oasf/`, next to the repository in development and in CI.
fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/oasf")
}

fn fixture(name: &str) -> Value {
    let path = vectors().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn schema_v1_0_4() -> Taxonomy {
    Taxonomy::load_dir(vectors().join("schema-v1.0.4")).unwrap()
}

/// A valid 1.0.0 record with every attribute, to be broken one rule at a time.
fn full() -> Value {
    json!({
        "name": "example.org/agent",
        "version": "1.2.3",
        "schema_version": "1.0.0",
        "description": "An agent",
        "authors": ["Ada <ada@example.org>"],
        "created_at": "2025-06-01T12:00:00.5+02:00",
        "skills": [{"id": 10101, "name": "natural_language_processing/natural_language_understanding/contextual_comprehension"}],
        "domains": [{"id": 101, "name": "technology/internet_of_things", "annotations": {"k": "v"}}],
        "modules": [{
            "name": "integration/a2a",
            "id": 203,
            "data": {"card_data": {"name": "agent"}, "card_schema_version": "1.0.0"}
        }],
        "locators": [
            {"type": "container_image", "urls": ["ghcr.io/example/agent:1.2.3"]},
            {"type": "url", "urls": ["https://agent.example.org"], "annotations": {"env": "prod"}}
        ],
        "annotations": {"team": "identity"}
    })
}

fn errors(record: &Value) -> Vec<(String, IssueCode)> {
    validate_record(record, Some(&schema_v1_0_4()))
        .errors
        .into_iter()
        .map(|i| (i.path, i.code))
        .collect()
}

/// Findings as `(path, code)`.
type Found = Vec<(String, IssueCode)>;

fn e(path: &str, code: IssueCode) -> Found {
    vec![(path.to_string(), code)]
}

// --- Taxonomy against the real schema -------------------------------------------------------

#[test]
fn schema_v1_0_4_taxonomy() {
    let t = schema_v1_0_4();
    assert_eq!(t.version(), Some("1.0.0"));
    // The pairs valid_1.0.0_record.json uses.
    assert_eq!(
        t.skill(101),
        Some("natural_language_processing/natural_language_understanding")
    );
    assert_eq!(t.domain(101), Some("technology/internet_of_things"));
    // The directory is iot/, the class name internet_of_things.
    assert_eq!(t.domain_by_name("technology/iot"), None);
    // Three levels: 1 -> 101 -> 10101 (the example in agntcy/dir's skill.proto comment).
    assert_eq!(
        t.skill(10101),
        Some("natural_language_processing/natural_language_understanding/contextual_comprehension")
    );
    assert_eq!(t.skill(1), Some("natural_language_processing"));
    assert_eq!(t.skill_by_name("natural_language_processing"), Some(1));
    assert_eq!(t.domain_by_name("technology"), Some(1));
    // 136 skill and 204 domain class files besides the base files, as counted in the schema.
    assert_eq!(t.classes(Family::Skill).count(), 136);
    assert_eq!(t.classes(Family::Domain).count(), 204);
    // Every id is its parent's id * 100 + uid, so a parent is id / 100 and exists.
    for family in [Family::Skill, Family::Domain] {
        for (id, name) in t.classes(family) {
            match name.rsplit_once('/') {
                Some((parent, _)) => assert_eq!(t.name_of(family, id / 100), Some(parent)),
                None => assert!(id < 100, "{name}"),
            }
        }
    }
}

// --- Fixtures (oasf-sdk e2e/fixtures at 69b2201) ---------------------------------------------

#[test]
fn valid_1_0_0_fixture_passes_with_the_taxonomy() {
    let record = fixture("valid_1.0.0_record.json");
    let report = validate_record(&record, Some(&schema_v1_0_4()));
    assert_eq!(report.errors, vec![], "{report:?}");
    // No modules (recommended) and no module ids: the only advice.
    assert_eq!(
        report.warning_codes(),
        vec![("modules", IssueCode::MissingRecommended)]
    );
    assert!(validate_record(&record, None).is_valid());
    // It is also a 1.x record the serde types accept.
    let typed: Record = serde_json::from_value(record).unwrap();
    assert_eq!(typed.locators[0].kind, LocatorType::ContainerImage);
}

#[test]
fn valid_0_8_0_fixture_passes_and_matches_the_1_0_4_taxonomy() {
    let record = fixture("valid_0.8.0_record.json");
    assert!(validate_record(&record, None).is_valid());
    // Its skill and domain pairs are the same in the 1.0.4 taxonomy, so no errors; the only
    // remark is that the taxonomy is another schema version than the record.
    let report = validate_record(&record, Some(&schema_v1_0_4()));
    assert_eq!(report.errors, vec![], "{report:?}");
    assert_eq!(
        report.warning_codes(),
        vec![
            ("modules", IssueCode::MissingRecommended),
            ("schema_version", IssueCode::TaxonomyVersionMismatch)
        ]
    );
    // The 0.8.0 locator shape (type docker_image, one url) is not a 1.x record.
    assert!(serde_json::from_value::<Record>(record).is_err());
}

#[test]
fn invalid_1_0_0_fixture_lacks_version_and_skills() {
    let report = validate_record(&fixture("invalid_1.0.0_record.json"), None);
    assert_eq!(
        report.error_codes(),
        vec![
            ("version", IssueCode::MissingRequired),
            ("skills", IssueCode::MissingRequired)
        ]
    );
}

#[test]
fn invalid_0_8_0_fixture_has_only_a_schema_version() {
    let report = validate_record(&fixture("invalid_0.8.0_record.json"), None);
    assert_eq!(
        report.error_codes(),
        vec![
            ("name", IssueCode::MissingRequired),
            ("version", IssueCode::MissingRequired),
            ("description", IssueCode::MissingRequired),
            ("authors", IssueCode::MissingRequired),
            ("created_at", IssueCode::MissingRequired),
            ("skills", IssueCode::MissingRequired),
        ]
    );
}

// oasf-sdk never validates this file: it is the expected output of its A2A -> record
// translation, compared field by field after dropping `_comment_created_at`. As a record it
// fails on two counts, with or without the taxonomy (it has no skills or domains to check).
#[test]
fn a2a_translation_output_is_not_a_valid_record() {
    let record = fixture("expected_a2atorecord_output.json");
    let expected = vec![
        ("_comment_created_at", IssueCode::UnknownAttribute),
        ("skills", IssueCode::EmptyArray),
    ];
    assert_eq!(validate_record(&record, None).error_codes(), expected);
    let report = validate_record(&record, Some(&schema_v1_0_4()));
    assert_eq!(report.error_codes(), expected);
    assert_eq!(
        report.warning_codes(),
        vec![
            ("domains", IssueCode::MissingRecommended),
            ("modules[0].id", IssueCode::MissingRecommended)
        ]
    );
    // Its A2A module is well formed, and the artifact's size and sha256 match its data.
    let mut fixed = record.clone();
    let obj = fixed.as_object_mut().unwrap();
    obj.remove("_comment_created_at");
    obj["skills"] = json!([{"id": 10101}]);
    assert!(validate_record(&fixed, Some(&schema_v1_0_4())).is_valid());
    // And the card in it is the A2A card of translation_a2a.json.
    assert_eq!(
        record["modules"][0]["data"]["card_data"],
        fixture("translation_a2a.json")
    );
}

// --- Rules, both sides ------------------------------------------------------------------------

#[test]
fn the_full_record_is_valid_without_remarks() {
    let report = validate_record(&full(), Some(&schema_v1_0_4()));
    assert_eq!(report, Report::default());
    let typed: Record = serde_json::from_value(full()).unwrap();
    assert_eq!(typed.validate(Some(&schema_v1_0_4())), Report::default());
}

#[test]
fn not_an_object() {
    assert_eq!(errors(&json!([])), e("", IssueCode::NotAnObject));
}

#[test]
fn required_attributes_and_their_types() {
    for attribute in [
        "name",
        "version",
        "schema_version",
        "description",
        "authors",
        "created_at",
        "skills",
    ] {
        let mut r = full();
        r.as_object_mut().unwrap().remove(attribute);
        assert_eq!(
            errors(&r),
            e(attribute, IssueCode::MissingRequired),
            "{attribute}"
        );
        let mut r = full();
        r[attribute] = Value::Null;
        assert_eq!(
            errors(&r),
            e(attribute, IssueCode::MissingRequired),
            "{attribute} null"
        );
    }
    for attribute in ["name", "version", "description", "created_at"] {
        let mut r = full();
        r[attribute] = json!(7);
        assert_eq!(
            errors(&r),
            e(attribute, IssueCode::WrongType),
            "{attribute}"
        );
        r[attribute] = json!("");
        assert_eq!(
            errors(&r),
            e(attribute, IssueCode::EmptyString),
            "{attribute}"
        );
    }
    let mut r = full();
    r["skills"] = json!({"id": 1});
    assert_eq!(errors(&r), e("skills", IssueCode::WrongType));
}

#[test]
fn unknown_attributes_at_every_level() {
    let cases = [
        ("/extra", "extra"),
        ("/skills/0/extra", "skills[0].extra"),
        ("/domains/0/extra", "domains[0].extra"),
        ("/locators/1/extra", "locators[1].extra"),
        ("/modules/0/extra", "modules[0].extra"),
        ("/modules/0/data/extra", "modules[0].data.extra"),
    ];
    for (pointer, path) in cases {
        let mut r = full();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        r.pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert(key.into(), json!(1));
        assert_eq!(
            errors(&r),
            e(path, IssueCode::UnknownAttribute),
            "{pointer}"
        );
    }
    // 0.x-only record attributes are unknown in 1.x.
    let mut r = full();
    r["previous_record_cid"] = json!("bafy");
    assert_eq!(
        errors(&r),
        e("previous_record_cid", IssueCode::UnknownAttribute)
    );
}

#[test]
fn schema_version_rules() {
    let cases: [(&str, Found, Vec<IssueCode>); 7] = [
        ("1.0.0", vec![], vec![]),
        (
            "1.1.0",
            vec![],
            vec![
                IssueCode::SchemaVersionNewerThanTools,
                IssueCode::TaxonomyVersionMismatch,
            ],
        ),
        (
            "1.2.0-dev",
            e("schema_version", IssueCode::UnsupportedSchemaVersion),
            vec![],
        ),
        (
            "2.0.0",
            e("schema_version", IssueCode::UnsupportedSchemaVersion),
            vec![],
        ),
        (
            "v1.0.0",
            e("schema_version", IssueCode::InvalidSemver),
            vec![],
        ),
        ("1.0", e("schema_version", IssueCode::InvalidSemver), vec![]),
        (
            "01.0.0",
            e("schema_version", IssueCode::InvalidSemver),
            vec![],
        ),
    ];
    for (version, want_errors, want_warnings) in cases {
        let mut r = full();
        r["schema_version"] = json!(version);
        let report = validate_record(&r, Some(&schema_v1_0_4()));
        let got: Vec<(String, IssueCode)> = report
            .errors
            .iter()
            .map(|i| (i.path.clone(), i.code))
            .collect();
        assert_eq!(got, want_errors, "{version}");
        let warnings: Vec<IssueCode> = report.warnings.iter().map(|i| i.code).collect();
        assert_eq!(warnings, want_warnings, "{version}");
    }
}

#[test]
fn created_at_is_rfc3339() {
    for ok in [
        "2025-01-01T00:00:00Z",
        "2024-09-10T23:20:50.520Z",
        "2024-09-10 23:20:50.520789Z",
        "2025-01-01t00:00:00+05:30",
    ] {
        let mut r = full();
        r["created_at"] = json!(ok);
        assert_eq!(errors(&r), vec![], "{ok}");
    }
    for bad in [
        "2025-01-01",
        "2025-01-01T00:00:00",
        "2025-13-01T00:00:00Z",
        "2025-01-01_00:00:00Z",
        "yesterday",
    ] {
        let mut r = full();
        r["created_at"] = json!(bad);
        assert_eq!(
            errors(&r),
            e("created_at", IssueCode::InvalidDatetime),
            "{bad}"
        );
    }
}

#[test]
fn authors_are_non_empty_strings() {
    let mut r = full();
    r["authors"] = json!([]);
    assert_eq!(errors(&r), e("authors", IssueCode::EmptyArray));
    r["authors"] = json!(["Ada", ""]);
    assert_eq!(errors(&r), e("authors[1]", IssueCode::EmptyString));
    r["authors"] = json!(["Ada", 3]);
    assert_eq!(errors(&r), e("authors[1]", IssueCode::WrongType));
    r["authors"] = json!("Ada");
    assert_eq!(errors(&r), e("authors", IssueCode::WrongType));
    r["authors"] = json!(["Test Corp", "Ada Lovelace <ada@example.org>"]);
    assert_eq!(errors(&r), vec![]);
}

#[test]
fn skills_and_domains() {
    let mut r = full();
    r["skills"] = json!([]);
    assert_eq!(errors(&r), e("skills", IssueCode::EmptyArray));
    r["skills"] = json!([{}]);
    assert_eq!(errors(&r), e("skills[0]", IssueCode::MissingIdAndName));
    r["skills"] = json!(["natural_language_processing"]);
    assert_eq!(errors(&r), e("skills[0]", IssueCode::NotAnObject));
    for bad_id in [json!(-1), json!(1.5), json!("101"), json!(4294967296_u64)] {
        r["skills"] = json!([{"id": bad_id}]);
        assert_eq!(
            errors(&r),
            e("skills[0].id", IssueCode::WrongType),
            "{bad_id}"
        );
    }
    r["skills"] = json!([{"name": 5}]);
    assert_eq!(errors(&r), e("skills[0].name", IssueCode::WrongType));
    // Only one of id and name: valid, with a warning for the other.
    r["skills"] = json!([{"id": 101}]);
    let report = validate_record(&r, Some(&schema_v1_0_4()));
    assert!(report.is_valid());
    assert_eq!(
        report.warning_codes(),
        vec![("skills[0].name", IssueCode::MissingRecommended)]
    );
    r["skills"] = json!([{"name": "audio"}]);
    let report = validate_record(&r, Some(&schema_v1_0_4()));
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(
        report.warning_codes(),
        vec![("skills[0].id", IssueCode::MissingRecommended)]
    );
    // Domains are recommended: absent or empty is a warning, not an error.
    let mut r = full();
    r.as_object_mut().unwrap().remove("domains");
    let report = validate_record(&r, None);
    assert!(report.is_valid());
    assert_eq!(
        report.warning_codes(),
        vec![("domains", IssueCode::MissingRecommended)]
    );
    r["domains"] = json!([]);
    assert_eq!(
        validate_record(&r, None).warning_codes(),
        vec![("domains", IssueCode::MissingRecommended)]
    );
    r["domains"] = json!([{"id": 101, "extra": true}]);
    assert_eq!(
        errors(&r),
        e("domains[0].extra", IssueCode::UnknownAttribute)
    );
}

#[test]
fn taxonomy_consistency() {
    let t = schema_v1_0_4();
    let check = |skills: Value, domains: Value| {
        let mut r = full();
        r["skills"] = skills;
        r["domains"] = domains;
        validate_record(&r, Some(&t))
    };
    let ok = check(
        json!([{"id": 101, "name": "natural_language_processing/natural_language_understanding"}]),
        json!([{"id": 101, "name": "technology/internet_of_things"}]),
    );
    assert!(ok.is_valid(), "{ok:?}");

    let r = check(json!([{"id": 199}]), json!([{"id": 101}]));
    assert_eq!(
        r.error_codes(),
        vec![("skills[0].id", IssueCode::UnknownTaxonomyId)]
    );
    let r = check(json!([{"id": 101}]), json!([{"name": "technology/iot"}]));
    assert_eq!(
        r.error_codes(),
        vec![("domains[0].name", IssueCode::UnknownTaxonomyName)]
    );
    let r = check(
        json!([{"id": 101, "name": "natural_language_processing"}]),
        json!([{"id": 101}]),
    );
    assert_eq!(
        r.error_codes(),
        vec![("skills[0]", IssueCode::TaxonomyMismatch)]
    );
    assert!(
        r.errors[0]
            .message
            .contains("natural_language_processing/natural_language_understanding"),
        "the message names the expected name: {}",
        r.errors[0].message
    );
    // The families are separate: a skill name is no domain, and a domain id may be a skill's
    // too but name another class (10101 is technology/internet_of_things/iot_devices).
    let r = check(
        json!([{"id": 101}]),
        json!([{"name": "natural_language_processing"}]),
    );
    assert_eq!(
        r.error_codes(),
        vec![("domains[0].name", IssueCode::UnknownTaxonomyName)]
    );
    let r = check(
        json!([{"id": 101}]),
        json!([{"id": 10101, "name": "natural_language_processing/natural_language_understanding/contextual_comprehension"}]),
    );
    assert_eq!(
        r.error_codes(),
        vec![("domains[0].name", IssueCode::UnknownTaxonomyName)]
    );
    let r = check(json!([{"id": 101}]), json!([{"id": 10199}]));
    assert_eq!(
        r.error_codes(),
        vec![("domains[0].id", IssueCode::UnknownTaxonomyId)]
    );
    // Without a taxonomy nothing is looked up.
    let mut rec = full();
    rec["skills"] = json!([{"id": 199, "name": "made/up"}]);
    assert!(validate_record(&rec, None).is_valid());
}

#[test]
fn locator_rules() {
    let mut r = full();
    r["locators"][0]["type"] = json!("docker_image");
    assert_eq!(
        errors(&r),
        e("locators[0].type", IssueCode::InvalidLocatorType)
    );
    let mut r = full();
    r["locators"][1]["type"] = json!("container_image");
    assert_eq!(
        errors(&r),
        e("locators[1].type", IssueCode::DuplicateLocatorType)
    );
    let mut r = full();
    r["locators"][0]["urls"] = json!([]);
    assert_eq!(errors(&r), e("locators[0].urls", IssueCode::EmptyArray));
    r["locators"][0]["urls"] = json!("ghcr.io/x");
    assert_eq!(errors(&r), e("locators[0].urls", IssueCode::WrongType));
    let mut r = full();
    r["locators"][0].as_object_mut().unwrap().remove("urls");
    assert_eq!(
        errors(&r),
        e("locators[0].urls", IssueCode::MissingRequired)
    );
    let mut r = full();
    r["locators"][0].as_object_mut().unwrap().remove("type");
    assert_eq!(
        errors(&r),
        e("locators[0].type", IssueCode::MissingRequired)
    );
    // The 0.x single url is unknown in 1.x.
    let mut r = full();
    r["locators"][0]["url"] = json!("ghcr.io/x");
    assert_eq!(
        errors(&r),
        e("locators[0].url", IssueCode::UnknownAttribute)
    );
    // Every 1.x type, once each, is fine; locators are optional.
    let mut r = full();
    let all: Vec<Value> = LocatorType::ALL
        .iter()
        .map(|t| json!({"type": t.as_str(), "urls": ["https://example.org/a"]}))
        .collect();
    r["locators"] = Value::Array(all);
    assert_eq!(errors(&r), vec![]);
    r.as_object_mut().unwrap().remove("locators");
    assert_eq!(validate_record(&r, None), Report::default());
}

#[test]
fn annotation_rules() {
    let mut r = full();
    r["annotations"] = json!({"agntcy.owner": "x", "ok": "y"});
    assert_eq!(
        errors(&r),
        e(
            "annotations[\"agntcy.owner\"]",
            IssueCode::ReservedAnnotation
        )
    );
    let mut r = full();
    r["annotations"] = json!({"count": 1});
    assert_eq!(
        errors(&r),
        e("annotations[\"count\"]", IssueCode::WrongType)
    );
    let mut r = full();
    r["annotations"] = json!(["a"]);
    assert_eq!(errors(&r), e("annotations", IssueCode::NotAnObject));
    // The same rule on locators, modules, skills and domains.
    for (pointer, path) in [
        ("/locators/0", "locators[0]"),
        ("/modules/0", "modules[0]"),
        ("/skills/0", "skills[0]"),
        ("/domains/0", "domains[0]"),
    ] {
        let mut r = full();
        r.pointer_mut(pointer).unwrap()["annotations"] = json!({"agntcy.dir": "x"});
        assert_eq!(
            errors(&r),
            e(
                &format!("{path}.annotations[\"agntcy.dir\"]"),
                IssueCode::ReservedAnnotation
            )
        );
    }
    // Prefix, not substring: these are fine.
    let mut r = full();
    r["annotations"] = json!({"agntcy": "x", "my.agntcy.key": "y", "AGNTCY-ish": "z"});
    assert_eq!(errors(&r), vec![]);
}

#[test]
fn module_rules() {
    let mut r = full();
    r["modules"][0].as_object_mut().unwrap().remove("data");
    assert_eq!(errors(&r), e("modules[0].data", IssueCode::MissingRequired));
    let mut r = full();
    r["modules"][0]["data"] = json!("x");
    assert_eq!(errors(&r), e("modules[0].data", IssueCode::NotAnObject));
    let mut r = full();
    r["modules"][0].as_object_mut().unwrap().remove("name");
    assert_eq!(errors(&r), e("modules[0].name", IssueCode::MissingRequired));
    let mut r = full();
    r["modules"][0]["id"] = json!("203");
    assert_eq!(errors(&r), e("modules[0].id", IssueCode::WrongType));
    // Other modules' payloads are not inspected.
    let mut r = full();
    r["modules"] = json!([{"name": "integration/mcp", "id": 202, "data": {"anything": [1, 2]}}]);
    assert_eq!(validate_record(&r, None), Report::default());
    // Modules are recommended.
    r.as_object_mut().unwrap().remove("modules");
    assert_eq!(
        validate_record(&r, None).warning_codes(),
        vec![("modules", IssueCode::MissingRecommended)]
    );
}

#[test]
fn a2a_module_rules() {
    let mut r = full();
    r["modules"][0]["data"]
        .as_object_mut()
        .unwrap()
        .remove("card_data");
    assert_eq!(
        errors(&r),
        e("modules[0].data.card_data", IssueCode::MissingRequired)
    );
    let mut r = full();
    r["modules"][0]["data"]["card_data"] = json!("{\"name\":\"agent\"}");
    assert_eq!(
        errors(&r),
        e("modules[0].data.card_data", IssueCode::NotAnObject)
    );
    let mut r = full();
    r["modules"][0]["data"]
        .as_object_mut()
        .unwrap()
        .remove("card_schema_version");
    assert_eq!(
        errors(&r),
        e(
            "modules[0].data.card_schema_version",
            IssueCode::MissingRequired
        )
    );
    let mut r = full();
    r["modules"][0]["data"]["card_schema_version"] = json!(1);
    assert_eq!(
        errors(&r),
        e("modules[0].data.card_schema_version", IssueCode::WrongType)
    );
    // Built with the helper, it passes.
    let mut card = serde_json::Map::new();
    card.insert("name".into(), json!("agent"));
    let mut r = full();
    r["modules"] = json!([serde_json::to_value(Module::a2a(card, "1.0.0")).unwrap()]);
    assert!(errors(&r).is_empty());
}

#[test]
fn descriptor_rules() {
    // "hello" = aGVsbG8=, 5 bytes, sha256 2cf24dba...
    let good = json!({
        "media_type": "text/plain", "size": 5,
        "digest": "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        "data": "aGVsbG8="
    });
    let with = |artifact: Value| {
        let mut r = full();
        r["modules"][0]["artifact"] = artifact;
        errors(&r)
    };
    assert_eq!(with(good.clone()), vec![]);
    let mut a = good.clone();
    a["size"] = json!(6);
    assert_eq!(
        with(a),
        e("modules[0].artifact.size", IssueCode::ArtifactSizeMismatch)
    );
    let mut a = good.clone();
    a["digest"] = json!("sha256:00");
    assert_eq!(
        with(a),
        e(
            "modules[0].artifact.digest",
            IssueCode::ArtifactDigestMismatch
        )
    );
    let mut a = good.clone();
    a["data"] = json!("aGVsbG8");
    assert_eq!(
        with(a),
        e("modules[0].artifact.data", IssueCode::InvalidBase64)
    );
    let mut a = good.clone();
    a["json"] = json!({"x": 1});
    assert_eq!(
        with(a),
        e("modules[0].artifact", IssueCode::ConstraintJustOne)
    );
    let none = json!({"media_type": "text/plain", "size": 5, "digest": "sha256:ab"});
    assert_eq!(
        with(none),
        e("modules[0].artifact", IssueCode::ConstraintAtLeastOne)
    );
    let urls_only = json!({"media_type": "text/plain", "size": 5, "digest": "sha256:ab", "urls": ["https://example.org/a"]});
    assert_eq!(with(urls_only), vec![]);
    let mut a = good.clone();
    a.as_object_mut().unwrap().remove("media_type");
    assert_eq!(
        with(a),
        e("modules[0].artifact.media_type", IssueCode::MissingRequired)
    );
    let mut a = good;
    a["extra"] = json!(1);
    assert_eq!(
        with(a),
        e("modules[0].artifact.extra", IssueCode::UnknownAttribute)
    );
}

#[test]
fn legacy_0_x_shapes() {
    let legacy = |version: &str| {
        json!({
            "name": "example.org/agent", "version": "v1", "schema_version": version,
            "description": "d", "authors": ["A"], "created_at": "2025-01-01T00:00:00Z",
            "skills": [{"id": 101}], "domains": [{"id": 101}],
            "modules": [{"name": "integration/a2a", "id": 203, "data": {"protocol_version": "0.2.6", "card_data": {}}}],
            "locators": [{"type": "docker_image", "url": "ghcr.io/x:1", "size": 10, "digest": "sha256:ab"}],
            "previous_record_cid": "bafyreib"
        })
    };
    for version in ["0.7.0", "0.8.0"] {
        // Only ids are given: valid, with warnings for the names.
        assert_eq!(
            validate_record(&legacy(version), None).errors,
            vec![],
            "{version}"
        );
        // The 1.x shapes are wrong there.
        let mut r = legacy(version);
        r["locators"] = json!([{"type": "container_image", "urls": ["ghcr.io/x:1"]}]);
        assert_eq!(
            validate_record(&r, None).error_codes(),
            vec![
                ("locators[0].urls", IssueCode::UnknownAttribute),
                ("locators[0].type", IssueCode::InvalidLocatorType),
                ("locators[0].url", IssueCode::MissingRequired),
            ],
            "{version}"
        );
        let mut r = legacy(version);
        r["modules"][0]["artifact"] = json!({});
        assert_eq!(
            validate_record(&r, None).error_codes(),
            vec![("modules[0].artifact", IssueCode::UnknownAttribute)]
        );
    }
    // 0.7.0: locators required, signature allowed.
    let mut r = legacy("0.7.0");
    r["signature"] = json!({"signature": "MEUC", "algorithm": "ES256"});
    assert!(validate_record(&r, None).is_valid());
    r["signature"] = json!({"algorithm": "ES256", "extra": 1});
    assert_eq!(
        validate_record(&r, None).error_codes(),
        vec![
            ("signature.extra", IssueCode::UnknownAttribute),
            ("signature.signature", IssueCode::MissingRequired)
        ]
    );
    r.as_object_mut().unwrap().remove("locators");
    r.as_object_mut().unwrap().remove("signature");
    assert_eq!(
        validate_record(&r, None).error_codes(),
        vec![("locators", IssueCode::MissingRequired)]
    );
    // 0.8.0: no signature, and skills/domains have no annotations.
    let mut r = legacy("0.8.0");
    r["signature"] = json!({"signature": "MEUC"});
    r["skills"][0]["annotations"] = json!({"a": "b"});
    assert_eq!(
        validate_record(&r, None).error_codes(),
        vec![
            ("signature", IssueCode::UnknownAttribute),
            ("skills[0].annotations", IssueCode::UnknownAttribute)
        ]
    );
}

#[test]
fn reports_serialize_with_stable_codes() {
    let mut r = full();
    r["skills"] = json!([{}]);
    let report = validate_record(&r, None);
    let v = serde_json::to_value(&report).unwrap();
    assert_eq!(v["errors"][0]["path"], "skills[0]");
    assert_eq!(v["errors"][0]["code"], "missing_id_and_name");
    assert_eq!(v["errors"][0]["code"], IssueCode::MissingIdAndName.as_str());
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("id"));
    assert_eq!(v["warnings"], json!([]));
}

// Numbers under arbitrary_precision (ssi turns it on in the full build) still deserialize.
#[test]
fn typed_ids_deserialize_from_values() {
    let typed: Record = serde_json::from_value(full()).unwrap();
    assert_eq!(typed.skills[0].id, Some(10101));
    assert_eq!(typed.modules[0].id, Some(203));
}
