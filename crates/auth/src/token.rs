//! Bus tokens: ES256 JWTs.
//!
//! A token is signed by the core's signing key (`certs/tokenSigningKey.pem`), which is kept across
//! restarts so that tokens stay valid when the core restarts. The MQTT username is the client ID and
//! the password is the token; the core checks that `sub` equals the username.
//!
//! A client whose token has expired can still prove who it is with a *key assertion*: a short-lived
//! ES256 JWT that it signs with its own private key, with exactly the claims `sub` = its client
//! ID, `iss` = `client:{clientID}`, `iat` and `exp` (unix seconds; at most
//! [`MAX_ASSERTION_SECS`] apart); other claims are ignored. The core verifies it against the
//! public key on file, which lets the client connect and refresh its token; the role is the
//! store's.
//!
//! Claims: `sub`, `clientType`, `role`, `pubKey`, `iss`, `iat`, `generation`, `exp`; no leeway
//! on expiry. Lifetimes depend on the client type (hubcore's `tokenValidityDays`: user 30 days,
//! service and device 90); admin is a user, launchers and plugins are services. A key assertion
//! may live at most [`MAX_ASSERTION_SECS`] and may not be issued more than 60 s in the future;
//! the SDK makes them for 120 s.
//!
//! The core remembers the last few hundred tokens whose signature it has checked, so that a
//! client logging in again with the same token (every `hubcli` call) skips the ES256 check;
//! expiry, subject and the client's profile are checked at every login all the same.
//!
//! A token is a bearer credential: a stolen one works until it expires, or until its client is
//! removed or gets a new key or role. There is no revocation list, and issuing a new token does
//! not invalidate older ones. An assertion is likewise replayable for its short lifetime.

use crate::keys::{public_key_b64_to_pem, KeyPair};
use crate::unix_now;
use base64::Engine;
use hivehub_api::auth::ClientProfile;
use hivehub_api::{ClientType, Role};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Prefix of the `iss` claim of key assertions (`client:{clientID}`). `:` cannot occur in a
/// client ID or in the hub's issuer name check, so an assertion is never mistaken for a hub token.
pub const ASSERTION_ISSUER_PREFIX: &str = "client:";

/// True if a token with issuer `iss` is a key assertion rather than a hub token.
pub fn is_assertion(iss: &str) -> bool {
    iss.starts_with(ASSERTION_ISSUER_PREFIX)
}

/// What any token says about itself, read without checking it: enough to choose how to check
/// it, or to schedule a refresh.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Peeked {
    /// The client ID it names.
    pub sub: String,
    /// The hub's issuer name, or `client:{id}` for a key assertion.
    pub iss: String,
    /// Issued at (unix seconds).
    pub iat: u64,
    /// Expires at (unix seconds).
    pub exp: u64,
}

/// The claims of a key assertion: who, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assertion {
    /// The client ID; must equal the MQTT username.
    pub sub: String,
    /// `client:{sub}`.
    pub iss: String,
    /// Issued at (unix seconds).
    pub iat: u64,
    /// Expires at (unix seconds).
    pub exp: u64,
}

/// Longest lifetime accepted for a key assertion, in seconds. Short, because an assertion is a
/// bearer credential like a token but is never revocable by re-keying the hub.
pub const MAX_ASSERTION_SECS: u64 = 300;

/// The claims of a hub token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    /// The client ID; must equal the MQTT username.
    pub sub: String,
    /// User, service or device.
    pub client_type: ClientType,
    /// The role at the time of issue.
    pub role: Role,
    /// The client's public key (base64 DER SubjectPublicKeyInfo).
    pub pub_key: String,
    /// Who issued the token: the hub's issuer name, or the client itself for a key assertion.
    pub iss: String,
    /// Issued at (unix seconds).
    pub iat: u64,
    /// The client's generation at the time of issue ([`ClientProfile::generation`]): a token
    /// of a client that was removed and added again no longer matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// Expires at (unix seconds).
    pub exp: u64,
}

/// Why a token was refused. The messages are safe to log: they never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    /// Not a JWT, or not the expected claims.
    #[error("token is malformed: {0}")]
    Malformed(String),
    /// Signed by another key, or altered.
    #[error("token signature is invalid")]
    BadSignature,
    /// Past its `exp`.
    #[error("token expired")]
    Expired,
    /// Not issued by this hub.
    #[error("token issuer '{0}' is not this hub (a key assertion has iss 'client:{{clientID}}')")]
    WrongIssuer(String),
    /// Issued to another client.
    #[error("token belongs to '{token}', not to '{login}'")]
    ClientMismatch {
        /// The token's subject.
        token: String,
        /// The client that presented it.
        login: String,
    },
    /// A key assertion that claims too long a lifetime.
    #[error("key assertion lives longer than {MAX_ASSERTION_SECS} s")]
    AssertionTooLong,
    /// A signing error (should not happen with a valid key).
    #[error("cannot sign token: {0}")]
    Sign(String),
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> TokenError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::InvalidAlgorithm => TokenError::BadSignature,
        other => TokenError::Malformed(format!("{other:?}")),
    }
}

fn validation() -> Validation {
    let mut v = Validation::new(Algorithm::ES256);
    v.leeway = 0;
    v.validate_aud = false;
    v.required_spec_claims = ["exp", "iat", "iss", "sub"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v
}

/// Signs and verifies hub tokens with the core's signing key.
pub struct TokenIssuer {
    signer: Es256Signer,
    dec: DecodingKey,
    issuer: String,
    /// Tokens whose signature and issuer this issuer has checked, with their claims: the
    /// ES256 check was a third of the core's work per login (a `hubcli` call logs in every
    /// time with the same token). Only the signature is remembered; expiry and subject are
    /// checked at every login, and the caller checks the client's profile.
    verified: std::sync::Mutex<std::collections::HashMap<String, Claims>>,
}

/// At most this many remembered tokens (about 0.5 KB each); when full, expired ones go, and if
/// none has expired, all.
const VERIFIED_TOKENS: usize = 256;

impl TokenIssuer {
    /// An issuer whose tokens carry `iss = issuer`.
    pub fn new(signing_key: &KeyPair, issuer: &str) -> Result<TokenIssuer, TokenError> {
        let dec = DecodingKey::from_ec_pem(
            signing_key
                .public_pem()
                .map_err(|e| TokenError::Sign(e.to_string()))?
                .as_bytes(),
        )
        .map_err(|e| TokenError::Sign(e.to_string()))?;
        Ok(TokenIssuer {
            signer: Es256Signer::new(signing_key)?,
            dec,
            issuer: issuer.to_string(),
            verified: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// The issuer name put into tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Issues a token for `profile`, valid for `validity_secs`. Returns the token and its expiry.
    pub fn issue(
        &self,
        profile: &ClientProfile,
        validity_secs: u64,
    ) -> Result<(String, u64), TokenError> {
        let now = unix_now();
        let claims = Claims {
            sub: profile.client_id.clone(),
            client_type: profile.client_type,
            role: profile.role,
            pub_key: profile.pub_key.clone(),
            iss: self.issuer.clone(),
            iat: now,
            generation: profile.generation,
            exp: now + validity_secs,
        };
        Ok((self.signer.sign(&claims)?, claims.exp))
    }

    /// Verifies a token presented by `login`: signature, expiry, issuer and subject.
    pub fn verify(&self, token: &str, login: &str) -> Result<Claims, TokenError> {
        let token = token.trim();
        let known = self.remembered().get(token).cloned();
        let c = match known {
            Some(c) => c,
            None => {
                let c = self.check_signature(token)?;
                self.remember(token, &c);
                c
            }
        };
        if c.sub != login {
            return Err(TokenError::ClientMismatch {
                token: c.sub,
                login: login.to_string(),
            });
        }
        if c.exp <= unix_now() {
            return Err(TokenError::Expired);
        }
        Ok(c)
    }

    /// The signature, expiry and issuer of `token`.
    fn check_signature(&self, token: &str) -> Result<Claims, TokenError> {
        // The issuer first: a hand-made key assertion with a wrong `iss` is told so, not that
        // its signature is invalid.
        if let Ok(p) = peek_claims(token) {
            if p.iss != self.issuer {
                return Err(TokenError::WrongIssuer(p.iss));
            }
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.dec, &validation())
            .map_err(map_jwt_error)?;
        let c = data.claims;
        if c.iss != self.issuer {
            return Err(TokenError::WrongIssuer(c.iss));
        }
        Ok(c)
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Claims>> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, token: &str, c: &Claims) {
        let mut known = self.remembered();
        if known.len() >= VERIFIED_TOKENS {
            let now = unix_now();
            known.retain(|_, c| c.exp > now);
            if known.len() >= VERIFIED_TOKENS {
                known.clear();
            }
        }
        known.insert(token.to_string(), c.clone());
    }
}

/// Reads the claims of a token without checking anything: only for deciding which check to run
/// (hub token or key assertion) and for showing a token's expiry to its owner.
pub fn peek_claims(token: &str) -> Result<Peeked, TokenError> {
    jsonwebtoken::dangerous::insecure_decode::<Peeked>(token.trim())
        .map(|d| d.claims)
        .map_err(|e| TokenError::Malformed(format!("{:?}", e.kind())))
}

/// Reads all the claims of a hub token without checking it (for a display or a pre-check that
/// the core's own check follows); a key assertion does not have them.
pub fn peek_hub_claims(token: &str) -> Result<Claims, TokenError> {
    jsonwebtoken::dangerous::insecure_decode::<Claims>(token.trim())
        .map(|d| d.claims)
        .map_err(|e| TokenError::Malformed(format!("{:?}", e.kind())))
}

/// Creates a key assertion for `client_id`, signed by the client's own key.
pub fn sign_assertion(
    key: &KeyPair,
    client_id: &str,
    lifetime_secs: u64,
) -> Result<String, TokenError> {
    let now = unix_now();
    let claims = Assertion {
        sub: client_id.to_string(),
        iss: format!("{ASSERTION_ISSUER_PREFIX}{client_id}"),
        iat: now,
        exp: now + lifetime_secs.min(MAX_ASSERTION_SECS),
    };
    Es256Signer::new(key)?.sign(&claims)
}

/// Signs ES256 JWTs in compact form, with jsonwebtoken's header. Tokens are signed here rather
/// than by `jsonwebtoken::encode`, whose RustCrypto signer parses the PKCS#8 key again at
/// every call (two P-256 multiplications), and with ring rather than p256: a token cost 0.41
/// ms that way, 0.16 ms with p256 and a parsed key, 0.02 ms with ring. The core signs one per
/// plugin start. Verification stays with jsonwebtoken.
struct Es256Signer {
    key: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl Es256Signer {
    fn new(key: &KeyPair) -> Result<Es256Signer, TokenError> {
        let sk = key.signing_key();
        let public = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
            sk.verifying_key().as_affine(),
            false,
        );
        let rng = ring::rand::SystemRandom::new();
        let mut secret = sk.to_bytes();
        let key = ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &secret,
            public.as_bytes(),
            &rng,
        );
        p256::elliptic_curve::zeroize::Zeroize::zeroize(&mut secret[..]);
        let key = key.map_err(|e| TokenError::Sign(e.to_string()))?;
        Ok(Es256Signer { key, rng })
    }

    /// `claims` as a JWT: the signature is r ‖ s, 64 bytes, as JWS wants it.
    fn sign<T: Serialize>(&self, claims: &T) -> Result<String, TokenError> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = serde_json::to_vec(&Header::new(Algorithm::ES256))
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        let body = serde_json::to_vec(claims).map_err(|e| TokenError::Sign(e.to_string()))?;
        let mut jwt = b64.encode(header);
        jwt.push('.');
        b64.encode_string(body, &mut jwt);
        let sig = self
            .key
            .sign(&self.rng, jwt.as_bytes())
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        jwt.push('.');
        b64.encode_string(sig.as_ref(), &mut jwt);
        Ok(jwt)
    }
}

/// Verifies a key assertion from `login` against the public key on file for that client. The
/// claims are checked before the signature, so a mistake in them is named as such rather than
/// as a bad signature.
pub fn verify_assertion(
    token: &str,
    login: &str,
    pub_key_b64: &str,
) -> Result<Assertion, TokenError> {
    let peeked = jsonwebtoken::dangerous::insecure_decode::<Assertion>(token.trim())
        .map_err(|e| {
            TokenError::Malformed(format!(
                "{:?}; a key assertion has the claims sub, iss, iat and exp",
                e.kind()
            ))
        })?
        .claims;
    let iss = format!("{ASSERTION_ISSUER_PREFIX}{login}");
    if peeked.sub != login {
        return Err(TokenError::ClientMismatch {
            token: peeked.sub,
            login: login.to_string(),
        });
    }
    if peeked.iss != iss {
        return Err(TokenError::Malformed(format!(
            "a key assertion of '{login}' has iss '{iss}', not '{}'",
            peeked.iss
        )));
    }
    let pem = public_key_b64_to_pem(pub_key_b64).map_err(TokenError::Malformed)?;
    let dec = DecodingKey::from_ec_pem(pem.as_bytes()).map_err(map_jwt_error)?;
    let c = jsonwebtoken::decode::<Assertion>(token.trim(), &dec, &validation())
        .map_err(|e| match map_jwt_error(e) {
            TokenError::BadSignature => TokenError::Malformed(format!(
                "the key assertion's signature does not match the public key on file for \
                 '{login}' (ES256 over the JWT, signature as 64 bytes r||s, not DER)"
            )),
            other => other,
        })?
        .claims;
    if c.exp <= unix_now() {
        return Err(TokenError::Expired);
    }
    if c.exp.saturating_sub(c.iat) > MAX_ASSERTION_SECS || c.iat > unix_now() + 60 {
        return Err(TokenError::AssertionTooLong);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn profile(id: &str, key: &KeyPair) -> ClientProfile {
        ClientProfile {
            client_id: id.into(),
            client_type: ClientType::Service,
            display_name: id.into(),
            role: Role::Service,
            pub_key: key.public_key_b64(),
            created: 0,
            updated: 0,
            created_by: None,
            plugin: false,
            generation: None,
        }
    }

    #[test]
    fn issue_and_verify() {
        let hub = TokenIssuer::new(&KeyPair::generate(), "hubcore").unwrap();
        let k = KeyPair::generate();
        let (tok, exp) = hub.issue(&profile("p1", &k), 60).unwrap();
        let c = hub.verify(&tok, "p1").unwrap();
        assert_eq!(c.sub, "p1");
        assert_eq!(c.exp, exp);
        assert_eq!(c.role, Role::Service);
        assert_eq!(c.pub_key, k.public_key_b64());
        assert!(matches!(
            hub.verify(&tok, "p2"),
            Err(TokenError::ClientMismatch { .. })
        ));
        let other = TokenIssuer::new(&KeyPair::generate(), "hubcore").unwrap();
        assert_eq!(other.verify(&tok, "p1"), Err(TokenError::BadSignature));
        let (expired, _) = hub.issue(&profile("p1", &k), 0).unwrap();
        assert_eq!(hub.verify(&expired, "p1"), Err(TokenError::Expired));
    }

    /// Tokens signed here carry jsonwebtoken's header and verify with jsonwebtoken against the
    /// signing key's public half, and only against it.
    #[test]
    fn our_tokens_are_jsonwebtokens() {
        let key = KeyPair::generate();
        let claims = Assertion {
            sub: "p1".into(),
            iss: "client:p1".into(),
            iat: 1,
            exp: 4_000_000_000,
        };
        let ours = Es256Signer::new(&key).unwrap().sign(&claims).unwrap();
        let enc =
            jsonwebtoken::EncodingKey::from_ec_pem(key.private_pem().unwrap().as_bytes()).unwrap();
        let theirs = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &enc).unwrap();
        // Header and claims byte for byte; only the signature differs (ring's nonce is random).
        let signed = |t: &str| t.rsplit_once('.').map(|(m, _)| m.to_string());
        assert_eq!(signed(&ours), signed(&theirs));
        let check = |k: &KeyPair| {
            let dec = DecodingKey::from_ec_pem(k.public_pem().unwrap().as_bytes()).unwrap();
            jsonwebtoken::decode::<Assertion>(&ours, &dec, &validation()).map(|d| d.claims)
        };
        assert_eq!(check(&key).unwrap(), claims);
        assert!(check(&KeyPair::generate()).is_err());
    }

    /// A token checked once skips the signature check at the next login, but nothing else:
    /// another login, a token that has since expired and any other bytes are refused.
    #[test]
    fn a_remembered_token_is_still_checked_for_login_expiry_and_bytes() {
        let hub = TokenIssuer::new(&KeyPair::generate(), "hubcore").unwrap();
        let k = KeyPair::generate();
        let (tok, _) = hub.issue(&profile("p1", &k), 60).unwrap();
        assert!(hub.verify(&tok, "p1").is_ok());
        assert!(hub.remembered().contains_key(&tok));
        assert!(
            hub.verify(&format!(" {tok}\n"), "p1").is_ok(),
            "trimmed, as before"
        );
        assert!(matches!(
            hub.verify(&tok, "p2"),
            Err(TokenError::ClientMismatch { .. })
        ));
        // The same bytes, remembered with claims that have expired meanwhile.
        let mut old = hub.verify(&tok, "p1").unwrap();
        old.exp = unix_now() - 1;
        hub.remember(&tok, &old);
        assert_eq!(hub.verify(&tok, "p1"), Err(TokenError::Expired));
        // A forged signature on the same claims is checked, not looked up.
        let (head, sig) = tok.rsplit_once('.').unwrap();
        let flipped = if sig.starts_with('A') { "B" } else { "A" };
        let forged = format!("{head}.{flipped}{}", &sig[1..]);
        assert_eq!(hub.verify(&forged, "p1"), Err(TokenError::BadSignature));
        assert!(!hub.remembered().contains_key(&forged));
    }

    #[test]
    fn remembered_tokens_stay_bounded() {
        let hub = TokenIssuer::new(&KeyPair::generate(), "hubcore").unwrap();
        let k = KeyPair::generate();
        for i in 0..VERIFIED_TOKENS + 10 {
            let (tok, _) = hub.issue(&profile(&format!("p{i}"), &k), 60).unwrap();
            assert!(hub.verify(&tok, &format!("p{i}")).is_ok());
            assert!(hub.remembered().len() <= VERIFIED_TOKENS);
        }
    }

    #[test]
    fn assertion_checks_key_and_lifetime() {
        let k = KeyPair::generate();
        let a = sign_assertion(&k, "p1", 60).unwrap();
        assert!(verify_assertion(&a, "p1", &k.public_key_b64()).is_ok());
        let e = verify_assertion(&a, "p1", &KeyPair::generate().public_key_b64()).unwrap_err();
        assert!(
            e.to_string()
                .contains("does not match the public key on file"),
            "{e}"
        );
        assert!(verify_assertion(&a, "p2", &k.public_key_b64()).is_err());
        // A mistake in the claims is named, not reported as a bad signature.
        let enc =
            jsonwebtoken::EncodingKey::from_ec_pem(k.private_pem().unwrap().as_bytes()).unwrap();
        let now = unix_now();
        let wrong_iss = Assertion {
            sub: "p1".into(),
            iss: "p1".into(),
            iat: now,
            exp: now + 60,
        };
        let t = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &wrong_iss, &enc).unwrap();
        let e = verify_assertion(&t, "p1", &k.public_key_b64()).unwrap_err();
        assert!(
            e.to_string().contains("has iss 'client:p1', not 'p1'"),
            "{e}"
        );
        let hub = TokenIssuer::new(&KeyPair::generate(), "hubcore").unwrap();
        let e = hub.verify(&t, "p1").unwrap_err();
        assert!(e.to_string().contains("a key assertion has iss"), "{e}");
        // A hub token is not an assertion, even for the right key.
        let hub = TokenIssuer::new(&k, "hubcore").unwrap();
        let (t, _) = hub.issue(&profile("p1", &k), 60).unwrap();
        assert!(verify_assertion(&t, "p1", &k.public_key_b64()).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Arbitrary strings, and every single-character alteration of a valid token, are refused
        /// without panicking.
        #[test]
        fn garbage_and_tampering_are_refused(s in "\\PC{0,200}", pos in 0usize..400, c in "[A-Za-z0-9_-]") {
            let hub = TokenIssuer::new(&KeyPair::generate(), "hubcore").unwrap();
            prop_assert!(hub.verify(&s, "p1").is_err());
            let k = KeyPair::generate();
            let (tok, _) = hub.issue(&profile("p1", &k), 60).unwrap();
            let mut chars: Vec<char> = tok.chars().collect();
            let i = pos % chars.len();
            let new = c.chars().next().unwrap();
            prop_assume!(chars[i] != new && chars[i] != '.');
            chars[i] = new;
            let tampered: String = chars.into_iter().collect();
            prop_assert!(hub.verify(&tampered, "p1").is_err());
        }
    }
}
