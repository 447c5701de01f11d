//! Store writer cost: time per acknowledged audit record, by engine and
//! `store.sync` mode, with 64 producers waiting at once (what a busy
//! gateway does: the writer's group commit turns their records into one
//! batch and one flush). Each iteration asserts that every record was
//! acknowledged with a sequence number and the chain verifies at the end,
//! so a bench that stopped writing fails instead of looking fast.
//!
//!     cargo bench --bench store
//!
//! Compare `strict` with `batched` on the same engine in the same run: the
//! ratio is the price of "durable before acknowledged".

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis::store::crypto::Keyring;
use portcullis::store::model::AuditIn;
use portcullis::store::writer::{self, OnError, StoreHandle, SyncMode, WriterConfig};
use portcullis::store::{Engine, chain, open};

const PRODUCERS: usize = 64;

fn start(dir: &std::path::Path, engine: Engine, sync: SyncMode) -> StoreHandle {
    let store = open(dir, engine).expect("open store");
    let ring = Arc::new(Keyring::load(&*store, None).expect("keyring"));
    writer::start(
        store,
        ring,
        WriterConfig {
            sync,
            on_error: OnError::FailOpen,
            queue: 65_536,
            instance_id: "bench".into(),
            checkpoint_every: 1000,
            masker: Arc::new(|_| {}),
            observer: None,
        },
    )
    .expect("writer")
}

fn record(i: usize) -> AuditIn {
    AuditIn {
        category: "admin_action".into(),
        action: "DELETE /api/admin/users".into(),
        outcome: "success".into(),
        user: Some(format!("user-{}", i % 100)),
        ip: Some("203.0.113.9".parse().expect("ip")),
        resource_type: Some("users".into()),
        resource_id: Some(i.to_string()),
        ..AuditIn::default()
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(PRODUCERS as u64));
    g.sample_size(10);
    for engine in [Engine::Sled, Engine::Redb] {
        for (mode, sync) in [("batched", SyncMode::Batched), ("strict", SyncMode::Strict)] {
            let dir = std::env::temp_dir().join(format!(
                "portcullis-bench-store-{}-{}-{mode}",
                std::process::id(),
                engine.name()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            let h = start(&dir, engine, sync);
            g.bench_function(format!("{}/{mode}/64_audit_records", engine.name()), |b| {
                b.iter(|| {
                    rt.block_on(async {
                        let mut set = tokio::task::JoinSet::new();
                        for i in 0..PRODUCERS {
                            let h = h.clone();
                            set.spawn(async move { h.audit(record(i)).await });
                        }
                        while let Some(r) = set.join_next().await {
                            let r = r.expect("task").expect("acknowledged");
                            assert!(r.seq.is_some());
                        }
                    })
                })
            });
            h.stop_blocking().expect("stop");
            let store = h.store.clone();
            drop(h);
            let rep = chain::verify(&*store, &[]).expect("verify");
            assert!(rep.problem.is_none(), "{:?}", rep.problem);
            drop(store);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
