//! TLS termination: certificates from PEM files, chosen per handshake by SNI,
//! replaceable at runtime (SIGHUP) without dropping connections.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::TlsConfig;

/// The certificates of one listener. The first is the default (no SNI, or
/// no certificate matches the name).
#[derive(Debug)]
pub struct CertStore {
    certs: ArcSwap<Vec<Arc<CertifiedKey>>>,
}

impl CertStore {
    pub fn load(tls: &TlsConfig) -> Result<CertStore, String> {
        Ok(CertStore {
            certs: ArcSwap::from_pointee(load_all(&tls.certificates)?),
        })
    }

    /// Re-reads every PEM file; on any error the old certificates stay.
    pub fn reload(&self, tls: &TlsConfig) -> Result<(), String> {
        let new = load_all(&tls.certificates)?;
        self.certs.store(Arc::new(new));
        Ok(())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_all(pairs: &[(PathBuf, PathBuf)]) -> Result<Vec<Arc<CertifiedKey>>, String> {
    let prov = provider();
    pairs
        .iter()
        .map(|(c, k)| load_pair(&prov, c, k).map(Arc::new))
        .collect()
}

fn load_pair(prov: &CryptoProvider, cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate found", cert.display()));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let signing = prov
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("{}: {e}", key.display()))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match()
        .map_err(|e| format!("{} does not match {}: {e}", key.display(), cert.display()))?;
    Ok(ck)
}

#[derive(Debug)]
struct SniResolver(Arc<CertStore>);

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let certs = self.0.certs.load();
        if let Some(name) = hello
            .server_name()
            .and_then(|n| ServerName::try_from(n.to_string()).ok())
        {
            for ck in certs.iter() {
                let Some(leaf) = ck.cert.first() else {
                    continue;
                };
                if let Ok(ee) = webpki::EndEntityCert::try_from(leaf)
                    && ee.verify_is_valid_for_subject_name(&name).is_ok()
                {
                    return Some(ck.clone());
                }
            }
        }
        certs.first().cloned()
    }
}

/// A rustls server config over `store`, offering h2 when `http2`.
pub fn server_config(store: Arc<CertStore>, http2: bool) -> Result<Arc<ServerConfig>, String> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver(store)));
    cfg.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(cfg))
}
