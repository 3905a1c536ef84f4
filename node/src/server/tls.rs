//! TLS for `agentidp serve --tls-cert --tls-key`: the certificate chain and private key are read
//! from PEM files and checked at start-up, and turned into a rustls server configuration.
//!
//! The configuration names its crypto provider (ring) itself rather than relying on a
//! process-wide default: both ring and aws-lc-rs can end up in this build, and rustls refuses to
//! guess between them. TLS 1.3 and 1.2; ALPN offers only `http/1.1`, because the node's HTTP
//! server (warp's) is HTTP/1.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ServerConfig;

/// The PEM files of `--tls-cert` and `--tls-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (PEM `CERTIFICATE` blocks).
    pub cert: PathBuf,
    /// The private key of the leaf certificate: PKCS#8 (`PRIVATE KEY`), SEC1
    /// (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`).
    pub key: PathBuf,
}

/// Why the certificate or key cannot be used. Every message names the file and says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the TLS {what} file {path}: {source}; check that --{flag} names a readable PEM file")]
    Read {
        /// `certificate` or `private key`.
        what: &'static str,
        /// `tls-cert` or `tls-key`.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file is not well-formed PEM.
    #[error("the TLS {what} file {path} is not valid PEM ({source}); --{flag} takes a PEM file")]
    Pem {
        /// `certificate` or `private key`.
        what: &'static str,
        /// `tls-cert` or `tls-key`.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        source: pem::Error,
    },
    /// The certificate file holds no `CERTIFICATE` block.
    #[error("{0} holds no certificate (no -----BEGIN CERTIFICATE----- block); --tls-cert takes the PEM certificate chain, leaf certificate first")]
    NoCertificate(PathBuf),
    /// The key file holds no private key block.
    #[error("{0} holds no private key (no -----BEGIN PRIVATE KEY-----, EC PRIVATE KEY or RSA PRIVATE KEY block); --tls-key takes the PEM private key of the certificate")]
    NoKey(PathBuf),
    /// The private key is not the one the leaf certificate was issued for.
    #[error("the private key in {key} does not match the certificate in {cert}; give --tls-key the key the certificate was issued for (and --tls-cert a chain that starts with that certificate)")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the certificate or key (e.g. an unsupported key type, a malformed certificate).
    #[error("cannot use the certificate {cert} with the key {key}: {source}; use an ECDSA (P-256/P-384), Ed25519 or RSA (2048+ bits) key and its X.509 certificate")]
    Unusable {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
}

/// Reads and checks the certificate chain and key, and builds the server configuration.
pub(crate) fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let unusable = |source| TlsError::Unusable {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(unusable)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsError::KeyMismatch {
                    cert: files.cert.clone(),
                    key: files.key.clone(),
                }
            }
            other => unusable(other),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read(path: &Path, what: &'static str, flag: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        flag,
        path: path.to_path_buf(),
        source,
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path, "certificate", "tls-cert")?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            what: "certificate",
            flag: "tls-cert",
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path, "private key", "tls-key")?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey(path.to_path_buf()),
        source => TlsError::Pem {
            what: "private key",
            flag: "tls-key",
            path: path.to_path_buf(),
            source,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                dir: tempfile::tempdir().unwrap(),
            }
        }
        fn write(&self, name: &str, text: &str) -> PathBuf {
            let p = self.dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        }
    }

    /// A self-signed certificate for `localhost` and its key, in PEM, made with `alg`.
    fn self_signed(alg: &'static rcgen::SignatureAlgorithm) -> (String, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        (params.self_signed(&key).unwrap().pem(), key)
    }

    /// A self-signed certificate for `localhost` for the key in `pkcs8_pem`.
    fn cert_for(pkcs8_pem: &str) -> String {
        let key = rcgen::KeyPair::from_pem(pkcs8_pem).unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    /// The three private key encodings operators have: PKCS#8 (what most tools write now), SEC1
    /// (`openssl ecparam -genkey`) and PKCS#1 (`openssl genrsa` before 3.0).
    #[test]
    fn loads_pkcs8_sec1_and_pkcs1_keys_and_offers_only_http11() {
        use openssl::ec::{EcGroup, EcKey};
        use openssl::nid::Nid;
        use openssl::pkey::PKey;
        let f = Fixture::new();
        let ec =
            EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap();
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let cases = [
            (
                "sec1",
                String::from_utf8(ec.private_key_to_pem().unwrap()).unwrap(),
                PKey::from_ec_key(ec).unwrap(),
            ),
            (
                "pkcs1",
                String::from_utf8(rsa.private_key_to_pem().unwrap()).unwrap(),
                PKey::from_rsa(rsa).unwrap(),
            ),
        ];
        for (name, key_pem, pkey) in cases {
            let pkcs8 = String::from_utf8(pkey.private_key_to_pem_pkcs8().unwrap()).unwrap();
            let marker = if name == "sec1" {
                "BEGIN EC PRIVATE KEY"
            } else {
                "BEGIN RSA PRIVATE KEY"
            };
            assert!(key_pem.contains(marker), "{name}: {key_pem}");
            let cert = f.write(&format!("{name}-cert.pem"), &cert_for(&pkcs8));
            for (form, text) in [(name, &key_pem), ("pkcs8", &pkcs8)] {
                let key = f.write(&format!("{name}-{form}.pem"), text);
                let config = server_config(&TlsFiles {
                    cert: cert.clone(),
                    key,
                })
                .unwrap_or_else(|e| panic!("{name} certificate, {form} key: {e}"));
                assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
            }
        }
    }

    #[test]
    fn cert_and_key_may_share_one_file() {
        let f = Fixture::new();
        let (cert, key) = self_signed(&rcgen::PKCS_ED25519);
        let both = f.write("both.pem", &format!("{cert}{}", key.serialize_pem()));
        server_config(&TlsFiles {
            cert: both.clone(),
            key: both,
        })
        .unwrap();
    }

    #[test]
    fn refusals_name_the_file_and_the_flag() {
        let f = Fixture::new();
        let (cert_pem, key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        let cert = f.write("cert.pem", &cert_pem);
        let key_file = f.write("key.pem", &key.serialize_pem());
        let (_, other_key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        let other = f.write("other.pem", &other_key.serialize_pem());
        let missing = f.dir.path().join("missing.pem");
        let garbage = f.write("garbage.pem", "-----BEGIN CERTIFICATE-----\n!!!\n");

        let cases: Vec<(TlsFiles, &str, Vec<&str>)> = vec![
            (
                TlsFiles {
                    cert: missing.clone(),
                    key: key_file.clone(),
                },
                "Read",
                vec!["missing.pem", "--tls-cert"],
            ),
            (
                TlsFiles {
                    cert: cert.clone(),
                    key: missing.clone(),
                },
                "Read",
                vec!["missing.pem", "--tls-key"],
            ),
            (
                TlsFiles {
                    cert: key_file.clone(),
                    key: key_file.clone(),
                },
                "NoCertificate",
                vec!["key.pem", "--tls-cert", "no certificate"],
            ),
            (
                TlsFiles {
                    cert: cert.clone(),
                    key: cert.clone(),
                },
                "NoKey",
                vec!["cert.pem", "--tls-key", "no private key"],
            ),
            (
                TlsFiles {
                    cert: cert.clone(),
                    key: other.clone(),
                },
                "KeyMismatch",
                vec!["other.pem", "cert.pem", "does not match"],
            ),
            (
                TlsFiles {
                    cert: garbage.clone(),
                    key: key_file.clone(),
                },
                "Pem",
                vec!["garbage.pem", "--tls-cert", "not valid PEM"],
            ),
        ];
        for (files, variant, needles) in cases {
            let err = server_config(&files).unwrap_err();
            assert!(
                format!("{err:?}").starts_with(variant),
                "{files:?}: expected {variant}, got {err:?}"
            );
            let msg = err.to_string();
            for n in needles {
                assert!(msg.contains(n), "{variant}: {msg:?} lacks {n:?}");
            }
        }
    }
}
