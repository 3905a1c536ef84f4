//! The audit hash chain: hashing, canonical JSON, and verification.
//!
//! `hash = SHA-256(prev_hash || "\n" || canonical_json({seq, body}))`, hex-encoded. The canonical
//! form sorts object keys at every depth, so the hash does not depend on how a JSON library orders
//! maps. The chain detects any edited, inserted or deleted entry, and the `meta` head detects a cut
//! tail (verification covers entries up to the head). An attacker who rewrites the whole chain from the edit onwards is detected only against a
//! head recorded elsewhere: `/api/v1/audit/verify` returns the head hash for operators to keep.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::records::{AuditEntry, NewAuditEntry};

/// `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// JSON with object keys sorted at every depth and no insignificant whitespace.
pub fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(k) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[derive(Serialize)]
struct Hashed<'a> {
    seq: u64,
    body: &'a NewAuditEntry,
}

/// The chain hash of entry `seq` with content `body` following `prev_hash`.
pub fn chain_hash(prev_hash: &str, seq: u64, body: &NewAuditEntry) -> String {
    let value = serde_json::to_value(Hashed { seq, body }).unwrap_or(serde_json::Value::Null);
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(canonical_json(&value).as_bytes());
    hex::encode(h.finalize())
}

/// What verifying the chain found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Entries checked.
    pub entries: u64,
    /// Hash of the last intact entry (the head when the chain is valid).
    pub head_hash: String,
    /// First sequence number at which the chain is broken, if any.
    pub first_broken_seq: Option<u64>,
    /// Why it is broken there.
    pub reason: Option<String>,
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
