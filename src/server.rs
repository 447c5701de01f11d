//! Listeners, TLS handshakes, the accept loop with its connection cap, the
//! per-connection idle timeout, reload, and graceful drain.
//!
//! Shutdown follows mini-redis: a `watch` channel tells every accept loop and
//! connection to stop; each connection task holds a clone of an mpsc sender,
//! so when the receiver sees the channel closed, every connection is gone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::accesslog::{AccessLog, AccessLogOptions};
use crate::config::{Config, ConfigErrors, Limits, UpstreamTarget};
use crate::framing::{ConnShared, GuardedIo};
use crate::gateway::{ConnInfo, Gateway, Snapshot, SnapshotError};
use crate::metrics::Metrics;
use crate::security::Security;
use crate::tls::CertStore;
use crate::{admin, demo};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS for {addr}: {msg}")]
    Tls { addr: SocketAddr, msg: String },
    #[error("cannot open the log directory {dir}: {source}")]
    Log { dir: String, source: std::io::Error },
    #[error("built-in echo upstream: {0}")]
    Echo(std::io::Error),
    #[error("cannot start a worker thread: {0}")]
    Worker(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signal(std::io::Error),
    #[error("{0}")]
    Snapshot(String),
    #[error("store {path}: {msg}")]
    Store { path: String, msg: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("{0}")]
    Other(String),
}

/// Re-reads the config file and swaps it in; the old config keeps serving on
/// any error.
pub struct Reloader {
    pub gw: Arc<Gateway>,
    certs: Vec<(SocketAddr, Arc<CertStore>)>,
    listeners: Vec<ListenerRuntime>,
    /// The connection cap; resized when `limits.max_connections` changes.
    sem: Arc<Semaphore>,
    lock: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let _one_at_a_time = self.lock.lock().await;
        let r = self.try_reload().await;
        let label = if r.is_ok() { "success" } else { "failure" };
        self.gw
            .metrics
            .config_reloads
            .with_label_values(&[label])
            .inc();
        self.gw
            .metrics
            .rules_reloads
            .with_label_values(&[label])
            .inc();
        if r.is_ok() {
            let snap = self.gw.snapshot();
            self.gw.metrics.set_ruleset(
                snap.rules.as_ref().map(|r| r.hash()),
                snap.rules.as_ref().map_or(0, |r| r.len()),
            );
        }
        match &r {
            Ok(()) => tracing::info!("configuration reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "configuration reload rejected; the previous configuration keeps running")
            }
        }
        r
    }

    async fn try_reload(&self) -> Result<(), ReloadError> {
        let old = self.gw.snapshot();
        let path = old.cfg.path.clone();
        let cfg = tokio::task::spawn_blocking(move || crate::config::load(&path))
            .await
            .map_err(|e| ReloadError::Other(e.to_string()))??;
        let old_addrs: Vec<_> = old.cfg.listeners.iter().map(|l| l.addr).collect();
        let new_addrs: Vec<_> = cfg.listeners.iter().map(|l| l.addr).collect();
        let shape = |c: &Config| -> Vec<(SocketAddr, bool, bool)> {
            c.listeners
                .iter()
                .map(|l| (l.addr, l.tls.is_some(), l.http2))
                .collect()
        };
        if old_addrs != new_addrs
            || shape(&old.cfg) != shape(&cfg)
            || old.cfg.admin.listen != cfg.admin.listen
        {
            tracing::warn!(
                "listener changes (addresses, TLS on/off, http2, admin address) take effect only after a restart"
            );
        }
        // Load every certificate first, so a bad one changes nothing.
        let mut staged = Vec::new();
        for l in &cfg.listeners {
            if let (Some(tls), Some((_, store))) =
                (&l.tls, self.certs.iter().find(|(a, _)| *a == l.addr))
            {
                CertStore::load(tls).map_err(ReloadError::Other)?;
                staged.push((store.clone(), tls.clone()));
            }
        }
        // The store, its writer and the correlator are built once at start.
        let hooks = |c: &Config| c.webhooks.iter().map(|w| w.url.clone()).collect::<Vec<_>>();
        if old.cfg.store != cfg.store
            || old.cfg.audit.encryption_key != cfg.audit.encryption_key
            || old.cfg.audit.mask_fields != cfg.audit.mask_fields
            || old.cfg.audit.checkpoint_every != cfg.audit.checkpoint_every
            || old.cfg.audit.retention_days != cfg.audit.retention_days
            || old.cfg.incidents != cfg.incidents
            || old.cfg.auto_block != cfg.auto_block
            || old.cfg.instance_id != cfg.instance_id
            || hooks(&old.cfg) != hooks(&cfg)
        {
            tracing::warn!(
                "store, audit (except policies), behavior, notify and instance_id changes take effect only after a restart"
            );
        }
        if cfg.workers != self.gw.workers {
            tracing::warn!(
                running = self.gw.workers,
                configured = cfg.workers,
                "`workers` changes take effect only after a restart"
            );
        }
        // Compiling rules (Hyperscan) is CPU work: keep it off the control loop.
        let (echo, workers) = (self.gw.echo_addr, self.gw.workers);
        let snap = tokio::task::spawn_blocking(move || Snapshot::build(cfg, echo, workers))
            .await
            .map_err(|e| ReloadError::Other(e.to_string()))?
            .map_err(|e| match e {
                SnapshotError::Rules(c) => ReloadError::Config(c),
                SnapshotError::Other(m) => ReloadError::Other(m),
            })?;
        for (store, tls) in staged {
            store.reload(&tls).map_err(ReloadError::Other)?;
        }
        let (old_cap, new_cap) = (
            old.cfg.limits.max_connections,
            snap.cfg.limits.max_connections,
        );
        for l in &self.listeners {
            l.builders
                .store(Arc::new(Builders::new(&snap.cfg.limits, l.http2)));
        }
        self.gw.swap(snap);
        if new_cap > old_cap {
            self.sem.add_permits(new_cap - old_cap);
        } else if new_cap < old_cap {
            // Permits held by open connections are forgotten as they return.
            let forgotten = self.sem.forget_permits(old_cap - new_cap);
            if forgotten < old_cap - new_cap {
                let sem = self.sem.clone();
                let mut left = old_cap - new_cap - forgotten;
                tokio::spawn(async move {
                    while left > 0 {
                        match sem.acquire().await {
                            Ok(p) => {
                                p.forget();
                                left -= 1;
                            }
                            Err(_) => break,
                        }
                    }
                });
            }
        }
        Ok(())
    }
}

/// A started gateway: its bound addresses and the means to stop it.
pub struct Running {
    pub proxy_addrs: Vec<SocketAddr>,
    /// Tells the worker threads to stop their event loops (after the drain).
    exit: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    pub admin_addr: SocketAddr,
    pub reloader: Arc<Reloader>,
    shutdown: watch::Sender<bool>,
    conns_done: mpsc::Receiver<()>,
    conn_token: Option<mpsc::Sender<()>>,
    drain_timeout: Duration,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (up to
    /// `limits.drain_timeout`), then returns.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        // Logged only once the listeners have been told to stop, so the line
        // is true when it is read (tests and operators rely on it).
        tracing::info!("shutting down: no new connections, draining in-flight requests");
        self.conn_token.take();
        match tokio::time::timeout(self.drain_timeout, self.conns_done.recv()).await {
            Ok(_) => tracing::info!("all connections drained"),
            Err(_) => {
                tracing::warn!(timeout = ?self.drain_timeout, "drain timeout reached; closing remaining connections")
            }
        }
        let _ = self.exit.send(true);
        // Everything recorded so far is written, with a final checkpoint.
        if let Some(sec) = &self.reloader.gw.security {
            if let Some(n) = &sec.notifier {
                n.shutdown(Duration::from_secs(5)).await;
            }
            match sec.store.stop().await {
                Ok(r) => tracing::info!(audit_head = ?r.seq, "store closed"),
                Err(e) => tracing::error!(error = %e, "store did not close cleanly"),
            }
        }
        let threads = std::mem::take(&mut self.threads);
        // Write the access lines of the drained requests before exiting.
        let log = self.reloader.gw.access_log.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
            log.close();
        })
        .await;
    }
}

/// Opens the store, starts its writer and loads the blocked addresses.
fn open_security(cfg: &Config) -> Result<Arc<Security>, StartError> {
    use crate::store::{crypto::Keyring, query, writer};
    let path = cfg.store.path.display().to_string();
    let err = |e: crate::store::StoreError| StartError::Store {
        path: path.clone(),
        msg: e.to_string(),
    };
    let store = crate::store::open(&cfg.store.path, cfg.store.engine).map_err(err)?;
    let keyring = Arc::new(Keyring::load(&*store, cfg.audit.encryption_key).map_err(err)?);
    let now = crate::store::keys::now_micros();
    let blocks: Vec<_> = query::blocked_ips(&*store)
        .map_err(err)?
        .into_iter()
        .filter(|b| !b.expired(now))
        .collect();
    let blocklist = Arc::new(crate::security::Blocklist::new(blocks));
    let mut correlator = crate::incidents::Correlator::new(
        cfg.incidents.clone(),
        cfg.auto_block.clone(),
        cfg.auto_block.exempt.clone(),
    );
    correlator.restore(crate::incidents::open_incidents(&*store).map_err(err)?);
    let correlator = Arc::new(std::sync::Mutex::new(correlator));
    let notifier = (!cfg.webhooks.is_empty())
        .then(|| crate::notify::Notifier::start(cfg.webhooks.clone(), 1024));
    let observer = crate::security::IncidentObserver {
        correlator: correlator.clone(),
        blocklist: blocklist.clone(),
        notifier: notifier.clone(),
    };
    let handle = writer::start(
        store,
        keyring,
        writer::WriterConfig {
            sync: cfg.store.sync,
            on_error: cfg.store.on_error,
            queue: cfg.store.queue,
            instance_id: cfg.instance_id.clone(),
            checkpoint_every: cfg.audit.checkpoint_every,
            masker: {
                let m = crate::privacy::Masker::new(&cfg.audit.mask_fields);
                Arc::new(move |v: &mut serde_json::Value| m.mask_json(v))
            },
            observer: Some(Box::new(observer)),
        },
    )
    .map_err(err)?;
    // Retention: at start (in the writer, between batches), then hourly.
    {
        let h = handle.clone();
        let days = u64::from(cfg.audit.retention_days);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(3600));
            loop {
                every.tick().await;
                let cutoff = crate::store::keys::now_micros()
                    .saturating_sub(days.saturating_mul(86_400_000_000));
                match h.sweep(cutoff).await {
                    Ok(_) => {}
                    Err(crate::store::writer::WriteError::Stopped) => break,
                    Err(e) => tracing::error!(error = %e, "retention sweep failed"),
                }
            }
        });
    }
    tracing::info!(
        path = %cfg.store.path.display(),
        engine = cfg.store.engine.name(),
        sync = ?cfg.store.sync,
        blocked_ips = blocklist.list(crate::store::keys::now_micros()).len(),
        "store opened"
    );
    Ok(Arc::new(Security {
        store: handle,
        blocklist,
        instance_id: cfg.instance_id.clone(),
        correlator,
        notifier,
    }))
}

/// Binds every listener and starts serving.
pub async fn start(cfg: Config) -> Result<Running, StartError> {
    let metrics = Arc::new(Metrics::new());
    let needs_echo = cfg.upstream.target == UpstreamTarget::BuiltinEcho
        || cfg
            .routes
            .iter()
            .any(|r| r.target == UpstreamTarget::BuiltinEcho);
    let echo_addr = if needs_echo {
        let a = demo::start_echo("127.0.0.1:0".parse().expect("constant address parses"))
            .await
            .map_err(StartError::Echo)?;
        tracing::info!(addr = %a, "built-in echo upstream started");
        Some(a)
    } else {
        None
    };
    let access_log = if cfg.logging.access_log {
        AccessLog::start(
            AccessLogOptions {
                dir: cfg.logging.dir.clone(),
                to_stdout: true,
                max_file_bytes: cfg.logging.max_file_bytes,
                max_files: cfg.logging.max_files,
            },
            metrics.access_log_dropped.clone(),
        )
        .map_err(|e| StartError::Log {
            dir: cfg.logging.dir.display().to_string(),
            source: e,
        })?
    } else {
        AccessLog::disabled(metrics.access_log_dropped.clone())
    };

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (conn_token, conns_done) = mpsc::channel::<()>(1);
    let sem = Arc::new(Semaphore::new(cfg.limits.max_connections));
    let drain_timeout = cfg.limits.drain_timeout;
    let listeners = cfg.listeners.clone();
    let admin_listen = cfg.admin.listen;
    let limits = cfg.limits.clone();
    let workers = cfg.workers;
    let security = open_security(&cfg)?;
    let snapshot = Snapshot::build(cfg, echo_addr, workers)
        .map_err(|e| StartError::Snapshot(e.to_string()))?;
    metrics.set_ruleset(
        snapshot.rules.as_ref().map(|r| r.hash()),
        snapshot.rules.as_ref().map_or(0, |r| r.len()),
    );
    let gw = Arc::new(Gateway::new(
        snapshot,
        metrics,
        access_log,
        echo_addr,
        Some(security),
    ));

    // Bind every listener once per worker with SO_REUSEPORT (the kernel
    // spreads connections across the sockets); port 0 is resolved by the
    // first socket and reused by the others.
    let mut proxy_addrs = Vec::new();
    let mut certs = Vec::new();
    let mut per_worker: Vec<Vec<(std::net::TcpListener, usize)>> =
        (0..workers).map(|_| Vec::new()).collect();
    let mut listener_ctx = Vec::new();
    for (li, l) in listeners.iter().enumerate() {
        let bind_err = |e| StartError::Bind {
            addr: l.addr,
            source: e,
        };
        let mut addr = l.addr;
        for (w, socks) in per_worker.iter_mut().enumerate() {
            let sock = bind_reuseport(addr).map_err(bind_err)?;
            if w == 0 {
                addr = sock.local_addr().map_err(bind_err)?;
                proxy_addrs.push(addr);
            }
            socks.push((sock.into_std().map_err(bind_err)?, li));
        }
        let acceptor = match &l.tls {
            Some(t) => {
                let store = Arc::new(
                    CertStore::load(t).map_err(|msg| StartError::Tls { addr: l.addr, msg })?,
                );
                certs.push((l.addr, store.clone()));
                let sc = crate::tls::server_config(store, l.http2)
                    .map_err(|msg| StartError::Tls { addr: l.addr, msg })?;
                Some(TlsAcceptor::from(sc))
            }
            None => None,
        };
        let builders = Arc::new(ArcSwap::from_pointee(Builders::new(&limits, l.http2)));
        listener_ctx.push((builders, acceptor, addr, l.tls.is_some()));
    }
    let admin_listener = TcpListener::bind(admin_listen)
        .await
        .map_err(|e| StartError::Bind {
            addr: admin_listen,
            source: e,
        })?;
    let admin_addr = admin_listener.local_addr().map_err(|e| StartError::Bind {
        addr: admin_listen,
        source: e,
    })?;

    let (exit_tx, exit_rx) = watch::channel(false);
    // Each worker reports once its listeners are registered, so "listening"
    // is logged only when every worker is really serving.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let mut threads = Vec::new();
    for (w, socks) in per_worker.into_iter().enumerate() {
        let mut loops = Vec::new();
        for (sock, li) in socks {
            let (builders, acceptor, _, _) = &listener_ctx[li];
            loops.push((
                sock,
                AcceptCtx {
                    worker: w,
                    gw: gw.clone(),
                    builders: builders.clone(),
                    acceptor: acceptor.clone(),
                    sem: sem.clone(),
                    shutdown: shutdown_rx.clone(),
                    token: conn_token.clone(),
                },
            ));
        }
        let exit = exit_rx.clone();
        let ready = ready_tx.clone();
        let t = std::thread::Builder::new()
            .name(format!("worker-{w}"))
            .spawn(move || worker_main(loops, exit, ready))
            .map_err(StartError::Worker)?;
        threads.push(t);
    }
    drop(ready_tx);
    for _ in 0..workers {
        if ready_rx.recv_timeout(Duration::from_secs(30)).is_err() {
            return Err(StartError::Worker(std::io::Error::other(
                "a worker thread did not start",
            )));
        }
    }
    for (_, _, addr, tls) in &listener_ctx {
        tracing::info!(addr = %addr, tls = *tls, workers, "proxy listening");
    }
    let runtimes: Vec<ListenerRuntime> = listeners
        .iter()
        .zip(&listener_ctx)
        .map(|(l, (builders, _, _, _))| ListenerRuntime {
            http2: l.http2,
            builders: builders.clone(),
        })
        .collect();
    let reloader = Arc::new(Reloader {
        gw: gw.clone(),
        certs,
        listeners: runtimes,
        sem: sem.clone(),
        lock: tokio::sync::Mutex::new(()),
    });
    tracing::info!(addr = %admin_addr, "admin listening");
    tokio::spawn(admin::serve(
        admin_listener,
        reloader.clone(),
        shutdown_rx.clone(),
    ));

    Ok(Running {
        proxy_addrs,
        admin_addr,
        reloader,
        exit: exit_tx,
        threads,
        shutdown: shutdown_tx,
        conns_done,
        conn_token: Some(conn_token),
        drain_timeout,
    })
}

/// Runs until SIGTERM/SIGINT; SIGHUP reloads the configuration.
pub async fn run(cfg: Config) -> Result<(), StartError> {
    use tokio::signal::unix::{SignalKind, signal};
    // Handlers first: a SIGHUP that arrives as soon as the listeners are up
    // (e.g. `systemctl reload` right after start) must reload, not kill.
    let mut hup = signal(SignalKind::hangup()).map_err(StartError::Signal)?;
    let mut term = signal(SignalKind::terminate()).map_err(StartError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(StartError::Signal)?;
    let running = start(cfg).await?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading configuration");
                let _ = running.reloader.reload().await;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    running.shutdown().await;
    Ok(())
}

/// What of a listener a reload can change: its hyper connection settings.
struct ListenerRuntime {
    http2: bool,
    builders: Arc<ArcSwap<Builders>>,
}

/// hyper connection builders for one listener, rebuilt on reload.
struct Builders {
    /// HTTP/1.1 and prior-knowledge h2c (clear text).
    auto: auto::Builder<TokioExecutor>,
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
}

impl Builders {
    fn new(limits: &Limits, http2: bool) -> Builders {
        let make = || {
            let mut b = auto::Builder::new(TokioExecutor::new());
            b.http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(limits.max_header_bytes)
                .max_headers(limits.max_headers)
                .keep_alive(true);
            b.http2()
                .timer(TokioTimer::new())
                .max_header_list_size(limits.max_header_bytes as u32)
                .max_concurrent_streams(128)
                .max_pending_accept_reset_streams(64)
                .max_local_error_reset_streams(64)
                .keep_alive_interval(None);
            b
        };
        let auto = if http2 { make() } else { make().http1_only() };
        Builders {
            auto,
            http1: make().http1_only(),
            http2: make().http2_only(),
        }
    }
}

struct AcceptCtx {
    worker: usize,
    gw: Arc<Gateway>,
    builders: Arc<ArcSwap<Builders>>,
    acceptor: Option<TlsAcceptor>,
    sem: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
    token: mpsc::Sender<()>,
}

/// One worker thread: a single-threaded event loop running one accept loop
/// per listener; connections accepted here are served here.
fn worker_main(
    loops: Vec<(std::net::TcpListener, AcceptCtx)>,
    mut exit: watch::Receiver<bool>,
    ready: std::sync::mpsc::Sender<()>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a worker event loop");
            return;
        }
    };
    rt.block_on(async move {
        for (sock, ctx) in loops {
            match TcpListener::from_std(sock) {
                Ok(l) => {
                    tokio::spawn(accept_loop(l, ctx));
                }
                Err(e) => tracing::error!(error = %e, "cannot register a listener"),
            }
        }
        let _ = ready.send(());
        // Runs until the drain is over; then the loop and its tasks stop.
        let _ = exit.wait_for(|v| *v).await;
    });
}

fn bind_reuseport(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.set_reuseport(true)?;
    sock.bind(addr)?;
    sock.listen(1024)
}

async fn accept_loop(listener: TcpListener, mut ctx: AcceptCtx) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = ctx.shutdown.changed() => break,
        };
        let (sock, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = ctx.sem.clone().try_acquire_owned() else {
            ctx.gw.metrics.connections_refused.inc();
            drop(sock);
            continue;
        };
        let _ = sock.set_nodelay(true);
        let gw = ctx.gw.clone();
        // Connection settings come from the configuration current at accept.
        let builders = ctx.builders.load_full();
        let limits = ctx.gw.snapshot().cfg.limits.clone();
        let acceptor = ctx.acceptor.clone();
        let shutdown = ctx.shutdown.clone();
        let token = ctx.token.clone();
        let worker = ctx.worker;
        tokio::spawn(async move {
            gw.metrics.open_connections.inc();
            handle_conn(
                worker,
                sock,
                peer,
                gw.clone(),
                builders,
                limits,
                acceptor,
                shutdown,
            )
            .await;
            gw.metrics.open_connections.dec();
            drop(permit);
            drop(token);
        });
    }
}

#[allow(clippy::too_many_arguments)]
async fn handle_conn(
    worker: usize,
    sock: TcpStream,
    peer: SocketAddr,
    gw: Arc<Gateway>,
    builders: Arc<Builders>,
    limits: Limits,
    acceptor: Option<TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
) {
    match acceptor {
        None => {
            serve(
                worker,
                sock,
                peer,
                false,
                &builders.auto,
                true,
                gw,
                &limits,
                shutdown,
            )
            .await
        }
        Some(acc) => {
            let tls = match tokio::time::timeout(limits.header_read_timeout, acc.accept(sock)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let builder = if h2 { &builders.http2 } else { &builders.http1 };
            serve(worker, tls, peer, true, builder, !h2, gw, &limits, shutdown).await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve<I>(
    worker: usize,
    io: I,
    peer: SocketAddr,
    is_tls: bool,
    builder: &auto::Builder<TokioExecutor>,
    track_http1: bool,
    gw: Arc<Gateway>,
    limits: &Limits,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let metrics = gw.metrics.clone();
    let shared = ConnShared::new();
    let io = GuardedIo::new(io, shared.clone(), limits.max_header_bytes, track_http1);
    let info = Arc::new(ConnInfo {
        worker,
        peer,
        tls: is_tls,
        shared: shared.clone(),
        tracked: track_http1,
    });
    let svc = service_fn(move |req| gw.clone().handle(info.clone(), req));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let keepalive = limits.keepalive_timeout;
    let mut closing = false;
    if *shutdown.borrow() {
        conn.as_mut().graceful_shutdown();
        closing = true;
    }
    loop {
        let idle = shared.idle_for();
        let wait = if closing {
            Duration::from_secs(3600)
        } else {
            keepalive
                .saturating_sub(idle)
                .max(Duration::from_millis(50))
        };
        tokio::select! {
            // The connection first: it is what wakes this task almost always.
            biased;
            res = conn.as_mut() => {
                if let Err(e) = res {
                    // hyper answers malformed heads itself (400/431) or closes on
                    // a header timeout; count those refusals like ours.
                    if let Some(reason) = e.downcast_ref::<hyper::Error>().and_then(hyper_refusal) {
                        metrics.rejected.with_label_values(&[reason]).inc();
                    }
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = shutdown.changed(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tokio::time::sleep(wait), if !closing => {
                if shared.in_flight.load(std::sync::atomic::Ordering::Relaxed) == 0 && shared.idle_for() >= keepalive {
                    tracing::debug!(%peer, "idle keep-alive timeout");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// The refusal reason for a connection-level hyper error, if it is one.
fn hyper_refusal(e: &hyper::Error) -> Option<&'static str> {
    if e.is_parse_too_large() {
        Some("header_too_large")
    } else if e.is_parse() {
        Some("malformed_request")
    } else if e.is_timeout() {
        Some("header_read_timeout")
    } else {
        None
    }
}
