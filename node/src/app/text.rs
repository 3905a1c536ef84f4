//! Hygiene of every string the node stores or publishes, and of the URLs it publishes.
//!
//! Published fields end up in signed cards, DID documents and OASF records that people *and
//! language models* read. Characters that do not render as themselves are refused everywhere:
//! controls (Cc), format characters (Cf: bidi overrides and isolates, zero-width characters,
//! the BOM, the Arabic letter mark, the soft hyphen, the invisible Unicode tag characters that
//! can smuggle text such as "ignore previous instructions" into a card), line and paragraph
//! separators (Zl, Zp), private-use characters (Co), noncharacters, and the Hangul fillers
//! (letters that render as nothing). The sets are those of Unicode 16.0
//! (<https://www.unicode.org/Public/16.0.0/ucd/extracted/DerivedGeneralCategory.txt>).
//!
//! Published URLs must be `https` (locators of container images and Helm charts may also use
//! `oci://`): `javascript:`, `data:` and other schemes are refused, so a client that renders a
//! card's link cannot be made to run or show anything but a web page.

/// Why a string was refused (the caller names the field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TextError {
    /// Outside the allowed length, in characters.
    #[error("must be {min} to {max} characters long")]
    Length { min: usize, max: usize },
    /// A character that does not render as itself.
    #[error("must not contain {what} (U+{code:04X})")]
    Invisible { what: &'static str, code: u32 },
    /// Not a URL the node publishes.
    #[error("{0}")]
    Url(String),
}

/// Unicode 16.0 general category Cf (format characters), as inclusive ranges.
const FORMAT: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Letters (Lo) that render as nothing: the Hangul fillers.
const FILLERS: &[u32] = &[0x115F, 0x1160, 0x3164, 0xFFA0];

/// What kind of invisible character `c` is, if it is one.
pub(crate) fn invisible(c: char) -> Option<&'static str> {
    let u = c as u32;
    if c.is_control() {
        return Some("control characters");
    }
    if FORMAT.iter().any(|(lo, hi)| (*lo..=*hi).contains(&u)) {
        return Some("invisible format characters");
    }
    if u == 0x2028 || u == 0x2029 {
        return Some("line or paragraph separators");
    }
    if (0xE000..=0xF8FF).contains(&u) || (0xF0000..=0x10FFFF).contains(&u) {
        return Some("private-use characters");
    }
    if (0xFDD0..=0xFDEF).contains(&u) || (u & 0xFFFE) == 0xFFFE {
        return Some("noncharacters");
    }
    if FILLERS.contains(&u) {
        return Some("invisible filler characters");
    }
    None
}

/// Refuses any character that does not render as itself.
pub(crate) fn check_visible(v: &str) -> Result<(), TextError> {
    match v.chars().find_map(|c| invisible(c).map(|w| (w, c))) {
        Some((what, c)) => Err(TextError::Invisible {
            what,
            code: c as u32,
        }),
        None => Ok(()),
    }
}

/// A stored or published string: `min..=max` characters, all visible.
pub(crate) fn check_text(v: &str, min: usize, max: usize) -> Result<(), TextError> {
    let n = v.chars().count();
    if n < min || n > max {
        return Err(TextError::Length { min, max });
    }
    check_visible(v)
}

/// Every string (keys and values, at any depth) of a JSON value is visible text.
pub(crate) fn check_json_visible(v: &serde_json::Value) -> Result<(), TextError> {
    match v {
        serde_json::Value::String(s) => check_visible(s),
        serde_json::Value::Array(a) => a.iter().try_for_each(check_json_visible),
        serde_json::Value::Object(m) => m.iter().try_for_each(|(k, v)| {
            check_visible(k)?;
            check_json_visible(v)
        }),
        _ => Ok(()),
    }
}

/// A URL the node publishes: absolute, one of `schemes`, with a host, no credentials, no
/// whitespace or invisible characters, at most 2048 characters.
pub(crate) fn check_public_url(v: &str, schemes: &[&str]) -> Result<url::Url, TextError> {
    check_text(v, 1, 2048)?;
    if v.chars().any(char::is_whitespace) {
        return Err(TextError::Url("must not contain whitespace".into()));
    }
    // WHATWG parsing forgives `https:///host` and `https:\\host`; a published URL is taken
    // exactly as written, so it must spell its authority plainly.
    let plain_authority = v
        .split_once("://")
        .is_some_and(|(_, rest)| !rest.is_empty() && !rest.starts_with(['/', '\\']));
    if !plain_authority {
        return Err(TextError::Url(
            "must be an absolute URL like https://host/path".into(),
        ));
    }
    let u = url::Url::parse(v).map_err(|e| TextError::Url(format!("is not a URL ({e})")))?;
    if !schemes.contains(&u.scheme()) {
        return Err(TextError::Url(format!(
            "must be an {} URL, not {}:",
            schemes.join(" or "),
            u.scheme()
        )));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(TextError::Url("must name a host".into()));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(TextError::Url("must not carry credentials".into()));
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every character named in the security report, and a few more of each class.
    #[test]
    fn invisible_characters_are_refused() {
        for (c, what) in [
            ('\u{202E}', "bidi override"),
            ('\u{2066}', "left-to-right isolate"),
            ('\u{2069}', "pop directional isolate"),
            ('\u{200E}', "left-to-right mark"),
            ('\u{200F}', "right-to-left mark"),
            ('\u{200B}', "zero-width space"),
            ('\u{FEFF}', "BOM"),
            ('\u{061C}', "Arabic letter mark"),
            ('\u{00AD}', "soft hyphen"),
            ('\u{E0049}', "tag letter I"),
            ('\u{E0001}', "language tag"),
            ('\u{2028}', "line separator"),
            ('\u{2029}', "paragraph separator"),
            ('\u{0000}', "NUL"),
            ('\u{001B}', "escape"),
            ('\u{0085}', "next line"),
            ('\u{E000}', "private use"),
            ('\u{FDD0}', "noncharacter"),
            ('\u{1FFFF}', "noncharacter"),
            ('\u{3164}', "Hangul filler"),
            ('\u{1D173}', "musical format"),
        ] {
            let s = format!("ignore{c}previous");
            assert!(check_text(&s, 1, 64).is_err(), "{what} U+{:04X}", c as u32);
        }
    }

    #[test]
    fn visible_text_of_every_script_is_kept() {
        for s in [
            "Résumé screener",
            "Ωμέγα",
            "日本語のエージェント",
            "عربي",
            "Zürich – “quotes” — dash",
            "e\u{0301}",
            "👍🏽",
            "\u{FE0F}",
        ] {
            assert_eq!(check_visible(s), Ok(()), "{s:?}");
        }
        assert_eq!(
            check_text("", 1, 3),
            Err(TextError::Length { min: 1, max: 3 })
        );
        assert_eq!(check_text("abcd", 1, 3).map_err(|_| ()), Err(()));
        assert_eq!(check_text("äbc", 1, 3), Ok(()));
    }

    /// Emoji sequences joined by U+200D (ZWJ, a format character) are refused with the rest of
    /// Cf: the rule has no exceptions, so there is nothing to smuggle through one.
    #[test]
    fn zero_width_joiner_is_a_format_character() {
        assert!(check_visible("\u{1F469}\u{200D}\u{1F4BB}").is_err());
    }

    #[test]
    fn json_strings_are_checked_at_every_depth() {
        let ok = serde_json::json!({"team": "a", "n": 1, "list": ["x", {"y": "z"}]});
        assert_eq!(check_json_visible(&ok), Ok(()));
        let bad_value = serde_json::json!({"list": ["x", {"y": "z\u{200B}"}]});
        assert!(check_json_visible(&bad_value).is_err());
        let bad_key = serde_json::json!({"k\u{202E}": 1});
        assert!(check_json_visible(&bad_key).is_err());
    }

    #[test]
    fn only_https_urls_are_published() {
        let https = &["https"];
        assert!(check_public_url("https://agents.example.com/a2a", https).is_ok());
        for bad in [
            "javascript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "http://agents.example.com",
            "ftp://example.com/x",
            "https://user:pw@example.com/",
            "https:///path",
            "https://exa mple.com",
            "https://example.com/\u{202E}",
            "/relative",
            "",
        ] {
            assert!(check_public_url(bad, https).is_err(), "{bad}");
        }
        let oci = &["https", "oci"];
        assert!(check_public_url("oci://ghcr.io/example/screener:1.0.0", oci).is_ok());
        assert!(check_public_url("oci://ghcr.io/example/screener:1.0.0", https).is_err());
    }
}
