//! The listeners' TLS certificate (RFC 5280 validity, the key that goes
//! with it, the name clients connect to), and a TLS handshake that accepts
//! any certificate — only to read a greeting off a port that is taken.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::{Finding, Report, check_secret_file};
use crate::config::Config;

const WHAT: &str = "TLS certificate";

/// Check the configured certificate (or the generated self-signed one).
pub(super) fn check_certificate(config: &Config, report: &mut Report) {
    let (cert, key, generated) = match (&config.tls.certificate_file, &config.tls.private_key_file)
    {
        (Some(c), Some(k)) => (c.clone(), k.clone(), false),
        (Some(_), None) | (None, Some(_)) => {
            report.push(Finding::fail(
                WHAT,
                "only one of tls.certificate_file and tls.private_key_file is set",
                "set both (PEM certificate chain and its private key), or neither for a \
                 generated self-signed certificate",
            ));
            return;
        }
        (None, None) => {
            let dir = config.data_dir.join("tls");
            let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
            if !c.exists() || !k.exists() {
                report.push(Finding::ok(
                    WHAT,
                    "none configured; graphgate generates a self-signed one in the data \
                     directory on first start",
                ));
                return;
            }
            (c, k, true)
        }
    };
    let key_setting = if generated {
        "<data dir>/tls/key.pem"
    } else {
        "tls.private_key_file"
    };
    check_secret_file("TLS private key", &key, key_setting, report);
    report.push(assess(&cert, &key, generated, &config.smtp.hostname));
}

/// One finding for the certificate at `cert` with the key at `key`.
fn assess(cert: &Path, key: &Path, generated: bool, hostname: &str) -> Finding {
    let renew = if generated {
        format!(
            "delete {} and its key; graphgate generates a new one on the next start",
            cert.display()
        )
    } else {
        format!(
            "install a renewed certificate at {} (tls.certificate_file) with its key",
            cert.display()
        )
    };
    let bytes = match std::fs::read(cert) {
        Ok(b) => b,
        Err(e) => {
            return Finding::fail(
                WHAT,
                format!("{}: {e}", cert.display()),
                "fix tls.certificate_file",
            );
        }
    };
    let chain: Vec<CertificateDer<'static>> =
        match CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>() {
            Ok(c) if !c.is_empty() => c,
            Ok(_) => {
                return Finding::fail(
                    WHAT,
                    format!("{}: no PEM certificate in it", cert.display()),
                    "give a PEM file starting with -----BEGIN CERTIFICATE-----",
                );
            }
            Err(e) => {
                return Finding::fail(
                    WHAT,
                    format!("{}: not PEM: {e}", cert.display()),
                    "give a PEM file starting with -----BEGIN CERTIFICATE-----",
                );
            }
        };
    let leaf = match x509_parser::parse_x509_certificate(&chain[0]) {
        Ok((_, leaf)) => leaf,
        Err(e) => {
            return Finding::fail(
                WHAT,
                format!("{}: the certificate does not parse: {e}", cert.display()),
                renew,
            );
        }
    };
    let private_key = match std::fs::read(key)
        .map_err(|e| e.to_string())
        .and_then(|b| PrivateKeyDer::from_pem_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(k) => k,
        Err(e) => {
            return Finding::fail(
                WHAT,
                format!("private key {}: {e}", key.display()),
                "give the PEM private key (PKCS#8, PKCS#1 or SEC1) of the certificate",
            );
        }
    };
    let spki = rustls::crypto::aws_lc_rs::sign::any_supported_type(&private_key)
        .ok()
        .and_then(|k| k.public_key().map(|p| p.as_ref().to_vec()));
    match spki {
        None => {
            return Finding::fail(
                WHAT,
                format!(
                    "private key {}: not a key type TLS can use (RSA, ECDSA P-256/P-384, Ed25519)",
                    key.display()
                ),
                "give the certificate's own private key",
            );
        }
        Some(spki) if spki != leaf.tbs_certificate.subject_pki.raw => {
            return Finding::fail(
                WHAT,
                format!(
                    "{} does not match the private key {} (their public keys differ)",
                    cert.display(),
                    key.display()
                ),
                "pair the certificate with the key it was issued for (tls.certificate_file / \
                 tls.private_key_file); `openssl x509 -noout -pubkey -in CERT` and `openssl \
                 pkey -pubout -in KEY` must print the same",
            );
        }
        Some(_) => {}
    }
    let now = chrono::Utc::now().timestamp();
    let not_before = leaf.validity().not_before.timestamp();
    let not_after = leaf.validity().not_after.timestamp();
    let day = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_else(|| t.to_string())
    };
    if now < not_before {
        return Finding::fail(
            WHAT,
            format!(
                "{} is not valid before {} (clients refuse it)",
                cert.display(),
                day(not_before)
            ),
            "check this host's clock; if it is right, use a certificate valid now",
        );
    }
    if now > not_after {
        return Finding::fail(
            WHAT,
            format!(
                "{} expired on {} (clients refuse it)",
                cert.display(),
                day(not_after)
            ),
            renew,
        );
    }
    let names = names(&leaf);
    let self_signed = leaf.tbs_certificate.subject == leaf.tbs_certificate.issuer;
    let days_left = (not_after - now) / 86_400;
    let mut detail = format!(
        "{}: {}valid until {} ({days_left} days), matches its key, names {}",
        cert.display(),
        if self_signed { "self-signed, " } else { "" },
        day(not_after),
        if names.is_empty() {
            "nothing".to_string()
        } else {
            names.join(", ")
        }
    );
    if days_left < 30 {
        return Finding::warn(WHAT, format!("{detail}; expires soon"), renew);
    }
    let host = hostname.trim().to_ascii_lowercase();
    if !host.is_empty() && !names.iter().any(|n| name_matches(n, &host)) {
        detail.push_str(&format!(
            "; smtp.hostname {host:?} is not among them, so clients that check the name refuse it"
        ));
        return Finding::warn(
            WHAT,
            detail,
            "use a certificate for the name clients connect to, or set smtp.hostname to it",
        );
    }
    Finding::ok(WHAT, detail)
}

/// DNS names and IP addresses of the subject alternative names (or the CN
/// when there are none).
fn names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let mut out = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => out.push(d.to_ascii_lowercase()),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => out.push(std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string()),
                    16 => {
                        let mut b = [0u8; 16];
                        b.copy_from_slice(ip);
                        out.push(std::net::Ipv6Addr::from(b).to_string());
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    if out.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(cn) = cn.as_str() {
                out.push(cn.to_ascii_lowercase());
            }
        }
    }
    out
}

fn name_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(base) => host
            .split_once('.')
            .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(base)),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// Complete a TLS handshake whatever the certificate (the probe only reads
/// a greeting to tell who holds a port; nothing is sent).
pub(super) async fn handshake_any(
    stream: tokio::net::TcpStream,
) -> Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let config = crate::tls::any_certificate_client();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").ok()?;
    connector.connect(name, stream).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(
        dir: &Path,
        cert: &rcgen::Certificate,
        key: &rcgen::KeyPair,
    ) -> (std::path::PathBuf, std::path::PathBuf) {
        let c = dir.join("cert.pem");
        let k = dir.join("key.pem");
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn good_expired_and_mismatched_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = write_pair(dir.path(), &cert, &key);
        let good = assess(&c, &k, false, "localhost");
        assert_eq!(good.level, super::super::Level::Ok, "{}", good.line());
        assert!(good.detail.contains("self-signed"), "{}", good.line());

        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&k, other.serialize_pem()).unwrap();
        let mismatched = assess(&c, &k, false, "localhost");
        assert_eq!(mismatched.level, super::super::Level::Fail);
        assert!(
            mismatched.detail.contains("does not match"),
            "{}",
            mismatched.line()
        );

        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let expired = params.self_signed(&key).unwrap();
        let (c, k) = write_pair(dir.path(), &expired, &key);
        let f = assess(&c, &k, false, "localhost");
        assert_eq!(f.level, super::super::Level::Fail);
        assert!(f.detail.contains("expired on 2021-01-01"), "{}", f.line());

        let cert = rcgen::CertificateParams::new(vec!["mail.example.com".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = write_pair(dir.path(), &cert, &key);
        let f = assess(&c, &k, false, "localhost");
        assert_eq!(f.level, super::super::Level::Warn, "{}", f.line());
        assert!(name_matches("*.example.com", "mail.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
    }
}
