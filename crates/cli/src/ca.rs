//! `hubcli ca show`: the hub CA certificate that clients verify the hub with (HiveOT's `vca`).

use crate::{format, json, CliError, Ctx};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

/// What `ca show` tells about a certificate (also its `--json` shape).
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CaInfo {
    /// The file read.
    pub file: String,
    /// The subject's distinguished name ("CN=…, O=…").
    pub subject: String,
    /// The issuer's distinguished name (the subject itself for a self-signed CA).
    pub issuer: String,
    /// The serial number, hex with colons.
    pub serial: String,
    /// Valid from (unix milliseconds).
    pub not_before: i64,
    /// Valid until (unix milliseconds).
    pub not_after: i64,
    /// SHA-256 of the DER certificate, upper-case hex with colons (as `openssl x509
    /// -fingerprint -sha256` prints it).
    pub sha256: String,
    /// The certificate as PEM.
    pub pem: String,
}

pub(crate) fn show(ctx: &Ctx, out: &mut dyn Write) -> Result<(), CliError> {
    let path = ctx.home.ca_cert();
    let pem = std::fs::read_to_string(&path).map_err(|e| {
        CliError::Failed(format!(
            "cannot read the hub CA {}: {e} (the core creates it on its first start)",
            path.display()
        ))
    })?;
    let info = inspect(&path, &pem).map_err(CliError::Failed)?;
    if ctx.g.json {
        json(out, &info)
    } else {
        write!(out, "{}", text(&info, crate::now_ms())).map_err(crate::error::output)
    }
}

/// Reads the first certificate of `pem` (the file `path`).
pub fn inspect(path: &Path, pem: &str) -> Result<CaInfo, String> {
    let bad =
        |e: &dyn std::fmt::Display| format!("{} is not a PEM certificate: {e}", path.display());
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| bad(&e))?;
    let cert = p.parse_x509().map_err(|e| bad(&e))?;
    let digest = Sha256::digest(&p.contents);
    let v = cert.validity();
    Ok(CaInfo {
        file: path.display().to_string(),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: colon_hex(cert.raw_serial()),
        not_before: v.not_before.timestamp().saturating_mul(1000),
        not_after: v.not_after.timestamp().saturating_mul(1000),
        sha256: colon_hex(&digest),
        pem: pem_block(pem),
    })
}

/// `AB:CD:…`
fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The first `BEGIN CERTIFICATE` … `END CERTIFICATE` block of `pem`, with a final newline.
fn pem_block(pem: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for l in pem.lines() {
        if l.starts_with("-----BEGIN CERTIFICATE") {
            inside = true;
        }
        if inside {
            out.push_str(l.trim_end());
            out.push('\n');
            if l.starts_with("-----END CERTIFICATE") {
                break;
            }
        }
    }
    out
}

/// The text of `ca show` at `now_ms`: aligned "key: value" lines, a blank line, the PEM.
pub fn text(c: &CaInfo, now_ms: u64) -> String {
    let ms = |t: i64| u64::try_from(t).unwrap_or(0);
    let until = ms(c.not_after);
    let left = if until <= now_ms {
        format!("EXPIRED {} ago", format::ago(until, now_ms))
    } else {
        format!("in {}", format::ago(now_ms, until))
    };
    let mut s = String::new();
    for (k, v) in [
        ("file", c.file.clone()),
        ("subject", c.subject.clone()),
        ("issuer", c.issuer.clone()),
        ("serial", c.serial.clone()),
        ("valid from", format::timestamp(ms(c.not_before))),
        (
            "valid until",
            format!("{} ({left})", format::timestamp(until)),
        ),
        ("SHA-256", c.sha256.clone()),
    ] {
        s.push_str(&format!("{:<12} {v}\n", format!("{k}:")));
    }
    s.push('\n');
    s.push_str(&c.pem);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_show_text_names_subject_validity_and_fingerprint() {
        let c = CaInfo {
            file: "/opt/hivehub/certs/caCert.pem".into(),
            subject: "CN=hivehub CA".into(),
            issuer: "CN=hivehub CA".into(),
            serial: "01:02".into(),
            not_before: 1_764_147_321_000,
            not_after: 1_764_147_321_000 + 86_400_000 * 12,
            sha256: "AB:CD".into(),
            pem: "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n".into(),
        };
        let t = text(&c, 1_764_147_321_000);
        assert_eq!(
            t,
            "file:        /opt/hivehub/certs/caCert.pem\n\
             subject:     CN=hivehub CA\n\
             issuer:      CN=hivehub CA\n\
             serial:      01:02\n\
             valid from:  2025-11-26T08:55:21.000Z\n\
             valid until: 2025-12-08T08:55:21.000Z (in 12d)\n\
             SHA-256:     AB:CD\n\
             \n\
             -----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n"
        );
        let t = text(&c, 1_764_147_321_000 + 86_400_000 * 13);
        assert!(t.contains("(EXPIRED 1d00h ago)"), "{t}");
    }

    #[test]
    fn pem_block_keeps_only_the_certificate() {
        assert_eq!(
            pem_block("junk\n-----BEGIN CERTIFICATE-----\nAAA \n-----END CERTIFICATE-----\nmore\n"),
            "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n"
        );
        assert_eq!(colon_hex(&[0xab, 0x01]), "AB:01");
    }
}
