//! The audit hash chain: hashing, canonical JSON, and verification.
//!
//! `hash = SHA-256(prev_hash || "\n" || canonical_json({seq, body}))`, hex-encoded. The canonical
//! form sorts object keys at every depth, so the hash does not depend on how a JSON library orders
//! maps. The chain detects any edited, inserted or deleted entry, and the `meta` head detects a cut
//! tail (verification covers entries up to the head). An attacker who rewrites the whole chain from the edit onwards is detected only against a
//! head recorded elsewhere: `/api/v1/audit/verify` returns the head hash for operators to keep.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::records::{AuditEntry, AuditHead, NewAuditEntry};

/// `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// JSON with object keys sorted at every depth and no insignificant whitespace.
pub fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// A JSON string literal, escaped as serde_json escapes it.
fn write_str(s: &str, out: &mut Vec<u8>) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(k, out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        serde_json::Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

#[cfg(test)]
#[derive(Serialize)]
struct Hashed<'a> {
    seq: u64,
    body: &'a NewAuditEntry,
}

/// The chain hash of entry `seq` with content `body` following `prev_hash`.
pub fn chain_hash(prev_hash: &str, seq: u64, body: &NewAuditEntry) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(canonical_entry(seq, body));
    hex::encode(h.finalize())
}

/// `canonical_json` of `{"seq": seq, "body": body}`, written directly: this runs once per audit
/// entry on the committer thread, and going through a `serde_json::Value` tree costs several
/// times more. Keys are in sorted order; the test below holds it equal to the generic form.
fn canonical_entry(seq: u64, b: &NewAuditEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"body\":{\"action\":");
    write_str(&b.action, &mut out);
    out.extend_from_slice(b",\"actor\":");
    write_str(&b.actor, &mut out);
    out.extend_from_slice(b",\"client\":");
    match &b.client {
        Some(c) => write_str(c, &mut out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"details\":");
    write_canonical(&b.details, &mut out);
    out.extend_from_slice(b",\"org_id\":\"");
    out.extend_from_slice(
        b.org_id
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer())
            .as_bytes(),
    );
    out.extend_from_slice(b"\",\"outcome\":");
    out.extend_from_slice(match b.outcome {
        crate::records::Outcome::Success => b"\"success\"",
        crate::records::Outcome::Failure => b"\"failure\"",
    });
    out.extend_from_slice(b",\"target\":");
    write_str(&b.target, &mut out);
    out.extend_from_slice(b",\"time\":");
    out.extend_from_slice(b.time.to_string().as_bytes());
    out.extend_from_slice(b"},\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.push(b'}');
    out
}

/// What verifying the chain found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Intact entries from the start of the chain: the chain's length (the head's sequence
    /// number) when it is valid, the entries before the break otherwise. An incremental
    /// verification counts the entries before its checkpoint too.
    pub entries: u64,
    /// Hash of the last intact entry (the head when the chain is valid).
    pub head_hash: String,
    /// First sequence number at which the chain is broken, if any.
    pub first_broken_seq: Option<u64>,
    /// Why it is broken there.
    pub reason: Option<String>,
}

impl ChainReport {
    /// Whether no break was found.
    pub fn is_valid(&self) -> bool {
        self.first_broken_seq.is_none()
    }

    /// What to keep for the next [`crate::Store::verify_audit_from`]: the verified head
    /// (sequence number and hash), when the chain is valid.
    pub fn checkpoint(&self) -> Option<AuditHead> {
        self.is_valid().then(|| AuditHead {
            seq: self.entries,
            hash: self.head_hash.clone(),
        })
    }
}

/// Incremental chain verifier: feed entries in key order, then [`Verifier::finish`].
pub(crate) struct Verifier {
    expected_seq: u64,
    prev_hash: String,
    entries: u64,
    broken: Option<(u64, String)>,
}

impl Verifier {
    pub(crate) fn new() -> Self {
        Verifier {
            expected_seq: 1,
            prev_hash: GENESIS_HASH.to_string(),
            entries: 0,
            broken: None,
        }
    }

    /// A verifier that continues after entry `seq`, whose hash is `hash` (a checkpoint).
    pub(crate) fn after(seq: u64, hash: &str) -> Self {
        Verifier {
            expected_seq: seq + 1,
            prev_hash: hash.to_string(),
            entries: seq,
            broken: None,
        }
    }

    pub(crate) fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// `key_seq` is the sequence number in the key; `entry` the decoded value (or why it failed).
    pub(crate) fn feed(&mut self, key_seq: u64, entry: Result<AuditEntry, String>) {
        if self.broken.is_some() {
            return;
        }
        let seq = self.expected_seq;
        let fail = |reason: String| Some((seq, reason));
        self.broken = if key_seq != seq {
            fail(format!(
                "entry {seq} is missing (next stored entry is {key_seq})"
            ))
        } else {
            match entry {
                Err(reason) => fail(format!("entry {seq} cannot be decoded: {reason}")),
                Ok(e) if e.seq != seq => fail(format!("entry {seq} claims sequence {}", e.seq)),
                Ok(e) if e.prev_hash != self.prev_hash => {
                    fail(format!("entry {seq} does not link to entry {}", seq - 1))
                }
                Ok(e) if chain_hash(&e.prev_hash, e.seq, &e.body) != e.hash => fail(format!(
                    "entry {seq} was modified (its hash does not match its content)"
                )),
                Ok(e) => {
                    self.prev_hash = e.hash;
                    self.entries += 1;
                    self.expected_seq += 1;
                    None
                }
            }
        };
    }

    /// The report for a chain that must reach entry `last`, without a head to compare with (a
    /// prefix of the chain, before a checkpoint).
    pub(crate) fn reached(mut self, last: u64) -> ChainReport {
        let next = self.expected_seq;
        if self.broken.is_none() && last >= next {
            self.broken = Some((next, format!("entries {next} to {last} are missing")));
        }
        self.report()
    }

    /// Compares the end of the chain with the recorded head.
    pub(crate) fn finish(mut self, head_seq: u64, head_hash: &str) -> ChainReport {
        if self.broken.is_none() {
            let last = self.expected_seq - 1;
            if head_seq > last {
                self.broken = Some((
                    last + 1,
                    format!(
                        "entries {} to {head_seq} are missing from the end",
                        last + 1
                    ),
                ));
            } else if head_hash != self.prev_hash {
                self.broken = Some((
                    last,
                    format!("entry {last} does not match the recorded head"),
                ));
            }
        }
        self.report()
    }

    fn report(self) -> ChainReport {
        let (first_broken_seq, reason) = match self.broken {
            Some((s, r)) => (Some(s), Some(r)),
            None => (None, None),
        };
        ChainReport {
            entries: self.entries,
            head_hash: self.prev_hash,
            first_broken_seq,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Outcome;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":"x"}}"#).unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":"x","d":[{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn direct_canonical_form_equals_the_generic_one() {
        for (client, outcome) in [
            (None, Outcome::Success),
            (Some("10.0.0.1".to_string()), Outcome::Failure),
        ] {
            let body = NewAuditEntry {
                time: -5,
                org_id: uuid::Uuid::new_v4(),
                actor: "a\"b".into(),
                action: "x\\y".into(),
                target: "t\u{7}".into(),
                outcome,
                client,
                details: serde_json::json!({"z": [1, {"b": 2, "a": null}], "a": "é"}),
            };
            let generic = canonical_json(
                &serde_json::to_value(Hashed {
                    seq: 42,
                    body: &body,
                })
                .unwrap(),
            );
            assert_eq!(
                String::from_utf8(canonical_entry(42, &body)).unwrap(),
                generic
            );
        }
    }

    #[test]
    fn hash_depends_on_every_field() {
        let body = NewAuditEntry {
            time: 1,
            org_id: uuid::Uuid::nil(),
            actor: "a".into(),
            action: "x".into(),
            target: "t".into(),
            outcome: Outcome::Success,
            client: None,
            details: serde_json::json!({"k": 1}),
        };
        let h = chain_hash(GENESIS_HASH, 1, &body);
        assert_ne!(h, chain_hash(GENESIS_HASH, 2, &body));
        let mut other = body.clone();
        other.details = serde_json::json!({"k": 2});
        assert_ne!(h, chain_hash(GENESIS_HASH, 1, &other));
        assert_ne!(h, chain_hash(&h, 1, &body));
    }
}
