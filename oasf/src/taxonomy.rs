//! The OASF skill and domain taxonomies, read from the schema's own definition files.
//!
//! Each class is one JSON file under `skills/` or `domains/` with a `uid`, a `name` and the
//! `name` of the class it `extends` (`base_skill` / `base_domain` for a top-level category).
//! A record refers to a class by its full id and full name, which the OASF server derives from
//! the `extends` chain (agntcy/oasf `server/lib/schema/cache.ex` `calculate_uid` and
//! `utils.ex` `class_name_with_hierarchy`, tag v1.0.4):
//!
//! - full id: `parent_full_id * 100 + uid`, a category's being its `uid`
//!   (`Schema.Types.class_uid/2`); e.g. natural_language_processing (uid 1) →
//!   natural_language_understanding (uid 1) is 101, and its contextual_comprehension (uid 1) is
//!   10101;
//! - full name: the `name`s from the category down, joined by `/`
//!   (`natural_language_processing/natural_language_understanding`). Names come from the files,
//!   not from directories: `domains/technology/iot/iot.json` is `technology/internet_of_things`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

/// The files the loader skips: the abstract roots every category extends.
const BASE_FILES: [&str; 2] = ["base_skill.json", "base_domain.json"];
/// Directory levels below `skills/` or `domains/` the loader descends (the schema uses 3).
const MAX_DEPTH: usize = 16;

/// Which taxonomy a class belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// `skills/`, rooted at `base_skill`.
    Skill,
    /// `domains/`, rooted at `base_domain`.
    Domain,
}

impl Family {
    /// The schema directory holding this family (`skills` or `domains`).
    pub fn dir(self) -> &'static str {
        match self {
            Family::Skill => "skills",
            Family::Domain => "domains",
        }
    }

    /// The abstract class a top-level category `extends`.
    pub fn base(self) -> &'static str {
        match self {
            Family::Skill => "base_skill",
            Family::Domain => "base_domain",
        }
    }

    fn of_path(path: &str) -> Option<Family> {
        let first = path.trim_start_matches("./").split(['/', '\\']).next()?;
        match first {
            "skills" => Some(Family::Skill),
            "domains" => Some(Family::Domain),
            _ => None,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Skill => "skill",
            Family::Domain => "domain",
        })
    }
}

/// Why a schema directory could not be read as a taxonomy. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaxonomyError {
    /// A directory or file could not be read (missing schema directory, no `skills/`, ...).
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A class file is not JSON.
    #[error("{path} is not valid JSON: {source}")]
    Json {
        /// The class file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A class file lacks `uid`, `name` or `extends`, or has one of the wrong type (`uid` must
    /// be a non-negative integer, the others strings).
    #[error("{path}: attribute {attribute:?} is missing or has the wrong type")]
    BadAttribute {
        /// The class file.
        path: PathBuf,
        /// The attribute.
        attribute: &'static str,
    },
    /// `extends` names no class of the same family (nor its base).
    #[error("{path}: class {name:?} extends {extends:?}, which is not a {family} class")]
    DanglingExtends {
        /// The class file.
        path: PathBuf,
        /// The class's `name`.
        name: String,
        /// The missing parent.
        extends: String,
        /// The family searched.
        family: Family,
    },
    /// Following `extends` from this class comes back to it.
    #[error("{path}: the extends chain of {name:?} is a cycle")]
    Cycle {
        /// The class file.
        path: PathBuf,
        /// The class's `name`.
        name: String,
    },
    /// Two class files of one family have the same `name` (`extends` could not tell them apart).
    #[error("{path} and {other}: both define {family} class {name:?}")]
    DuplicateName {
        /// The later file.
        path: PathBuf,
        /// The earlier file.
        other: PathBuf,
        /// The shared name.
        name: String,
        /// The family.
        family: Family,
    },
    /// Two classes of one family end up with the same full id.
    #[error("{path} and {other}: both have {family} id {id}")]
    DuplicateId {
        /// The later file.
        path: PathBuf,
        /// The earlier file.
        other: PathBuf,
        /// The shared full id.
        id: u64,
        /// The family.
        family: Family,
    },
    /// The full id does not fit in 64 bits (an absurdly deep chain or huge `uid`).
    #[error("{path}: the full id of {name:?} overflows")]
    IdOverflow {
        /// The class file.
        path: PathBuf,
        /// The class's `name`.
        name: String,
    },
}

/// Why a `{id, name}` reference does not match the taxonomy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClassRefError {
    /// Neither `id` nor `name` was given (OASF `base_skill`/`base_domain` constraint
    /// `at_least_one: [id, name]`).
    #[error("a {family} needs an id or a name")]
    Empty {
        /// The family.
        family: Family,
    },
    /// No class has this full id.
    #[error("no {family} has id {id}")]
    UnknownId {
        /// The family.
        family: Family,
        /// The id given.
        id: u64,
    },
    /// No class has this full name.
    #[error("no {family} is named {name:?}")]
    UnknownName {
        /// The family.
        family: Family,
        /// The name given.
        name: String,
    },
    /// Both exist but name different classes.
    #[error("{family} id {id} is {expected:?}, not {name:?}")]
    Mismatch {
        /// The family.
        family: Family,
        /// The id given.
        id: u64,
        /// The name given.
        name: String,
        /// The full name of the class with that id.
        expected: String,
    },
}

#[derive(Debug, Clone, Default)]
struct Tree {
    by_id: BTreeMap<u64, String>,
    by_name: HashMap<String, u64>,
}

/// The skill and domain taxonomies of one OASF schema version.
#[derive(Debug, Clone, Default)]
pub struct Taxonomy {
    skills: Tree,
    domains: Tree,
    version: Option<String>,
}

/// One parsed class file, before its chain is resolved.
struct RawClass {
    path: PathBuf,
    uid: u64,
    name: String,
    extends: String,
}

impl Taxonomy {
    /// Reads `skills/**/*.json` and `domains/**/*.json` under an OASF schema directory (for
    /// example a checkout of agntcy/oasf `schema/`), skipping `base_skill.json` and
    /// `base_domain.json`, and the schema version from `version.json` when there is one.
    pub fn load_dir(schema_dir: impl AsRef<Path>) -> Result<Taxonomy, TaxonomyError> {
        let root = schema_dir.as_ref();
        let mut files: Vec<(PathBuf, Family, String)> = Vec::new();
        for family in [Family::Skill, Family::Domain] {
            let dir = root.join(family.dir());
            let mut paths = Vec::new();
            collect_json(&dir, 0, &mut paths)?;
            paths.sort();
            for path in paths {
                let text = std::fs::read_to_string(&path).map_err(|source| TaxonomyError::Io {
                    path: path.clone(),
                    source,
                })?;
                files.push((path, family, text));
            }
        }
        let version = match std::fs::read_to_string(root.join("version.json")) {
            Ok(text) => version_of(&root.join("version.json"), &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(TaxonomyError::Io {
                    path: root.join("version.json"),
                    source,
                })
            }
        };
        let mut taxonomy = Taxonomy::build(files)?;
        taxonomy.version = version;
        Ok(taxonomy)
    }

    /// Builds a taxonomy from in-memory `(path, json)` pairs, paths relative to the schema
    /// directory (`"skills/audio/audio.json"`). Paths outside `skills/` and `domains/`, and the
    /// base files, are ignored, as [`Taxonomy::load_dir`] ignores them.
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Taxonomy, TaxonomyError> {
        let files = files
            .into_iter()
            .filter_map(|(path, text)| {
                let family = Family::of_path(path)?;
                Some((PathBuf::from(path), family, text.to_string()))
            })
            .collect();
        Taxonomy::build(files)
    }

    /// The same taxonomy, labelled with the OASF schema version it comes from (what
    /// `version.json` says, e.g. `1.0.0`); the record validator warns when a record's
    /// `schema_version` differs.
    pub fn with_version(mut self, version: impl Into<String>) -> Taxonomy {
        self.version = Some(version.into());
        self
    }

    /// The schema version the taxonomy comes from, when known.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    fn build(files: Vec<(PathBuf, Family, String)>) -> Result<Taxonomy, TaxonomyError> {
        let mut raw: HashMap<Family, Vec<RawClass>> = HashMap::new();
        for (path, family, text) in files {
            let is_base = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| BASE_FILES.contains(&n));
            if is_base || path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            raw.entry(family)
                .or_default()
                .push(parse_class(path, &text)?);
        }
        Ok(Taxonomy {
            skills: resolve(
                Family::Skill,
                raw.remove(&Family::Skill).unwrap_or_default(),
            )?,
            domains: resolve(
                Family::Domain,
                raw.remove(&Family::Domain).unwrap_or_default(),
            )?,
            version: None,
        })
    }

    fn tree(&self, family: Family) -> &Tree {
        match family {
            Family::Skill => &self.skills,
            Family::Domain => &self.domains,
        }
    }

    /// The full name of the class with this full id.
    pub fn name_of(&self, family: Family, id: u64) -> Option<&str> {
        self.tree(family).by_id.get(&id).map(String::as_str)
    }

    /// The full id of the class with this full name.
    pub fn id_of(&self, family: Family, name: &str) -> Option<u64> {
        self.tree(family).by_name.get(name).copied()
    }

    /// The full name of skill `id` (`101` → `natural_language_processing/natural_language_understanding`).
    pub fn skill(&self, id: u64) -> Option<&str> {
        self.name_of(Family::Skill, id)
    }

    /// The full id of the skill with this full name.
    pub fn skill_by_name(&self, name: &str) -> Option<u64> {
        self.id_of(Family::Skill, name)
    }

    /// The full name of domain `id` (`101` → `technology/internet_of_things`).
    pub fn domain(&self, id: u64) -> Option<&str> {
        self.name_of(Family::Domain, id)
    }

    /// The full id of the domain with this full name.
    pub fn domain_by_name(&self, name: &str) -> Option<u64> {
        self.id_of(Family::Domain, name)
    }

    /// Every class of a family as `(full id, full name)`, by id.
    pub fn classes(&self, family: Family) -> impl Iterator<Item = (u64, &str)> + '_ {
        self.tree(family)
            .by_id
            .iter()
            .map(|(id, name)| (*id, name.as_str()))
    }

    /// Checks a record's `{id, name}` reference: each given part must exist, and when both are
    /// given they must name the same class.
    pub fn check(
        &self,
        family: Family,
        id: Option<u64>,
        name: Option<&str>,
    ) -> Result<(), ClassRefError> {
        let by_id = match id {
            Some(id) => Some(
                self.name_of(family, id)
                    .ok_or(ClassRefError::UnknownId { family, id })?,
            ),
            None => None,
        };
        match (id, by_id, name) {
            (_, _, Some(name)) if self.id_of(family, name).is_none() => {
                Err(ClassRefError::UnknownName {
                    family,
                    name: name.to_string(),
                })
            }
            (Some(id), Some(expected), Some(name)) if expected != name => {
                Err(ClassRefError::Mismatch {
                    family,
                    id,
                    name: name.to_string(),
                    expected: expected.to_string(),
                })
            }
            (None, _, None) => Err(ClassRefError::Empty { family }),
            _ => Ok(()),
        }
    }

    /// [`Taxonomy::check`] for a skill.
    pub fn check_skill(&self, id: Option<u64>, name: Option<&str>) -> Result<(), ClassRefError> {
        self.check(Family::Skill, id, name)
    }

    /// [`Taxonomy::check`] for a domain.
    pub fn check_domain(&self, id: Option<u64>, name: Option<&str>) -> Result<(), ClassRefError> {
        self.check(Family::Domain, id, name)
    }
}

fn collect_json(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), TaxonomyError> {
    let io = |source| TaxonomyError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        // Follows symlinks; the depth bound stops a link cycle.
        let meta = std::fs::metadata(&path).map_err(|source| TaxonomyError::Io {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            if depth < MAX_DEPTH {
                collect_json(&path, depth + 1, out)?;
            }
        } else if path.extension().and_then(|e| e.to_str()) == Some("json") {
            out.push(path);
        }
    }
    Ok(())
}

fn version_of(path: &Path, text: &str) -> Result<Option<String>, TaxonomyError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|source| TaxonomyError::Json {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(value
        .get("version")
        .and_then(|v| v.as_str())
        .map(str::to_string))
}

fn parse_class(path: PathBuf, text: &str) -> Result<RawClass, TaxonomyError> {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(source) => return Err(TaxonomyError::Json { path, source }),
    };
    let string = |attribute: &'static str| value.get(attribute).and_then(|v| v.as_str());
    let (Some(uid), Some(name), Some(extends)) = (
        value.get("uid").and_then(|v| v.as_u64()),
        string("name"),
        string("extends"),
    ) else {
        let attribute = if value.get("uid").and_then(|v| v.as_u64()).is_none() {
            "uid"
        } else if string("name").is_none() {
            "name"
        } else {
            "extends"
        };
        return Err(TaxonomyError::BadAttribute { path, attribute });
    };
    Ok(RawClass {
        uid,
        name: name.to_string(),
        extends: extends.to_string(),
        path,
    })
}

/// Resolves every class's chain to its full id and full name.
fn resolve(family: Family, classes: Vec<RawClass>) -> Result<Tree, TaxonomyError> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, class) in classes.iter().enumerate() {
        if let Some(&j) = index.get(class.name.as_str()) {
            return Err(TaxonomyError::DuplicateName {
                path: class.path.clone(),
                other: classes[j].path.clone(),
                name: class.name.clone(),
                family,
            });
        }
        index.insert(class.name.as_str(), i);
    }
    let mut tree = Tree::default();
    let mut owner: HashMap<u64, usize> = HashMap::new();
    for (i, class) in classes.iter().enumerate() {
        // Walk up to the category; the chain is at most as long as the family.
        let mut chain = vec![i];
        let mut at = class;
        while at.extends != family.base() {
            let Some(&parent) = index.get(at.extends.as_str()) else {
                return Err(TaxonomyError::DanglingExtends {
                    path: at.path.clone(),
                    name: at.name.clone(),
                    extends: at.extends.clone(),
                    family,
                });
            };
            if chain.contains(&parent) {
                return Err(TaxonomyError::Cycle {
                    path: class.path.clone(),
                    name: class.name.clone(),
                });
            }
            chain.push(parent);
            at = &classes[parent];
        }
        let mut id: u64 = 0;
        let mut names = Vec::with_capacity(chain.len());
        for &c in chain.iter().rev() {
            id = id
                .checked_mul(100)
                .and_then(|id| id.checked_add(classes[c].uid))
                .ok_or_else(|| TaxonomyError::IdOverflow {
                    path: class.path.clone(),
                    name: class.name.clone(),
                })?;
            names.push(classes[c].name.as_str());
        }
        if let Some(&j) = owner.get(&id) {
            return Err(TaxonomyError::DuplicateId {
                path: class.path.clone(),
                other: classes[j].path.clone(),
                id,
                family,
            });
        }
        owner.insert(id, i);
        let full = names.join("/");
        tree.by_name.insert(full.clone(), id);
        tree.by_id.insert(id, full);
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(uid: u64, name: &str, extends: &str) -> String {
        serde_json::json!({"uid": uid, "caption": name, "name": name, "extends": extends,
            "attributes": {}})
        .to_string()
    }

    fn small() -> Vec<(String, String)> {
        vec![
            (
                "skills/base_skill.json".into(),
                r#"{"name":"base_skill","attributes":{}}"#.into(),
            ),
            ("skills/nlp/nlp.json".into(), class(1, "nlp", "base_skill")),
            ("skills/nlp/nlu/nlu.json".into(), class(1, "nlu", "nlp")),
            ("skills/nlp/nlu/cc.json".into(), class(1, "cc", "nlu")),
            ("skills/nlp/nlu/er.json".into(), class(3, "er", "nlu")),
            (
                "skills/audio/audio.json".into(),
                class(3, "audio", "base_skill"),
            ),
            (
                "domains/tech/tech.json".into(),
                class(1, "technology", "base_domain"),
            ),
            // The directory says iot; the file's name is what counts.
            (
                "domains/tech/iot/iot.json".into(),
                class(1, "internet_of_things", "technology"),
            ),
            ("README.md".into(), "not json".into()),
            ("objects/record.json".into(), "{}".into()),
        ]
    }

    fn build(files: &[(String, String)]) -> Result<Taxonomy, TaxonomyError> {
        Taxonomy::from_files(files.iter().map(|(p, t)| (p.as_str(), t.as_str())))
    }

    #[test]
    fn ids_and_names_follow_the_extends_chain() {
        let t = build(&small()).unwrap();
        assert_eq!(t.skill(1), Some("nlp"));
        assert_eq!(t.skill(101), Some("nlp/nlu"));
        assert_eq!(t.skill(10101), Some("nlp/nlu/cc"));
        assert_eq!(t.skill(10103), Some("nlp/nlu/er"));
        assert_eq!(t.skill(3), Some("audio"));
        assert_eq!(t.skill_by_name("nlp/nlu/er"), Some(10103));
        assert_eq!(t.skill_by_name("nlu"), None);
        assert_eq!(t.domain(101), Some("technology/internet_of_things"));
        assert_eq!(t.domain_by_name("technology/iot"), None);
        // Families are separate: no skill 101 among domains and the other way round.
        assert_eq!(t.domain(10101), None);
        assert_eq!(t.skill_by_name("technology"), None);
        assert_eq!(t.classes(Family::Skill).count(), 5);
        assert_eq!(t.version(), None);
    }

    #[test]
    fn check_both_sides() {
        let t = build(&small()).unwrap();
        assert_eq!(t.check_skill(Some(101), Some("nlp/nlu")), Ok(()));
        assert_eq!(t.check_skill(Some(101), None), Ok(()));
        assert_eq!(t.check_skill(None, Some("nlp/nlu")), Ok(()));
        assert_eq!(
            t.check_skill(Some(102), Some("nlp/nlu")),
            Err(ClassRefError::UnknownId {
                family: Family::Skill,
                id: 102
            })
        );
        assert_eq!(
            t.check_skill(Some(101), Some("nlp/nlg")),
            Err(ClassRefError::UnknownName {
                family: Family::Skill,
                name: "nlp/nlg".into()
            })
        );
        assert_eq!(
            t.check_skill(Some(101), Some("nlp/nlu/cc")),
            Err(ClassRefError::Mismatch {
                family: Family::Skill,
                id: 101,
                name: "nlp/nlu/cc".into(),
                expected: "nlp/nlu".into()
            })
        );
        assert_eq!(
            t.check_domain(None, None),
            Err(ClassRefError::Empty {
                family: Family::Domain
            })
        );
        let msg = t
            .check_skill(Some(101), Some("nlp/nlu/cc"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("\"nlp/nlu\""), "{msg}");
    }

    #[test]
    fn loading_errors_name_the_file() {
        let mut files = small();
        files.push(("skills/bad.json".into(), "{ nope".into()));
        let err = build(&files).unwrap_err();
        assert!(matches!(&err, TaxonomyError::Json { path, .. } if path.ends_with("bad.json")));
        assert!(err.to_string().contains("skills/bad.json"), "{err}");

        let mut files = small();
        files.push(("skills/x.json".into(), class(4, "orphan", "nowhere")));
        let err = build(&files).unwrap_err();
        assert!(
            matches!(&err, TaxonomyError::DanglingExtends { path, extends, .. }
                if path.ends_with("x.json") && extends == "nowhere"),
            "{err}"
        );

        // A skill may not extend a domain.
        let mut files = small();
        files.push(("skills/y.json".into(), class(4, "y", "technology")));
        assert!(matches!(
            build(&files),
            Err(TaxonomyError::DanglingExtends { .. })
        ));
        let mut files = small();
        files.push(("skills/z.json".into(), class(4, "z", "base_domain")));
        assert!(matches!(
            build(&files),
            Err(TaxonomyError::DanglingExtends { .. })
        ));

        let mut files = small();
        files.push(("skills/nlp/nlu/dup.json".into(), class(1, "other", "nlu")));
        let err = build(&files).unwrap_err();
        assert!(
            matches!(&err, TaxonomyError::DuplicateId { id: 10101, path, other, .. }
                if path.ends_with("dup.json") && other.ends_with("cc.json")),
            "{err}"
        );

        let mut files = small();
        files.push(("skills/audio/nlu.json".into(), class(2, "nlu", "audio")));
        assert!(
            matches!(build(&files), Err(TaxonomyError::DuplicateName { name, .. }) if name == "nlu")
        );

        let mut files = small();
        files.push((
            "skills/nouid.json".into(),
            r#"{"name":"n","extends":"base_skill"}"#.into(),
        ));
        assert!(matches!(
            build(&files),
            Err(TaxonomyError::BadAttribute {
                attribute: "uid",
                ..
            })
        ));
        let mut files = small();
        files.push((
            "domains/neg.json".into(),
            r#"{"uid":-1,"name":"n","extends":"base_domain"}"#.into(),
        ));
        assert!(matches!(
            build(&files),
            Err(TaxonomyError::BadAttribute {
                attribute: "uid",
                ..
            })
        ));
        let mut files = small();
        files.push((
            "domains/noext.json".into(),
            r#"{"uid":9,"name":"n"}"#.into(),
        ));
        assert!(matches!(
            build(&files),
            Err(TaxonomyError::BadAttribute {
                attribute: "extends",
                ..
            })
        ));

        let cycle = vec![
            ("skills/a.json".to_string(), class(1, "a", "b")),
            ("skills/b.json".to_string(), class(2, "b", "a")),
        ];
        assert!(matches!(build(&cycle), Err(TaxonomyError::Cycle { .. })));

        let huge = vec![
            (
                "skills/a.json".to_string(),
                class(u64::MAX / 10, "a", "base_skill"),
            ),
            ("skills/b.json".to_string(), class(1, "b", "a")),
        ];
        assert!(matches!(build(&huge), Err(TaxonomyError::IdOverflow { name, .. }) if name == "b"));
    }

    // load_dir on a real directory: nested files, skipped base files, version.json, and the
    // path of a broken file in the error.
    #[test]
    fn load_dir_walks_the_tree() {
        let root = std::env::temp_dir().join(format!("oasf-taxonomy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let files = small();
        for (path, text) in &files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        std::fs::write(root.join("skills/nlp/notes.txt"), "not a class").unwrap();
        std::fs::write(root.join("version.json"), r#"{"version": "1.0.0"}"#).unwrap();
        let loaded = Taxonomy::load_dir(&root);
        let bad = root.join("domains/tech/iot/broken.json");
        std::fs::write(&bad, "{").unwrap();
        let broken = Taxonomy::load_dir(&root);
        std::fs::remove_dir_all(&root).unwrap();

        let t = loaded.unwrap();
        assert_eq!(t.version(), Some("1.0.0"));
        assert_eq!(t.skill(10103), Some("nlp/nlu/er"));
        assert_eq!(t.domain(101), Some("technology/internet_of_things"));
        let err = broken.unwrap_err();
        assert!(
            matches!(&err, TaxonomyError::Json { path, .. } if *path == bad),
            "{err}"
        );
        assert!(err.to_string().contains("broken.json"), "{err}");
    }

    #[test]
    fn load_dir_reports_a_missing_directory() {
        let err = Taxonomy::load_dir("/nonexistent/oasf-schema").unwrap_err();
        assert!(
            matches!(&err, TaxonomyError::Io { path, .. } if path.ends_with("skills")),
            "{err}"
        );
    }
}
