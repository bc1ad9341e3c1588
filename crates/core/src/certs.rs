//! The hub's TLS material and token-signing key, in `certs/`.
//!
//! * `caCert.pem` / `caKey.pem`: the hub CA (ECDSA P-256, 10 years), created once, when both
//!   are missing. One without the other is an error: a new CA would silently break every
//!   client that trusts the old one.
//! * `hubCert.pem` / `hubKey.pem`: the server certificate, re-issued at every start for
//!   localhost, 127.0.0.1, ::1, the host name and the listen address (1 year). An unspecified
//!   listen address (`0.0.0.0`) names no IP address, so remote clients connect by host name.
//!   Written without fsync: a start that loses them to a power cut is followed by one that
//!   issues them again.
//! * `tokenSigningKey.pem`: signs bus tokens; created once and kept, so tokens survive restarts.

use hivehub_auth::KeyPair;
use hivehub_home::{write_atomic, write_replace, Home, SECRET_MODE};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair as RcKey, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Errors while creating or loading certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Certificate generation failed.
    #[error("cannot create certificate: {0}")]
    Generate(String),
}

/// Paths of the TLS files the broker needs.
pub struct TlsFiles {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "hivehub CA");
    dn.push(DnType::OrganizationName, "hivehub");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time_now();
    p.not_before = now - rcgen_days(1);
    p.not_after = now + rcgen_days(3650);
    p
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn rcgen_days(d: i64) -> time::Duration {
    time::Duration::days(d)
}

fn read(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|e| CertError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Writes a file that must survive a power cut (synced): the CA.
fn write(path: &Path, data: &str, mode: u32) -> Result<(), CertError> {
    write_atomic(path, data.as_bytes(), mode).map_err(|e| file_error(path, e))
}

/// Writes a file that every start writes again (not synced): the server key and certificate.
/// A write lost to a power cut costs nothing, since the next start issues a new pair; the two
/// fsyncs per file cost tens of milliseconds of the core's start on an SD card.
fn write_again(path: &Path, data: &str, mode: u32) -> Result<(), CertError> {
    write_replace(path, data.as_bytes(), mode).map_err(|e| file_error(path, e))
}

fn file_error(path: &Path, e: std::io::Error) -> CertError {
    CertError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Creates the CA if missing, and issues a fresh server certificate for `listen_ip`.
pub fn ensure_tls(home: &Home, listen_ip: IpAddr) -> Result<TlsFiles, CertError> {
    let ca_cert_path = home.ca_cert();
    let ca_key_path = home.certs().join("caKey.pem");
    let gen = |e: rcgen::Error| CertError::Generate(e.to_string());

    if ca_key_path.exists() != ca_cert_path.exists() {
        // Regenerating the CA would silently break every client that trusts the old one.
        let (present, missing) = if ca_key_path.exists() {
            (&ca_key_path, &ca_cert_path)
        } else {
            (&ca_cert_path, &ca_key_path)
        };
        return Err(CertError::File {
            path: missing.clone(),
            reason: format!(
                "is missing while {} exists; restore it, or remove both to create a new CA (clients must then trust the new caCert.pem)",
                present.display()
            ),
        });
    }
    let ca_key = if ca_key_path.exists() {
        RcKey::from_pem(&read(&ca_key_path)?).map_err(|e| CertError::File {
            path: ca_key_path.clone(),
            reason: format!("not a valid CA key: {e}"),
        })?
    } else {
        let key = RcKey::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen)?;
        let cert = ca_params().self_signed(&key).map_err(gen)?;
        write(&ca_key_path, &key.serialize_pem(), SECRET_MODE)?;
        write(&ca_cert_path, &cert.pem(), 0o644)?;
        tracing::info!(file = %ca_cert_path.display(), "created the hub CA");
        key
    };
    // The issuer is rebuilt from the same distinguished name; the CA file itself is what clients
    // trust, and its key is what matters for the signature.
    let issuer = Issuer::new(ca_params(), &ca_key);

    let server_key = RcKey::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen)?;
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty());
    let mut sans = vec![
        SanType::DnsName("localhost".try_into().map_err(gen)?),
        SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
        SanType::IpAddress(
            "::1"
                .parse()
                .map_err(|_| CertError::Generate("::1".into()))?,
        ),
    ];
    if let Some(h) = &host {
        if let Ok(name) = h.clone().try_into() {
            sans.push(SanType::DnsName(name));
        }
    }
    if !listen_ip.is_unspecified() && !listen_ip.is_loopback() {
        sans.push(SanType::IpAddress(listen_ip));
    }
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("hubcore-{}", host.as_deref().unwrap_or("localhost")),
    );
    dn.push(DnType::OrganizationName, "hivehub");
    p.distinguished_name = dn;
    p.subject_alt_names = sans;
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let now = time_now();
    p.not_before = now - rcgen_days(1);
    p.not_after = now + rcgen_days(365);
    let cert = p.signed_by(&server_key, &issuer).map_err(gen)?;
    let files = TlsFiles {
        cert: home.certs().join("hubCert.pem"),
        key: home.certs().join("hubKey.pem"),
    };
    write_again(&files.key, &server_key.serialize_pem(), SECRET_MODE)?;
    write_again(&files.cert, &cert.pem(), 0o644)?;
    Ok(files)
}

/// Loads the token-signing key, creating it on first start.
pub fn signing_key(home: &Home) -> Result<KeyPair, CertError> {
    let path = home.certs().join("tokenSigningKey.pem");
    let (key, created) = KeyPair::load_or_create(&path).map_err(|e| CertError::File {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if created {
        tracing::info!(file = %path.display(), "created the token-signing key");
    }
    Ok(key)
}
