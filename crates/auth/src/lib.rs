//! Credentials and authorization of hivehub.
//!
//! * [`keys`]: a client's P-256 key pair, kept in `certs/{clientID}.key` (PKCS#8 PEM, mode 0400).
//! * [`token`]: ES256 JWTs signed by the core's persistent signing key. ES256 rather than EdDSA so
//!   that an external broker such as EMQX can verify the same tokens.
//! * [`acl`]: the per-role topic ACL that the core enforces on every publish, subscribe and will.

pub mod acl;
pub mod keys;
pub mod token;

pub use acl::{may_publish, may_subscribe, Grants, NoGrants};
pub use keys::{KeyError, KeyPair};
pub use token::{Claims, TokenError, TokenIssuer};

/// Seconds since the Unix epoch. A clock before 1970 reads as 0, which makes every token look
/// expired rather than valid.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
