//! Generated garbage against every JSON endpoint: random bytes, random JSON of any shape
//! (with the real field names mixed in), and values that are never valid money (floats,
//! negatives, overflow, tiny integers). Every answer must be a 4xx with a JSON error
//! code, and nothing visible may change.

mod common;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Map, Value};

const FIELDS: [&str; 14] = [
    "seller",
    "title",
    "starting_price",
    "increment",
    "reserve_price",
    "starts_at",
    "ends_at",
    "duration_secs",
    "soft_close",
    "buy_now_price",
    "bidder",
    "amount",
    "max_amount",
    "buyer",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (0u64..1000).prop_map(Value::from),
        (-1e12f64..1e12).prop_map(|f| json!(f + 0.5)),
        (i64::MIN..0).prop_map(Value::from),
        Just(json!(1e300)),
        "[a-z]{0,6}".prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        prop::sample::select(FIELDS.to_vec()).prop_map(String::from),
                        "[a-z_]{1,8}"
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        // Valid JSON cut short.
        (json_value(), any::<prop::sample::Index>()).prop_map(|(v, i)| {
            let bytes = serde_json::to_vec(&v).unwrap();
            let cut = i.index(bytes.len().max(1));
            bytes[..cut].to_vec()
        }),
    ]
}

#[test]
fn garbage_gets_only_4xx_and_changes_nothing() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _serial = rt.block_on(serial());
    let c = rt.block_on(TestCluster::start(1, TEST_RAFT));
    let (status, _) = rt.block_on(c.post(
        1,
        "/v1/auctions",
        &json!({"seller": "sam", "title": "lot", "starting_price": 1000, "increment": 100, "duration_secs": 600}),
        None,
    ));
    assert_eq!(status, 201);
    let (status, _) = rt.block_on(c.post(
        1,
        "/v1/auctions/1/bids",
        &json!({"bidder": "ann", "amount": 1000}),
        None,
    ));
    assert_eq!(status, 201);
    let visible = || {
        rt.block_on(async {
            (
                c.get(1, "/v1/auctions").await.1,
                c.get(1, "/v1/auctions/1/bids").await.1,
            )
        })
    };
    let before = visible();

    let endpoints: Vec<(reqwest::Method, &str)> = vec![
        (reqwest::Method::POST, "/v1/auctions"),
        (reqwest::Method::POST, "/v1/auctions/1/bids"),
        (reqwest::Method::POST, "/v1/auctions/1/buy"),
        (reqwest::Method::POST, "/v1/auctions/1/cancel"),
        (reqwest::Method::POST, "/v1/auctions/77/bids"),
        (reqwest::Method::POST, "/v1/cluster/nodes"),
        (reqwest::Method::POST, "/v1/admin/snapshot"),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    let seen = std::cell::RefCell::new(std::collections::BTreeMap::<String, u32>::new());
    runner
        .run(&(0..endpoints.len(), body()), |(e, bytes)| {
            let (method, path) = endpoints[e].clone();
            let (status, text) = rt.block_on(c.send_bytes(1, method, path, bytes.clone()));
            prop_assert!(
                (400..500).contains(&status),
                "{path} answered {status} to {:?}: {text}",
                String::from_utf8_lossy(&bytes)
            );
            let v: Value =
                serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("not JSON: {e}: {text}")))?;
            let code = v["error"]["code"].as_str().unwrap_or_default().to_string();
            prop_assert!(!code.is_empty(), "no error code: {text}");
            *seen.borrow_mut().entry(format!("{status} {code}")).or_default() += 1;
            Ok(())
        })
        .unwrap();
    let seen = seen.into_inner();
    log(&format!("answers seen: {seen:?}"));
    assert!(
        seen.len() >= 4,
        "the generator reaches several kinds of error: {seen:?}"
    );
    assert_eq!(visible(), before, "garbage changed visible state");
}
