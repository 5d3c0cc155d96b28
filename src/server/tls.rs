//! Builds the rustls server configuration from `tls_server_config` of the
//! web configuration file, with exporter-toolkit's meaning of each key:
//! `client_auth_type` as Go's `tls.ClientAuthType`, `cipher_suites` for
//! TLS 1.2 only (TLS 1.3 suites are always on, as in Go), versions TLS12
//! and TLS13 (rustls has no older ones). Certificates are read when the
//! configuration is (re)loaded; connections accepted afterwards use them.
//! Owns no sockets: `server::http` runs the handshake. Also builds the
//! query role's client configuration for its endpoints
//! ([`client_config`]).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};

use crate::web_config::{ClientAuth, TlsServerConfig, TlsVersion};

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file that cannot be read or holds nothing usable.
    #[error("reading {what} {path}: {source}")]
    Pem {
        /// `cert_file`, `key_file` or `client_ca_file`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The PEM error.
        source: rustls::pki_types::pem::Error,
    },
    /// A setting rustls does not offer.
    #[error("tls_server_config.{key}: {value:?} is not supported by rustls")]
    Unsupported {
        /// The key.
        key: &'static str,
        /// The value.
        value: String,
    },
    /// rustls refused the certificate, key or CA.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA cannot verify anything.
    #[error("client_ca_file: {0}")]
    Verifier(String),
}

/// The rustls configuration for `t`.
///
/// # Errors
/// A file that cannot be read, a key that does not match, a cipher suite
/// or curve rustls lacks.
pub fn server_config(t: &TlsServerConfig) -> Result<Arc<ServerConfig>, TlsError> {
    // ring, not aws-lc-rs (whose build needs cmake): deprecated in 0.23.48
    // only for lacking the post-quantum key exchange.
    #[allow(deprecated)]
    let base = rustls::crypto::ring::default_provider();
    let mut suites: Vec<_> = base
        .cipher_suites
        .iter()
        .filter(|s| s.tls13().is_some())
        .copied()
        .collect();
    if t.cipher_suites.is_empty() {
        suites.extend(base.cipher_suites.iter().filter(|s| s.tls13().is_none()));
    } else {
        for name in &t.cipher_suites {
            // Go names some suites with and some without the `_SHA256`.
            let want = name.trim_end_matches("_SHA256");
            let found = base.cipher_suites.iter().find(|s| {
                s.tls13().is_none()
                    && format!("{:?}", s.suite()).trim_end_matches("_SHA256") == want
            });
            match found {
                Some(s) => suites.push(*s),
                None => {
                    return Err(TlsError::Unsupported {
                        key: "cipher_suites",
                        value: name.clone(),
                    })
                }
            }
        }
    }
    let kx_groups = if t.curve_preferences.is_empty() {
        base.kx_groups.clone()
    } else {
        let mut out = Vec::new();
        for c in &t.curve_preferences {
            let group = match c.as_str() {
                "X25519" => rustls::crypto::ring::kx_group::X25519,
                "CurveP256" => rustls::crypto::ring::kx_group::SECP256R1,
                "CurveP384" => rustls::crypto::ring::kx_group::SECP384R1,
                _ => {
                    return Err(TlsError::Unsupported {
                        key: "curve_preferences",
                        value: c.clone(),
                    })
                }
            };
            out.push(group);
        }
        out
    };
    let provider = Arc::new(CryptoProvider {
        cipher_suites: suites,
        kx_groups,
        ..base
    });
    let lo = t.min_version.unwrap_or(TlsVersion::TLS12);
    let hi = t.max_version.unwrap_or(TlsVersion::TLS13);
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::TLS12, &rustls::version::TLS12),
        (TlsVersion::TLS13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| lo <= *v && *v <= hi)
    .map(|(_, p)| p)
    .collect();

    let pem = |what: &'static str, path: &str| {
        let path = PathBuf::from(path);
        move |source| TlsError::Pem { what, path, source }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&t.cert_file)
        .map_err(pem("cert_file", &t.cert_file))?
        .collect::<Result<_, _>>()
        .map_err(pem("cert_file", &t.cert_file))?;
    let key = PrivateKeyDer::from_pem_file(&t.key_file).map_err(pem("key_file", &t.key_file))?;

    let algs = provider.signature_verification_algorithms;
    let client_auth = t.client_auth_type.unwrap_or_default();
    let verifier: Arc<dyn ClientCertVerifier> = match client_auth {
        ClientAuth::NoClientCert => WebPkiClientVerifier::no_client_auth(),
        ClientAuth::RequestClientCert => Arc::new(AnyClientCert {
            mandatory: false,
            algs,
        }),
        ClientAuth::RequireAnyClientCert => Arc::new(AnyClientCert {
            mandatory: true,
            algs,
        }),
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(&t.client_ca_file)
                .map_err(pem("client_ca_file", &t.client_ca_file))?
            {
                roots
                    .add(c.map_err(pem("client_ca_file", &t.client_ca_file))?)
                    .map_err(TlsError::Rustls)?;
            }
            let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let b = if client_auth == ClientAuth::VerifyClientCertIfGiven {
                b.allow_unauthenticated()
            } else {
                b
            };
            b.build().map_err(|e| TlsError::Verifier(e.to_string()))?
        }
    };
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The query role's TLS client configuration: endpoints' certificates
/// verified against the CAs of `ca_file`, or the system's roots without
/// it; `client` (certificate and key files) presented to endpoints that
/// ask for a client certificate.
///
/// # Errors
/// A file that cannot be read or holds nothing usable, no usable roots, a
/// key that does not match its certificate.
pub fn client_config(
    ca_file: Option<&std::path::Path>,
    client: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<rustls::ClientConfig, TlsError> {
    let pem = |what: &'static str, path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Pem { what, path, source }
    };
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(ca) => {
            for c in CertificateDer::pem_file_iter(ca).map_err(pem("--endpoint.tls-ca-file", ca))? {
                roots.add(c.map_err(pem("--endpoint.tls-ca-file", ca))?)?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                // A system root rustls cannot parse is skipped, as the
                // system's own TLS libraries skip it.
                let _ = roots.add(c);
            }
        }
    }
    if roots.is_empty() {
        return Err(TlsError::Verifier(
            "no CA certificate to verify endpoints with (--endpoint.tls-ca-file)".into(),
        ));
    }
    // ring, as the server side.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    // No ALPN here: the HTTPS connector sets it (http/1.1) itself.
    let cfg = match client {
        Some((cert, key)) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(pem("--endpoint.tls-cert-file", cert))?
                .collect::<Result<_, _>>()
                .map_err(pem("--endpoint.tls-cert-file", cert))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(pem("--endpoint.tls-key-file", key))?;
            b.with_client_auth_cert(certs, key)?
        }
        None => b.with_no_client_auth(),
    };
    Ok(cfg)
}

/// Go's `RequestClientCert` and `RequireAnyClientCert`: a client
/// certificate is asked for (and with the latter required) but not
/// checked against any CA; only the handshake signature is verified.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &std::path::Path) -> TlsServerConfig {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let p = |f: &str| dir.join(f).display().to_string();
        std::fs::write(p("c.pem"), cert.pem()).unwrap();
        std::fs::write(p("k.pem"), key.serialize_pem()).unwrap();
        TlsServerConfig {
            cert_file: p("c.pem"),
            key_file: p("k.pem"),
            client_ca_file: p("c.pem"),
            ..TlsServerConfig::default()
        }
    }

    #[test]
    #[allow(deprecated)]
    fn server_config_every_client_auth_type_builds() {
        let dir = tempfile::tempdir().unwrap();
        let base = files(dir.path());
        for auth in [
            ClientAuth::NoClientCert,
            ClientAuth::RequestClientCert,
            ClientAuth::RequireAnyClientCert,
            ClientAuth::VerifyClientCertIfGiven,
            ClientAuth::RequireAndVerifyClientCert,
        ] {
            let t = TlsServerConfig {
                client_auth_type: Some(auth),
                ..base.clone()
            };
            let cfg = server_config(&t).unwrap_or_else(|e| panic!("{auth:?}: {e}"));
            assert_eq!(cfg.alpn_protocols, vec![b"http/1.1".to_vec()]);
        }
        let any = AnyClientCert {
            mandatory: true,
            algs: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        };
        assert!(any.offer_client_auth() && any.client_auth_mandatory());
        assert!(!any.supported_verify_schemes().is_empty());
    }

    #[test]
    fn server_config_versions_suites_and_curves() {
        let dir = tempfile::tempdir().unwrap();
        let base = files(dir.path());
        let t = TlsServerConfig {
            min_version: Some(TlsVersion::TLS13),
            curve_preferences: vec!["X25519".into()],
            cipher_suites: vec!["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into()],
            ..base.clone()
        };
        assert!(server_config(&t).is_ok());
        for (t, what) in [
            (
                TlsServerConfig {
                    cipher_suites: vec!["TLS_RSA_WITH_RC4_128_SHA".into()],
                    ..base.clone()
                },
                "TLS_RSA_WITH_RC4_128_SHA",
            ),
            (
                TlsServerConfig {
                    curve_preferences: vec!["CurveP521".into()],
                    ..base.clone()
                },
                "CurveP521",
            ),
            (
                TlsServerConfig {
                    key_file: dir.path().join("missing.pem").display().to_string(),
                    ..base.clone()
                },
                "missing.pem",
            ),
        ] {
            let e = server_config(&t).unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        }
    }
}
