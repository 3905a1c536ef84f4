//! The JWS algorithms this crate verifies (RFC 7518 §3.1, RFC 8037 §3.1) and the key types
//! that can verify them.

use std::fmt;

use josekit::jwk::Jwk;
use josekit::jws::JwsVerifier;

/// A JWS algorithm this crate verifies. Everything else, `none` and every `HS*` included, is
/// refused: there is no way to name them here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// ECDSA with P-256 and SHA-256.
    Es256,
    /// ECDSA with P-384 and SHA-384.
    Es384,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// EdDSA with Ed25519.
    EdDsa,
}

impl Alg {
    /// Every algorithm this crate can verify.
    pub const ALL: [Alg; 7] = [
        Alg::Es256,
        Alg::Es384,
        Alg::Rs256,
        Alg::Rs384,
        Alg::Rs512,
        Alg::Ps256,
        Alg::EdDsa,
    ];

    /// The algorithm named `name` in a JOSE header, if it is one we can verify (case-sensitive,
    /// RFC 7515 §4.1.1).
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The JOSE name (`ES256`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::EdDsa => "EdDSA",
        }
    }

    /// Whether a key of `kind` can verify this algorithm.
    pub fn fits(self, kind: KeyKind) -> bool {
        matches!(
            (self, kind),
            (Alg::Es256, KeyKind::EcP256)
                | (Alg::Es384, KeyKind::EcP384)
                | (
                    Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256,
                    KeyKind::Rsa { .. }
                )
                | (Alg::EdDsa, KeyKind::Ed25519)
        )
    }

    /// An OpenSSL verifier of this algorithm for `jwk`; building it checks the key.
    pub(crate) fn josekit_verifier(
        self,
        jwk: &Jwk,
    ) -> Result<Box<dyn JwsVerifier>, josekit::JoseError> {
        use josekit::jws::{EdDSA, ES256, ES384, PS256, RS256, RS384, RS512};
        Ok(match self {
            Alg::Es256 => Box::new(ES256.verifier_from_jwk(jwk)?),
            Alg::Es384 => Box::new(ES384.verifier_from_jwk(jwk)?),
            Alg::Rs256 => Box::new(RS256.verifier_from_jwk(jwk)?),
            Alg::Rs384 => Box::new(RS384.verifier_from_jwk(jwk)?),
            Alg::Rs512 => Box::new(RS512.verifier_from_jwk(jwk)?),
            Alg::Ps256 => Box::new(PS256.verifier_from_jwk(jwk)?),
            Alg::EdDsa => Box::new(EdDSA.verifier_from_jwk(jwk)?),
        })
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The type of a public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// EC on P-256.
    EcP256,
    /// EC on P-384.
    EcP384,
    /// RSA, with its modulus size.
    Rsa {
        /// Modulus length in bits, exactly (leading zero bits not counted).
        bits: u32,
    },
    /// OKP Ed25519.
    Ed25519,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyKind::EcP256 => f.write_str("EC P-256"),
            KeyKind::EcP384 => f.write_str("EC P-384"),
            KeyKind::Rsa { bits } => write!(f, "RSA {bits}-bit"),
            KeyKind::Ed25519 => f.write_str("OKP Ed25519"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alg_names_are_exact() {
        for a in Alg::ALL {
            assert_eq!(Alg::from_name(a.name()), Some(a));
        }
        for bad in [
            "none", "None", "HS256", "HS384", "HS512", "es256", "ES512", "PS384", "RSA-OAEP", "",
        ] {
            assert_eq!(Alg::from_name(bad), None, "{bad}");
        }
    }
}
