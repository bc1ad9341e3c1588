//! Client key pairs (ECDSA P-256).
//!
//! Every client has its key in `certs/{clientID}.key` (PKCS#8 PEM, mode 0400, written
//! atomically). The core keeps only the public half, as base64 of the DER
//! SubjectPublicKeyInfo, in the client's profile. A key is created only when its file is
//! missing; a corrupt key file is an error, never silently replaced.

use base64::Engine;
use hivehub_home::{write_atomic, SECRET_MODE};
use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Errors while loading or saving a key.
#[derive(Debug, Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file does not hold a PKCS#8 PEM P-256 private key.
    #[error("key file {path} does not hold a PKCS#8 PEM P-256 private key: {reason}")]
    Format {
        /// The key file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
    /// Encoding failed (should not happen with a valid key).
    #[error("cannot encode key: {0}")]
    Encode(String),
}

/// A P-256 key pair. The private half never leaves the process except into its 0400 key file.
#[derive(Clone)]
pub struct KeyPair {
    key: SigningKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public_key_b64())
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A new random key.
    pub fn generate() -> KeyPair {
        KeyPair {
            key: SigningKey::random(&mut rand::rngs::OsRng),
        }
    }

    /// The private key as PKCS#8 PEM.
    pub fn private_pem(&self) -> Result<String, KeyError> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map(|z| z.to_string())
            .map_err(|e| KeyError::Encode(e.to_string()))
    }

    /// The public key as SubjectPublicKeyInfo PEM.
    pub fn public_pem(&self) -> Result<String, KeyError> {
        self.key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::Encode(e.to_string()))
    }

    /// The public key as base64 of its DER SubjectPublicKeyInfo: the form stored in profiles
    /// and tokens.
    pub fn public_key_b64(&self) -> String {
        let der = self
            .key
            .verifying_key()
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(der)
    }

    /// Parses a PKCS#8 PEM private key.
    pub fn from_pem(pem: &str, path: &Path) -> Result<KeyPair, KeyError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(|key| KeyPair { key })
            .map_err(|e| KeyError::Format {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
    }

    /// Loads a key file.
    pub fn load(path: &Path) -> Result<KeyPair, KeyError> {
        let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        KeyPair::from_pem(&pem, path)
    }

    /// Loads the key at `path`, or creates it (mode 0400) if the file does not exist. An
    /// existing but unreadable or corrupt file is an error: a key is never silently replaced,
    /// since that would lock its client out.
    pub fn load_or_create(path: &Path) -> Result<(KeyPair, bool), KeyError> {
        match std::fs::metadata(path) {
            Ok(_) => KeyPair::load(path).map(|k| (k, false)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let k = KeyPair::generate();
                k.save(path)?;
                Ok((k, true))
            }
            Err(source) => Err(KeyError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// The P-256 signing key, for signing tokens without parsing the key again.
    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// Writes the private key atomically with mode 0400.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        write_atomic(path, self.private_pem()?.as_bytes(), SECRET_MODE).map_err(|source| {
            KeyError::Io {
                path: path.to_path_buf(),
                source,
            }
        })
    }
}

/// The public key (as [`KeyPair::public_key_b64`]) of the key file at `path`, creating the
/// file (mode 0400) if it does not exist; the flag says whether it was created. For callers
/// that only register a key, such as the launcher before every plugin start: the key is read
/// and checked with ring, not parsed into a p256 [`KeyPair`], whose two P-256 multiplications
/// cost 0.25 ms per key. A file ring does not take (no copy of the public half, from another
/// tool) is parsed whole; a corrupt one is an error either way.
pub fn load_or_create_public(path: &Path) -> Result<(String, bool), KeyError> {
    let pem = match std::fs::read_to_string(path) {
        Ok(pem) => pem,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let pem = generate_pem().map_err(KeyError::Encode)?;
            write_atomic(path, pem.as_bytes(), SECRET_MODE).map_err(|source| KeyError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let b64 = carried_public_key(&pem)
                .ok_or_else(|| KeyError::Encode("new key without its public half".into()))?;
            return Ok((b64, true));
        }
        Err(source) => {
            return Err(KeyError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    match carried_public_key(&pem) {
        Some(b64) => Ok((b64, false)),
        None => KeyPair::from_pem(&pem, path).map(|k| (k.public_key_b64(), false)),
    }
}

/// A new key as PKCS#8 PEM, made by ring: its P-256 arithmetic makes a key in a fifth of the
/// time p256 takes (0.13 ms), once per plugin at a hub's first start. The document carries
/// the public half, as [`KeyPair::private_pem`]'s does.
fn generate_pem() -> Result<String, String> {
    let rng = ring::rand::SystemRandom::new();
    let doc = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .map_err(|e| format!("cannot make a key: {e}"))?;
    p256::pkcs8::der::pem::encode_string("PRIVATE KEY", LineEnding::LF, doc.as_ref())
        .map_err(|e| format!("cannot encode a key: {e}"))
}

/// The public key of a PKCS#8 P-256 private key document, as base64 DER SubjectPublicKeyInfo,
/// checked by ring against the private half (which its arithmetic does in a fraction of
/// p256's time); `None` when ring does not take the document (it wants the copy of the public
/// half that RFC 5915 makes optional), or the two halves disagree.
fn carried_public_key(pem: &str) -> Option<String> {
    let (label, doc) = p256::pkcs8::SecretDocument::from_pem(pem).ok()?;
    if label != "PRIVATE KEY" {
        return None;
    }
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        doc.as_bytes(),
        &ring::rand::SystemRandom::new(),
    )
    .ok()?;
    let point =
        p256::PublicKey::from_sec1_bytes(ring::signature::KeyPair::public_key(&pair).as_ref())
            .ok()?;
    let der = point.to_public_key_der().ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(der.as_bytes()))
}

/// Checks that a string is a base64 DER SubjectPublicKeyInfo of a P-256 key, and returns it as
/// PEM (the form the token library verifies with).
pub fn public_key_b64_to_pem(b64: &str) -> Result<String, String> {
    use p256::pkcs8::DecodePublicKey;
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("public key is not base64: {e}"))?;
    let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&der)
        .map_err(|e| format!("public key is not a P-256 SubjectPublicKeyInfo: {e}"))?;
    vk.to_public_key_pem(LineEnding::LF)
        .map_err(|e| format!("cannot encode public key: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn create_then_load_same_key() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.key");
        let (k1, created) = KeyPair::load_or_create(&p).unwrap();
        assert!(created);
        let (k2, created) = KeyPair::load_or_create(&p).unwrap();
        assert!(!created);
        assert_eq!(k1.public_key_b64(), k2.public_key_b64());
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o400);
        assert!(public_key_b64_to_pem(&k1.public_key_b64()).is_ok());
        assert!(public_key_b64_to_pem("bm90IGEga2V5").is_err());
    }

    #[test]
    fn the_carried_public_key_is_the_derived_one() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.key");
        let (b64, created) = load_or_create_public(&p).unwrap();
        assert!(created);
        let k = KeyPair::load(&p).unwrap();
        assert_eq!(b64, k.public_key_b64());
        assert_eq!(load_or_create_public(&p).unwrap(), (b64, false));
        assert!(carried_public_key(&k.private_pem().unwrap()).is_some());
    }

    #[test]
    fn a_key_document_without_its_public_half_is_parsed_whole() {
        use p256::pkcs8::der::{Encode, EncodePem};
        use p256::pkcs8::{AssociatedOid, PrivateKeyInfo};
        let k = KeyPair::generate();
        let secret = k.signing_key().to_bytes();
        let ec = sec1::EcPrivateKey {
            private_key: &secret,
            parameters: None,
            public_key: None,
        }
        .to_der()
        .unwrap();
        let alg = p256::pkcs8::AlgorithmIdentifierRef {
            oid: p256::elliptic_curve::ALGORITHM_OID,
            parameters: Some((&p256::NistP256::OID).into()),
        };
        let pem = PrivateKeyInfo::new(alg, &ec)
            .to_pem(LineEnding::LF)
            .unwrap();
        assert_eq!(carried_public_key(&pem), None);
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bare.key");
        std::fs::write(&p, &pem).unwrap();
        assert_eq!(
            load_or_create_public(&p).unwrap(),
            (k.public_key_b64(), false)
        );
    }

    /// A document whose copy of the public half is another key's is refused, as p256 refuses
    /// it, not registered under the wrong key.
    #[test]
    fn a_key_file_whose_halves_disagree_is_an_error() {
        use p256::pkcs8::der::{Decode, Encode, EncodePem};
        use p256::pkcs8::PrivateKeyInfo;
        let (k, other) = (KeyPair::generate(), KeyPair::generate());
        let der = k.key.to_pkcs8_der().unwrap();
        let info = PrivateKeyInfo::from_der(der.as_bytes()).unwrap();
        let mut ec = sec1::EcPrivateKey::from_der(info.private_key).unwrap();
        let wrong = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
            other.key.verifying_key().as_affine(),
            false,
        );
        ec.public_key = Some(wrong.as_bytes());
        let ec = ec.to_der().unwrap();
        let pem = PrivateKeyInfo::new(info.algorithm, &ec)
            .to_pem(LineEnding::LF)
            .unwrap();
        assert_eq!(carried_public_key(&pem), None);
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("liar.key");
        std::fs::write(&p, &pem).unwrap();
        let e = load_or_create_public(&p).unwrap_err();
        assert!(e.to_string().contains("liar.key"), "{e}");
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_for_the_public_half_too() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.key");
        std::fs::write(&p, "garbage").unwrap();
        let err = load_or_create_public(&p).unwrap_err();
        assert!(err.to_string().contains("x.key"), "{err}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "garbage");
    }

    #[test]
    fn corrupt_key_is_an_error_not_replaced() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.key");
        std::fs::write(&p, "garbage").unwrap();
        let err = KeyPair::load_or_create(&p).unwrap_err();
        assert!(err.to_string().contains("x.key"), "{err}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "garbage");
    }
}
