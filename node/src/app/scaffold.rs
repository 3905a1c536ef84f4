//! Starter projects (issue 21, the predecessor's `GET /sdk/scaffold/{agentId}`): a ZIP with a
//! small program, in one of five languages, that obtains an access token for one of the caller's
//! agents (OAuth 2.0 client_credentials at the token endpoint the node's discovery document names)
//! with that language's well-known OAuth client library, calls `/agent-info` with it and prints
//! the agent's identity.
//!
//! The templates live under `node/scaffold/<language>/` and are embedded in the binary. Their
//! code is the same for every agent: it reads the node's URL, the client id and the secret from
//! the environment. Only `.env.example` and the README receive values, and only values whose
//! alphabet cannot break out of where they land: the agent's id (a UUID) and the node's public
//! URL (refused unless made of URL characters). The agent's name — free text — appears only as
//! a slug (`[a-z0-9-]`) in the archive's folder and file name. No secret is ever written.
//!
//! The archive is deterministic (entries in a fixed order, the DOS epoch as every timestamp), so
//! the same agent and language give the same bytes and the same `ETag`.

use std::io::{Cursor, Write};

use storage::AgentStatus;
use uuid::Uuid;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use super::{AppState, Caller, DomainError, ErrorCode, Scope};

/// A language of the starter projects, with its OAuth client library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Language {
    /// Node.js, `openid-client`.
    TypeScript,
    /// `authlib` over `httpx`.
    Python,
    /// `golang.org/x/oauth2/clientcredentials`.
    Go,
    /// Nimbus OAuth 2.0 SDK, built with Maven.
    Java,
    /// The `oauth2` crate over `reqwest`.
    Rust,
}

impl Language {
    /// Every language, in the order the API documents them.
    pub(crate) const ALL: [Language; 5] = [
        Language::TypeScript,
        Language::Python,
        Language::Go,
        Language::Java,
        Language::Rust,
    ];

    /// The value of the `language` parameter.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Language::TypeScript => "typescript",
            Language::Python => "python",
            Language::Go => "go",
            Language::Java => "java",
            Language::Rust => "rust",
        }
    }

    /// The `language` parameter: absent means `typescript` (the predecessor's default); anything
    /// but one of [`Language::ALL`] (exactly as spelled there) is a `VALIDATION_ERROR` naming the
    /// accepted values.
    pub(crate) fn parse(raw: Option<&str>) -> Result<Language, DomainError> {
        let Some(raw) = raw else {
            return Ok(Language::TypeScript);
        };
        Language::ALL
            .into_iter()
            .find(|l| l.as_str() == raw)
            .ok_or_else(|| {
                let supported: Vec<&str> = Language::ALL.iter().map(|l| l.as_str()).collect();
                DomainError::invalid(
                    ErrorCode::ValidationError,
                    format!(
                        "Invalid language. Supported languages are: {}.",
                        supported.join(", ")
                    ),
                )
                .with_details(serde_json::json!({
                    "field": "language",
                    // Bounded: the value is echoed back.
                    "provided": raw.chars().take(64).collect::<String>(),
                    "supported": supported,
                }))
            })
    }

    /// The project's files: path in the project, template.
    fn templates(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Language::TypeScript => TYPESCRIPT,
            Language::Python => PYTHON,
            Language::Go => GO,
            Language::Java => JAVA,
            Language::Rust => RUST,
        }
    }
}

/// `include_str!` of a file under `node/scaffold/`.
macro_rules! template {
    ($path:literal) => {
        include_str!(concat!("../../scaffold/", $path))
    };
}

/// Files every project has, whatever its language.
const ENV_EXAMPLE: &str = template!("env.example");

const TYPESCRIPT: &[(&str, &str)] = &[
    ("README.md", template!("typescript/README.md")),
    ("Dockerfile", template!("typescript/Dockerfile")),
    (".dockerignore", template!("typescript/dockerignore")),
    (".gitignore", template!("typescript/gitignore")),
    ("package.json", template!("typescript/package.json")),
    (
        "package-lock.json",
        template!("typescript/package-lock.json"),
    ),
    ("tsconfig.json", template!("typescript/tsconfig.json")),
    ("src/index.ts", template!("typescript/src/index.ts")),
];

const PYTHON: &[(&str, &str)] = &[
    ("README.md", template!("python/README.md")),
    ("Dockerfile", template!("python/Dockerfile")),
    (".dockerignore", template!("python/dockerignore")),
    (".gitignore", template!("python/gitignore")),
    ("requirements.txt", template!("python/requirements.txt")),
    ("main.py", template!("python/main.py")),
];

const GO: &[(&str, &str)] = &[
    ("README.md", template!("go/README.md")),
    ("Dockerfile", template!("go/Dockerfile")),
    (".dockerignore", template!("go/dockerignore")),
    (".gitignore", template!("go/gitignore")),
    ("go.mod", template!("go/go.mod")),
    ("go.sum", template!("go/go.sum")),
    ("main.go", template!("go/main.go")),
];

const JAVA: &[(&str, &str)] = &[
    ("README.md", template!("java/README.md")),
    ("Dockerfile", template!("java/Dockerfile")),
    (".dockerignore", template!("java/dockerignore")),
    (".gitignore", template!("java/gitignore")),
    ("pom.xml", template!("java/pom.xml")),
    (
        "src/main/java/com/example/agent/Main.java",
        template!("java/src/main/java/com/example/agent/Main.java"),
    ),
];

const RUST: &[(&str, &str)] = &[
    ("README.md", template!("rust/README.md")),
    ("Dockerfile", template!("rust/Dockerfile")),
    (".dockerignore", template!("rust/dockerignore")),
    (".gitignore", template!("rust/gitignore")),
    ("Cargo.toml", template!("rust/Cargo.toml")),
    ("Cargo.lock", template!("rust/Cargo.lock")),
    ("src/main.rs", template!("rust/src/main.rs")),
];

/// A generated starter project.
#[derive(Debug)]
pub(crate) struct Scaffold {
    /// `<slug>-scaffold.zip`: the download's file name (its characters need no quoting).
    pub(crate) filename: String,
    /// The ZIP archive.
    pub(crate) zip: Vec<u8>,
    /// A strong entity tag of the archive (quoted).
    pub(crate) etag: String,
}

/// The starter project in `language` (the raw `language` parameter) for the caller's agent
/// `agent_id`. Another organization's agent is not found, like a missing one; a decommissioned
/// agent gets none (it can obtain no token).
pub(crate) fn scaffold(
    state: &AppState,
    caller: &Caller,
    agent_id: Uuid,
    language: Option<&str>,
) -> Result<Scaffold, DomainError> {
    caller.require(Scope::AgentsRead)?;
    let language = Language::parse(language)?;
    let agent = super::agents::read_own_agent(state, caller, &agent_id)?;
    if agent.status == AgentStatus::Decommissioned {
        return Err(DomainError::unprocessable(
            ErrorCode::AgentDecommissioned,
            "Cannot generate scaffold for a decommissioned agent.",
        ));
    }
    let folder = format!("{}-scaffold", slug(&agent.name));
    let values = Values {
        agent_id: agent.id,
        node_url: node_url(&state.settings.issuer),
        language,
    };
    let zip = archive(&folder, &files(language, &values)).map_err(|e| {
        tracing::error!(error = %e, "scaffold archive");
        DomainError::Internal
    })?;
    let etag = super::artifacts::etag_of(&zip);
    Ok(Scaffold {
        filename: format!("{folder}.zip"),
        zip,
        etag,
    })
}

/// What the templates receive.
struct Values {
    agent_id: Uuid,
    /// Checked by [`node_url`]: URL characters only.
    node_url: String,
    language: Language,
}

/// The node's public URL for `.env.example`, or a placeholder when it holds a character that a
/// URL does not (the file is read by shells and dotenv parsers: no spaces, quotes, `$`, `#`).
fn node_url(issuer: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-._~:/[]%@".contains(c);
    if !issuer.is_empty() && issuer.chars().all(safe) && issuer.len() <= 512 {
        issuer.trim_end_matches('/').to_string()
    } else {
        "https://idp.example.com".to_string()
    }
}

/// The folder name for an agent's display name: ASCII letters and digits lowercased, every other
/// run of characters one `-`, at most 40 characters; `agent` when nothing is left.
pub(crate) fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= 40 {
            break;
        }
    }
    let out = out.trim_end_matches('-');
    if out.is_empty() {
        "agent".to_string()
    } else {
        out.to_string()
    }
}

/// Replaces the placeholders `{{AGENT_ID}}`, `{{NODE_URL}}`, `{{ALLOW_HTTP}}` and
/// `{{LANGUAGE}}` in one pass (a value is never scanned for placeholders itself).
fn render(template: &str, v: &Values) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        match &after[..end] {
            "AGENT_ID" => out.push_str(&v.agent_id.to_string()),
            "NODE_URL" => out.push_str(&v.node_url),
            "ALLOW_HTTP" => out.push(if v.node_url.starts_with("http://") {
                '1'
            } else {
                '0'
            }),
            "LANGUAGE" => out.push_str(v.language.as_str()),
            // Not a placeholder (e.g. a template language's own braces): kept as is.
            _ => {
                out.push_str("{{");
                rest = after;
                continue;
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// The project's files, rendered: `.env.example` first, then the language's own.
fn files(language: Language, v: &Values) -> Vec<(&'static str, String)> {
    std::iter::once((".env.example", ENV_EXAMPLE))
        .chain(language.templates().iter().copied())
        .map(|(path, template)| (path, render(template, v)))
        .collect()
}

/// A ZIP of `files` under `folder/`, deflated, with fixed timestamps and permissions.
fn archive(folder: &str, files: &[(&str, String)]) -> zip::result::ZipResult<Vec<u8>> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(DateTime::default())
        .unix_permissions(0o644);
    for (path, content) in files {
        zip.start_file(format!("{folder}/{path}"), options)?;
        zip.write_all(content.as_bytes())?;
    }
    Ok(zip.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn values() -> Values {
        Values {
            agent_id: Uuid::nil(),
            node_url: "http://127.0.0.1:8080".into(),
            language: Language::Go,
        }
    }

    #[test]
    fn languages_parse_exactly() {
        assert_eq!(Language::parse(None).unwrap(), Language::TypeScript);
        for l in Language::ALL {
            assert_eq!(Language::parse(Some(l.as_str())).unwrap(), l);
        }
        for bad in ["ruby", "", "TypeScript", "python ", "ts"] {
            let e = Language::parse(Some(bad)).unwrap_err();
            assert_eq!(e.code(), ErrorCode::ValidationError, "{bad:?}");
            assert!(
                e.to_string().contains("typescript, python, go, java, rust"),
                "{e}"
            );
        }
    }

    #[test]
    fn slugs_keep_only_safe_characters() {
        assert_eq!(slug("Screener 001"), "screener-001");
        assert_eq!(slug("\"quoted\"\nname'; rm -rf /"), "quoted-name-rm-rf");
        assert_eq!(
            slug("<img src=x onerror=alert(1)>"),
            "img-src-x-onerror-alert-1"
        );
        assert_eq!(slug("東京"), "agent");
        assert_eq!(slug(""), "agent");
        assert!(slug(&"a".repeat(500)).len() <= 40);
    }

    #[test]
    fn node_urls_with_odd_characters_are_replaced() {
        assert_eq!(
            node_url("https://idp.example.org/"),
            "https://idp.example.org"
        );
        assert_eq!(node_url("http://[::1]:8080"), "http://[::1]:8080");
        for bad in [
            "https://a b",
            "https://x\n#",
            "https://$HOME",
            "",
            "https://x'\"",
        ] {
            assert_eq!(node_url(bad), "https://idp.example.com", "{bad:?}");
        }
    }

    #[test]
    fn render_replaces_known_placeholders_once() {
        let v = values();
        assert_eq!(
            render("id={{AGENT_ID}} url={{NODE_URL}} http={{ALLOW_HTTP}}", &v),
            "id=00000000-0000-0000-0000-000000000000 url=http://127.0.0.1:8080 http=1"
        );
        assert_eq!(render("{{OTHER}} {{ x", &v), "{{OTHER}} {{ x");
        assert_eq!(render("a {{LANGUAGE}}}}", &v), "a go}}");
    }

    #[test]
    fn every_template_renders_without_leftover_placeholders() {
        for l in Language::ALL {
            let v = Values {
                language: l,
                ..values()
            };
            for (path, content) in files(l, &v) {
                for p in [
                    "{{AGENT_ID}}",
                    "{{NODE_URL}}",
                    "{{ALLOW_HTTP}}",
                    "{{LANGUAGE}}",
                ] {
                    assert!(!content.contains(p), "{l:?} {path}: {p}");
                }
            }
        }
    }

    #[test]
    fn archives_are_deterministic_and_unzip_to_the_files() {
        let v = values();
        let files = files(Language::Go, &v);
        let a = archive("x-scaffold", &files).unwrap();
        let b = archive("x-scaffold", &files).unwrap();
        assert_eq!(a, b);
        let mut zip = zip::ZipArchive::new(Cursor::new(a)).unwrap();
        assert_eq!(zip.len(), files.len());
        for (path, content) in &files {
            let mut f = zip.by_name(&format!("x-scaffold/{path}")).unwrap();
            let mut s = String::new();
            f.read_to_string(&mut s).unwrap();
            assert_eq!(&s, content);
        }
    }
}
