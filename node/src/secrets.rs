//! Client secrets: 256 random bits, shown once, stored as SHA-256, compared in constant time.
//!
//! The predecessor ran bcrypt on every token request. A slow hash protects low-entropy passwords;
//! a 256-bit random secret cannot be brute-forced whatever the hash, so one SHA-256 gives the same
//! protection for a stolen database at a tiny fraction of the cost on the token hot path.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Random bytes from the operating system's CSPRNG.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b)?;
    Ok(b)
}

/// A new client secret (43 base64url characters).
pub(crate) fn new_secret() -> Result<String, getrandom::Error> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

/// The stored form of a secret.
pub(crate) fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` matches the stored hash, in time independent of where they differ.
pub(crate) fn secret_matches(secret: &str, stored_hash: &str) -> bool {
    let candidate = Sha256::digest(secret.as_bytes());
    match hex::decode(stored_hash) {
        Ok(stored) if stored.len() == candidate.len() => {
            candidate.as_slice().ct_eq(stored.as_slice()).into()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_verify_only_themselves() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        let h = hash_secret(&a);
        assert!(secret_matches(&a, &h));
        assert!(!secret_matches(&b, &h));
        assert!(!secret_matches(&a, "not-hex"));
    }
}
