//! Time is passed in ([`federation::Clock`], the one clock trait of the workspace), so that
//! every wall-clock rule can be tested at any instant; the RFC 3339 formats of the API; and
//! the test clock of `serve --clock-file`.
//!
//! The test clock lets an end-to-end test move a real node's time instead of sleeping: the
//! node's time is the system time plus an offset in milliseconds that the test writes in a
//! file. It exists only when asked for with the hidden `--clock-file` flag *and* the
//! environment variable [`TEST_CLOCK_ENV`]`=1`, so that an operator cannot move a production
//! node's clock by accident; without it the node runs on [`SystemClock`], untouched.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

pub use federation::{Clock, SystemClock};

/// The environment variable that must be `1` for `--clock-file` to be accepted.
pub(crate) const TEST_CLOCK_ENV: &str = "AGENTIDP_TEST_CLOCK";

/// How old the offset file's last change must be before its metadata alone tells whether it
/// changed. File times have the kernel's coarse granularity (a few ms): two writes within one
/// tick can leave the same time, so a file changed that recently is read again on every call.
const SETTLED: Duration = Duration::from_secs(1);

/// `--clock-file` without [`TEST_CLOCK_ENV`]`=1`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TestClockRefused;

/// The node's clock: the system clock, or with `--clock-file` (and [`TEST_CLOCK_ENV`]`=1` in
/// `guard`) the test clock reading that file.
pub(crate) fn node_clock(
    file: Option<&Path>,
    guard: Option<&std::ffi::OsStr>,
) -> Result<Arc<dyn Clock>, TestClockRefused> {
    match file {
        None => Ok(Arc::new(SystemClock)),
        Some(_) if guard.is_none_or(|v| v != "1") => Err(TestClockRefused),
        Some(path) => {
            tracing::warn!(file = %path.display(), "test clock: the node's time is the system time plus the offset in this file");
            Ok(Arc::new(OffsetFileClock::new(path.to_path_buf())))
        }
    }
}

/// The system time plus an offset in milliseconds read from a file (a decimal integer,
/// possibly negative; a missing file is offset 0). A file that cannot be parsed keeps the last
/// offset read and is logged.
///
/// Each reading of the clock costs one `stat` of the file; the file is read only when its
/// metadata changed, or when it changed less than [`SETTLED`] ago. Whoever writes it should
/// replace it whole (write another file, rename it over this one), so that it is never read
/// half-written.
#[derive(Debug)]
pub(crate) struct OffsetFileClock {
    path: PathBuf,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// The metadata of the file whose offset is `offset_ms`, when that file had settled.
    stamp: Option<Stamp>,
    offset_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: SystemTime,
    len: u64,
    inode: u64,
}

impl OffsetFileClock {
    pub(crate) fn new(path: PathBuf) -> Self {
        OffsetFileClock {
            path,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// The offset now in force.
    fn offset_ms(&self) -> i64 {
        use std::os::unix::fs::MetadataExt as _;
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let Ok(meta) = std::fs::metadata(&self.path) else {
            *seen = Seen::default();
            return 0;
        };
        let Ok(modified) = meta.modified() else {
            return seen.offset_ms;
        };
        let stamp = Stamp {
            modified,
            len: meta.len(),
            inode: meta.ino(),
        };
        if seen.stamp == Some(stamp) {
            return seen.offset_ms;
        }
        match std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
        {
            Some(ms) => seen.offset_ms = ms,
            None => {
                tracing::warn!(file = %self.path.display(), "test clock: the offset file holds no integer; keeping the last offset")
            }
        }
        let settled = SystemTime::now()
            .duration_since(modified)
            .is_ok_and(|age| age >= SETTLED);
        seen.stamp = settled.then_some(stamp);
        seen.offset_ms
    }
}

impl Clock for OffsetFileClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms().saturating_add(self.offset_ms())
    }
}

/// Formats milliseconds since the epoch as RFC 3339 UTC with milliseconds
/// (`2026-03-01T08:00:00.000Z`, the predecessor's format).
pub(crate) fn rfc3339(ms: i64) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".to_string())
}

/// Parses an RFC 3339 time into milliseconds since the epoch.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replaces the offset file whole, as the end-to-end harness does.
    fn write_offset(path: &Path, ms: i64) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, ms.to_string()).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    /// `clock` reads `want` ms ahead of the system clock (within the time the reading takes).
    fn assert_ahead(clock: &dyn Clock, want: i64) {
        let before = SystemClock.now_ms();
        let t = clock.now_ms();
        let after = SystemClock.now_ms();
        assert!(
            before + want <= t && t <= after + want,
            "{t} not within [{}, {}]",
            before + want,
            after + want
        );
    }

    #[test]
    fn the_test_clock_is_refused_without_its_guard() {
        let path = Path::new("/nonexistent/clock");
        assert!(node_clock(None, None).is_ok());
        assert_eq!(node_clock(Some(path), None).err(), Some(TestClockRefused));
        for bad in ["", "0", "true", "yes", " 1"] {
            let guard = std::ffi::OsStr::new(bad);
            assert_eq!(
                node_clock(Some(path), Some(guard)).err(),
                Some(TestClockRefused),
                "{bad:?}"
            );
        }
        let clock = node_clock(Some(path), Some(std::ffi::OsStr::new("1"))).unwrap();
        // No file yet: no offset.
        assert_ahead(clock.as_ref(), 0);
    }

    #[test]
    fn the_test_clock_applies_the_offset_of_its_file_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clock");
        let clock = OffsetFileClock::new(path.clone());
        assert_ahead(&clock, 0);
        write_offset(&path, 60_000);
        assert_ahead(&clock, 60_000);
        // Rewrites within the same file-time tick, of the same length, are seen at once.
        for ms in [70_000, 80_000, 90_000, -10_000] {
            write_offset(&path, ms);
            assert_ahead(&clock, ms);
        }
        // Garbage keeps the last offset; a missing file is no offset.
        std::fs::write(&path, "soon").unwrap();
        assert_ahead(&clock, -10_000);
        std::fs::remove_file(&path).unwrap();
        assert_ahead(&clock, 0);
    }

    #[test]
    fn a_settled_offset_file_is_not_read_again_until_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clock");
        write_offset(&path, 5_000);
        // Back-date the file: it has settled, so its metadata stands for its content.
        let old = SystemTime::now() - 2 * SETTLED;
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let clock = OffsetFileClock::new(path.clone());
        assert_ahead(&clock, 5_000);
        let seen = clock.seen.lock().unwrap().stamp;
        assert!(seen.is_some_and(|s| s.modified == old), "{seen:?}");
        // A new file replaces it: new metadata, read at once, not settled.
        write_offset(&path, 6_000);
        assert_ahead(&clock, 6_000);
        assert!(clock.seen.lock().unwrap().stamp.is_none());
    }

    #[test]
    fn rfc3339_round_trip() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_772_352_000_123), "2026-03-01T08:00:00.123Z");
        assert_eq!(
            parse_rfc3339("2026-03-01T08:00:00.123Z"),
            Some(1_772_352_000_123)
        );
        assert_eq!(
            parse_rfc3339("2026-03-01T09:00:00.123+01:00"),
            Some(1_772_352_000_123)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
