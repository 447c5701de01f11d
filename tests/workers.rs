//! The worker model: `workers: N` starts N event-loop threads that share
//! the listening port (SO_REUSEPORT) and all serve requests.

mod common;
use common::*;

fn worker_threads(gw: &Gateway) -> usize {
    let dir = format!("/proc/{}/task", gw.pid());
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path().join("comm")).ok())
        .filter(|c| c.trim_end().starts_with("worker-"))
        .count()
}

#[test]
fn configured_workers_share_the_port_and_serve() {
    let up = Upstream::start();
    let gw = Gateway::start(&format!(
        "workers: 3\nupstream:\n  url: \"http://{}\"\n",
        up.addr
    ));
    assert_eq!(worker_threads(&gw), 3);
    // Many fresh connections: the kernel spreads them over the three sockets,
    // and whichever worker accepts one must serve it completely.
    for i in 0..30 {
        let req = format!("GET /n{i} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
        assert_eq!(
            status_of(&raw_exchange(gw.proxy, req.as_bytes())),
            Some(200)
        );
    }
    assert_eq!(up.requests().len(), 30);
}

#[test]
fn workers_must_be_auto_or_a_positive_number() {
    let dir = TempDir::new("workers");
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "workers: 0\nupstream:\n  url: builtin:echo\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml:1:10: `workers`"), "{err}");
    std::fs::write(&path, "workers: auto\nupstream:\n  url: builtin:echo\n").unwrap();
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(ok.success());
}
