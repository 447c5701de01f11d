//! TLS termination: HTTPS/1.1, ALPN h2, SNI certificate choice, and
//! certificate reload on SIGHUP (accepted and rejected).

mod common;
use common::*;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A freshly generated self-signed certificate for one name.
struct Cert {
    der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

fn gen_cert(name: &str) -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("rcgen");
    Cert {
        der: ck.cert.der().clone(),
        cert_pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
    }
}

fn write_pair(dir: &std::path::Path, stem: &str, c: &Cert) {
    std::fs::write(dir.join(format!("{stem}.pem")), &c.cert_pem).unwrap();
    std::fs::write(dir.join(format!("{stem}.key")), &c.key_pem).unwrap();
}

const TLS_LISTEN: &str = "listen:\n  - addr: \"127.0.0.1:0\"\n    tls:\n      certificates:\n        - cert: a.pem\n          key: a.key\n        - cert: b.pem\n          key: b.key\n";

/// A gateway with one TLS listener serving a.test (default) and b.test.
fn tls_gateway(up: &Upstream, a: &Cert, b: &Cert) -> Gateway {
    let dir = TempDir::new("tls");
    write_pair(dir.path(), "a", a);
    write_pair(dir.path(), "b", b);
    Gateway::start_in(
        dir,
        &format!("{TLS_LISTEN}upstream:\n  url: \"http://{}\"\n", up.addr),
    )
}

/// Accepts any server certificate (the tests compare the presented
/// certificate byte for byte instead) but still checks the handshake
/// signatures, so the server must hold the key of what it presents.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn connect(addr: SocketAddr, sni: &str, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let prov = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(prov.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(prov)))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    tokio::time::timeout(
        READY_TIMEOUT,
        TlsConnector::from(Arc::new(cfg)).connect(name, tcp),
    )
    .await
    .expect("TLS handshake finished in time")
    .expect("TLS handshake")
}

fn peer_leaf(s: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    s.get_ref().1.peer_certificates().expect("peer certificate")[0].clone()
}

type H1Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn h1_client(s: TlsStream<TcpStream>) -> H1Sender {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// One GET on a kept-alive HTTP/1.1 connection: (status, body).
async fn h1_get(sender: &mut H1Sender, host: &str, path: &str) -> (u16, Bytes) {
    let req = Request::get(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let fut = async {
        sender.ready().await.unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    };
    tokio::time::timeout(READY_TIMEOUT, fut)
        .await
        .expect("response in time")
}

#[test]
fn https_http1_request_is_proxied_with_forwarded_proto_https() {
    let (a, b) = (gen_cert("a.test"), gen_cert("b.test"));
    let up = Upstream::start();
    let gw = tls_gateway(&up, &a, &b);
    block_on(async {
        let s = connect(gw.proxy, "a.test", &[b"http/1.1"]).await;
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let mut c = h1_client(s).await;
        let (status, _) = h1_get(&mut c, "a.test", "/over-tls?q=1").await;
        assert_eq!(status, 200);
    });
    let seen = up.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].uri, "/over-tls?q=1");
    assert_eq!(
        seen[0].header("x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert!(
        seen[0]
            .header("forwarded")
            .is_some_and(|f| f.contains("proto=https")),
        "{seen:?}"
    );
}

#[test]
fn alpn_h2_negotiates_http2_and_upstream_gets_http1_with_host() {
    let (a, b) = (gen_cert("a.test"), gen_cert("b.test"));
    let up = Upstream::start();
    let gw = tls_gateway(&up, &a, &b);
    block_on(async {
        let s = connect(gw.proxy, "a.test", &[b"h2", b"http/1.1"]).await;
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        let req = Request::get("https://a.test/h2-path?x=1")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = tokio::time::timeout(READY_TIMEOUT, sender.send_request(req))
            .await
            .expect("response in time")
            .expect("h2 response");
        assert_eq!(resp.version(), Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().contains_key("x-request-id"));
        resp.into_body().collect().await.unwrap();
    });
    let seen = up.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].version, "HTTP/1.1");
    assert_eq!(seen[0].uri, "/h2-path?x=1");
    assert_eq!(seen[0].header("host").as_deref(), Some("a.test"));
    assert_eq!(seen[0].header_count("host"), 1);
    assert_eq!(
        seen[0].header("x-forwarded-proto").as_deref(),
        Some("https")
    );
}

#[test]
fn sni_selects_the_matching_certificate() {
    let (a, b) = (gen_cert("a.test"), gen_cert("b.test"));
    assert_ne!(a.der, b.der);
    let up = Upstream::start();
    let gw = tls_gateway(&up, &a, &b);
    block_on(async {
        let sb = connect(gw.proxy, "b.test", &[b"http/1.1"]).await;
        assert!(
            peer_leaf(&sb) == b.der,
            "b.test must get the b.test certificate"
        );
        let sa = connect(gw.proxy, "a.test", &[b"http/1.1"]).await;
        assert!(
            peer_leaf(&sa) == a.der,
            "a.test must get the a.test certificate"
        );
        // An unknown name gets the first (default) certificate.
        let so = connect(gw.proxy, "other.test", &[b"http/1.1"]).await;
        assert!(peer_leaf(&so) == a.der, "unknown names get the default");
        // And the b.test connection really serves requests.
        let mut c = h1_client(sb).await;
        assert_eq!(h1_get(&mut c, "b.test", "/sni").await.0, 200);
    });
    assert_eq!(up.requests()[0].header("host").as_deref(), Some("b.test"));
}

#[test]
fn sighup_reloads_certificates_without_dropping_connections() {
    let (a, b) = (gen_cert("a.test"), gen_cert("b.test"));
    let up = Upstream::start();
    let gw = tls_gateway(&up, &a, &b);
    block_on(async {
        let old = connect(gw.proxy, "a.test", &[b"http/1.1"]).await;
        assert!(peer_leaf(&old) == a.der);
        let mut old_conn = h1_client(old).await;
        assert_eq!(h1_get(&mut old_conn, "a.test", "/before").await.0, 200);

        let a2 = gen_cert("a.test");
        assert_ne!(a2.der, a.der);
        write_pair(gw.dir.path(), "a", &a2);
        gw.signal("HUP");
        gw.wait_log("configuration reloaded");

        let fresh = connect(gw.proxy, "a.test", &[b"http/1.1"]).await;
        assert!(
            peer_leaf(&fresh) == a2.der,
            "a new handshake presents the new certificate"
        );
        // b.test is unchanged.
        let sb = connect(gw.proxy, "b.test", &[b"http/1.1"]).await;
        assert!(peer_leaf(&sb) == b.der);
        // The connection opened before the reload keeps working.
        assert_eq!(h1_get(&mut old_conn, "a.test", "/after").await.0, 200);
        let mut fresh_conn = h1_client(fresh).await;
        assert_eq!(h1_get(&mut fresh_conn, "a.test", "/fresh").await.0, 200);
    });
    let uris: Vec<String> = up.requests().into_iter().map(|s| s.uri).collect();
    assert_eq!(uris, ["/before", "/after", "/fresh"]);
}

#[test]
fn reload_with_a_broken_certificate_is_rejected_and_the_old_one_keeps_serving() {
    let (a, b) = (gen_cert("a.test"), gen_cert("b.test"));
    let up = Upstream::start();
    let gw = tls_gateway(&up, &a, &b);
    // A valid new b.test pair next to a broken a.test file: nothing may change.
    let b2 = gen_cert("b.test");
    write_pair(gw.dir.path(), "b", &b2);
    std::fs::write(
        gw.dir.path().join("a.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    gw.signal("HUP");
    let line = gw.wait_log("reload rejected");
    assert!(line.contains("a.pem"), "the error names the file: {line}");
    assert!(
        !gw.stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("configuration reloaded")),
        "a rejected reload must not be reported as done"
    );
    block_on(async {
        let sa = connect(gw.proxy, "a.test", &[b"http/1.1"]).await;
        assert!(
            peer_leaf(&sa) == a.der,
            "the old a.test certificate keeps serving"
        );
        let sb = connect(gw.proxy, "b.test", &[b"http/1.1"]).await;
        assert!(
            peer_leaf(&sb) == b.der,
            "the staged b.test certificate was not applied"
        );
        let mut c = h1_client(sa).await;
        assert_eq!(h1_get(&mut c, "a.test", "/still").await.0, 200);
    });
}
