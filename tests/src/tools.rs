//! Third-party tools the end-to-end tests drive: npm packages and Python packages, each pinned
//! by a file in this repository and installed on first use, once per test run, so that
//! `cargo test --workspace` needs nothing beyond Node.js/npm and Python 3 on the machine
//! (`.ci/run` installs the same things up front, to fail early with a clear message).
//!
//! - npm: a folder `tests/js/<name>/` with `package.json` and `package-lock.json`;
//!   [`npm_package`] runs `npm ci` in it when `node_modules` is missing or older than the lock.
//! - Python: every `tests/py/requirements-*.txt` (exact `==` pins) goes into one virtual
//!   environment `<workspace>/.venv-tests`; [`python`] returns its interpreter, reinstalling when
//!   a requirements file is newer than the last install.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

/// The workspace root (the parent of the `tests` crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace root")
        .to_path_buf()
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Runs `npm ci` in `dir` when its `node_modules` is missing or older than its
/// `package-lock.json`. Panics with npm's output when that fails.
pub fn npm_ci(dir: &Path) {
    static DONE: OnceLock<Mutex<HashMap<PathBuf, Result<(), String>>>> = OnceLock::new();
    let mut done = DONE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let result = done.entry(dir.to_path_buf()).or_insert_with(|| {
        let marker = dir.join("node_modules/.package-lock.json");
        let fresh = match (modified(&dir.join("package-lock.json")), modified(&marker)) {
            (Some(lock), Some(installed)) => installed >= lock,
            _ => false,
        };
        if fresh {
            return Ok(());
        }
        eprintln!("tools: npm ci in {}", dir.display());
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                // The console tests drive Debian's chromium: never a Playwright browser download.
                .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
                .current_dir(dir),
            &format!("npm ci in {} (Node.js and npm are needed)", dir.display()),
        )
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// `tests/js/<name>`, with its pinned npm packages installed.
pub fn npm_package(name: &str) -> PathBuf {
    let dir = workspace_root().join("tests").join("js").join(name);
    assert!(
        dir.join("package-lock.json").is_file(),
        "{} has no package-lock.json",
        dir.display()
    );
    npm_ci(&dir);
    dir
}

/// The `requirements-*.txt` files under `tests/py`, sorted.
fn requirement_files() -> Vec<PathBuf> {
    let dir = workspace_root().join("tests").join("py");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("requirements-") && n.ends_with(".txt"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The Python interpreter of `<workspace>/.venv-tests`, with every `tests/py/requirements-*.txt`
/// installed (created or brought up to date on first use). Panics with pip's output on failure.
pub fn python() -> PathBuf {
    static PY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = PY.get_or_init(|| {
        let venv = workspace_root().join(".venv-tests");
        let py = venv.join("bin").join("python3");
        let marker = venv.join(".installed");
        let files = requirement_files();
        let installed = modified(&marker);
        let fresh = py.is_file()
            && installed
                .is_some_and(|at| files.iter().all(|f| modified(f).is_some_and(|m| m <= at)));
        if fresh {
            return Ok(py);
        }
        if !py.is_file() {
            eprintln!("tools: creating the Python environment {}", venv.display());
            run(
                Command::new("python3").arg("-m").arg("venv").arg(&venv),
                "python3 -m venv (Python 3 with its venv module is needed)",
            )?;
        }
        if !files.is_empty() {
            eprintln!("tools: pip install into {}", venv.display());
            let mut cmd = Command::new(&py);
            cmd.args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ]);
            for f in &files {
                cmd.arg("-r").arg(f);
            }
            run(&mut cmd, "pip install of tests/py/requirements-*.txt")?;
        }
        std::fs::write(&marker, b"").map_err(|e| format!("{}: {e}", marker.display()))?;
        Ok(py)
    });
    match result {
        Ok(py) => py.clone(),
        Err(e) => panic!("{e}"),
    }
}
