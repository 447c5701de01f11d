//! Rule-engine cost per request: request view + evaluation of the bundled
//! packs (default config: paranoia 1, threshold 5), on both matcher
//! backends. Every case first asserts its verdict, so a bench that stopped
//! detecting (or started blocking clean traffic) fails instead of looking
//! fast.
//!
//!     cargo bench --bench engine
//!
//! The proxy-level numbers (with nginx and a bare proxy as baselines) come
//! from `benches/proxy.sh`; this bench isolates the engine.

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::config;
use portcullis::request_view::{RequestView, ViewLimits};
use portcullis::rules::engine::{EngineScratch, RequestFacts, RuleSet, Verdict, view_fields};
use portcullis::rules::matcher::Backend;

struct Case {
    name: &'static str,
    parts: http::request::Parts,
    body: bytes::Bytes,
    expect: Verdict,
}

fn request(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (http::request::Parts, bytes::Bytes) {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in BROWSER {
        b = b.header(*k, *v);
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    if !body.is_empty() {
        b = b.header("content-length", body.len().to_string());
    }
    let (parts, ()) = b.body(()).expect("valid request").into_parts();
    (parts, body.into())
}

const BROWSER: &[(&str, &str)] = &[
    ("host", "shop.example.com"),
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    ),
    (
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ),
    ("accept-language", "en-GB,en;q=0.9,de;q=0.8"),
    ("accept-encoding", "gzip, deflate, br"),
    ("referer", "https://shop.example.com/catalog?page=3"),
    (
        "cookie",
        "session=8f3a9c1e7b2d4f60a1c3e5b7d9f1a3c5; theme=dark; consent=analytics%3Dno",
    ),
];

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let (parts, body) = request("GET", "/products/42", &[], Vec::new());
    v.push(Case {
        name: "get",
        parts,
        body,
        expect: Verdict::Allow,
    });

    let q = "/search?q=wireless+headphones&category=audio&brand=acme&min_price=20&max_price=200\
             &sort=price_asc&page=2&per_page=24&in_stock=true&color=black";
    let (parts, body) = request("GET", q, &[], Vec::new());
    v.push(Case {
        name: "query_10_args",
        parts,
        body,
        expect: Verdict::Allow,
    });

    let mut items = Vec::new();
    for i in 0..16 {
        items.push(format!(
            r#"{{"sku":"SKU-{i:05}","name":"Item number {i}","qty":{q},"price":{p}.99,"notes":"Please gift-wrap; it's for my sister's birthday"}}"#,
            q = i % 3 + 1,
            p = 10 + i
        ));
    }
    let json = format!(
        r#"{{"customer":{{"id":90210,"email":"jane.doe@example.com","name":"Jane O'Neil"}},"items":[{}],"coupon":null,"currency":"EUR"}}"#,
        items.join(",")
    );
    assert!(
        (1800..2600).contains(&json.len()),
        "json is {} bytes",
        json.len()
    );
    let (parts, body) = request(
        "POST",
        "/api/v1/orders",
        &[("content-type", "application/json")],
        json.into_bytes(),
    );
    v.push(Case {
        name: "json_2k",
        parts,
        body,
        expect: Verdict::Allow,
    });

    let mut form = String::new();
    let mut i = 0;
    while form.len() < 32 * 1024 {
        if !form.is_empty() {
            form.push('&');
        }
        form.push_str(&format!(
            "field{i}=The+quick+brown+fox+jumps+over+the+lazy+dog+while+we+write+entry+{i}%2C+nothing+more"
        ));
        i += 1;
    }
    let (parts, body) = request(
        "POST",
        "/profile/update",
        &[("content-type", "application/x-www-form-urlencoded")],
        form.into_bytes(),
    );
    v.push(Case {
        name: "form_32k",
        parts,
        body,
        expect: Verdict::Allow,
    });

    let (parts, body) = request("GET", "/items?id=1%27%20OR%201=1--", &[], Vec::new());
    v.push(Case {
        name: "sqli_attack",
        parts,
        body,
        expect: Verdict::Block,
    });
    v
}

fn ruleset(backend: Backend) -> RuleSet {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/portcullis.yaml");
    let mut cfg = config::load(&path).expect("default config loads");
    let waf = cfg.waf.as_mut().expect("default config enables the waf");
    waf.matcher = backend;
    portcullis::rules::load::load(waf, &path)
        .expect("bundled packs compile")
        .expect("waf is on")
}

fn inspect(set: &RuleSet, case: &Case, scratch: &mut EngineScratch) -> Verdict {
    let view = RequestView::build_bytes(&case.parts, case.body.clone(), &ViewLimits::default())
        .expect("view builds");
    let fields = view_fields(&view);
    let facts = RequestFacts {
        method: case.parts.method.as_str(),
        path: case.parts.uri.path(),
        host: "shop.example.com",
        body_as_args: view.body_as_args(),
    };
    set.evaluate(&fields, &facts, scratch).verdict
}

fn bench(c: &mut Criterion) {
    let cases = cases();
    let mut backends = vec![Backend::Pure];
    if Backend::default() != Backend::Pure {
        backends.insert(0, Backend::default());
    }
    for backend in backends {
        let set = ruleset(backend);
        let mut scratch = EngineScratch::default();
        let mut g = c.benchmark_group(format!("engine/{backend}"));
        for case in &cases {
            assert_eq!(
                inspect(&set, case, &mut scratch),
                case.expect,
                "{}: unexpected verdict on {backend}",
                case.name
            );
            g.bench_function(case.name, |b| b.iter(|| inspect(&set, case, &mut scratch)));
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
