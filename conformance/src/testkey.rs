//! A test ES256 key (josekit), for signing canned cards, badges and tokens.

use josekit::jwk::KeyPair;
use josekit::jws::JwsSigner;
use serde_json::{json, Value};

/// A signing function.
pub(crate) type Sign = Box<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

/// A fresh ES256 key: its JWKS (one key, `kid` `k1`) and a signing function.
pub(crate) fn es256() -> (Value, Sign) {
    let pair = josekit::jws::ES256.generate_key_pair().unwrap();
    let mut public: Value = Value::Object(pair.to_jwk_public_key().as_ref().clone());
    public["kid"] = json!("k1");
    public["use"] = json!("sig");
    public["alg"] = json!("ES256");
    let signer = josekit::jws::ES256
        .signer_from_jwk(&pair.to_jwk_private_key())
        .unwrap();
    (
        json!({"keys": [public]}),
        Box::new(move |m: &[u8]| signer.sign(m).unwrap()),
    )
}

/// A compact JWS of `payload` with `header`.
pub(crate) fn compact(header: &Value, payload: &Value, sign: &Sign) -> String {
    let input = format!(
        "{}.{}",
        crate::jose::b64(header.to_string().as_bytes()),
        crate::jose::b64(payload.to_string().as_bytes())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", crate::jose::b64(&sig))
}
