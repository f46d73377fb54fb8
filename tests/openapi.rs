//! `GET /v1/openapi.json` on a real node: a valid OpenAPI 3.1 description (checked with
//! `openapi-spec-validator` from PyPI where it is installed; CI installs it and sets
//! `GAVEL_REQUIRE_VALIDATOR=1`), naming every route of docs/api.md and only routes the
//! node serves, and whose response schemas hold for what the node really answers.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::{json, Value};

/// The description, as a node serves it.
async fn spec(c: &TestCluster) -> Value {
    let resp = c.http.get(c.node(1).url("/v1/openapi.json")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    resp.json().await.unwrap()
}

/// The routes of the table in docs/api.md, as `(METHOD, path)`.
fn documented_routes() -> BTreeSet<(String, String)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).unwrap();
    let table = doc.split("## Routes").nth(1).unwrap().split("\n## ").next().unwrap();
    let mut routes = BTreeSet::new();
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let cell = line.split('|').nth(1).unwrap().trim();
        // "`GET /v1/x`", "`POST`/`DELETE /v1/x` `{...}`"
        let text = cell.replace("`/`", "/").replace('`', " ");
        let mut words = text.split_whitespace();
        let mut methods = Vec::new();
        let mut path = None;
        for w in words.by_ref() {
            if w.starts_with('/') {
                path = Some(w.to_string());
                break;
            }
            methods.extend(w.split('/').filter(|m| !m.is_empty()).map(str::to_string));
        }
        let path = path.unwrap_or_else(|| panic!("no path in {line}"));
        for m in methods {
            routes.insert((m, path.clone()));
        }
    }
    assert!(routes.len() > 25, "the table parsed to {routes:?}");
    routes
}

fn described_routes(spec: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "delete", "patch"] {
            if item.get(method).is_some() {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

#[tokio::test]
async fn the_description_is_valid_and_names_every_route() {
    let _serial = serial().await;
    let c = TestCluster::start(1, TEST_RAFT).await;
    let spec = spec(&c).await;
    assert_eq!(spec["openapi"], "3.1.0");

    log("phase: a validator from the registries accepts it");
    let file = c.dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    match std::process::Command::new("openapi-spec-validator").arg(&file).output() {
        Ok(out) => assert!(
            out.status.success(),
            "openapi-spec-validator refused the description:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if std::env::var_os("GAVEL_REQUIRE_VALIDATOR").is_some() => {
            panic!("openapi-spec-validator is required here but did not run: {e}")
        }
        Err(e) => log(&format!(
            "SKIPPED the validator: openapi-spec-validator did not run ({e}); `pip install openapi-spec-validator`"
        )),
    }

    log("phase: every route in docs/api.md is described");
    let described = described_routes(&spec);
    let missing: Vec<_> = documented_routes().difference(&described).cloned().collect();
    assert!(missing.is_empty(), "documented but not described: {missing:?}");

    log("phase: every described route is served (not the not-found fallback, not 405)");
    for (method, path) in &described {
        let concrete = path
            .replace("{id}", "1")
            .replace("{name}", "nobody")
            .replace("{file}", "app.js");
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = c
            .http
            .request(method.clone(), c.node(1).url(&concrete))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert!(
            !(status == 404 && body["error"]["message"] == "no such route"),
            "{method} {path} is described but not served"
        );
    }
    let (status, body) = c.get(1, "/v1/no-such-route").await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (404, Some("no such route"))
    );

    log("phase: every operation answers success and errors with schemas; every error code is listed");
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('2') || s == "101"),
                "{method} {path} has no success answer"
            );
            for (status, r) in responses {
                // /health and /ready answer 503 with their own report.
                let own_report = matches!(path.as_str(), "/health" | "/ready") && status == "503";
                if (status.starts_with('4') || status.starts_with('5')) && !own_report {
                    if let Some(schema) = r["content"]["application/json"]["schema"].as_object() {
                        assert_eq!(
                            schema["$ref"], "#/components/schemas/ErrorBody",
                            "{method} {path} {status}"
                        );
                    }
                }
            }
            if !path.starts_with("/raft/") && !op["requestBody"].is_null() {
                assert!(
                    responses.contains_key("400") && responses.contains_key("413"),
                    "{method} {path}"
                );
            }
            assert!(
                responses.contains_key("429") && responses.contains_key("503"),
                "{method} {path}"
            );
        }
    }
    let codes = &spec["components"]["schemas"]["ErrorDetail"]["allOf"][1]["properties"]["code"]["enum"];
    let codes: Vec<&str> = codes.as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    for code in [
        "bid_too_low",
        "unknown_auction",
        "rate_limited",
        "no_leader",
        "invalid_json",
        "not_found",
    ] {
        assert!(codes.contains(&code), "{code} missing from {codes:?}");
    }
    let description = spec["info"]["description"].as_str().unwrap();
    for code in &codes {
        assert!(
            description.contains(&format!("`{code}`")),
            "{code} not in the error table"
        );
    }
}

/// Checks `body` against the schema the description gives for `path` (its template),
/// `method` and `status`.
fn check(spec: &Value, template: &str, method: &str, status: u16, body: &Value) {
    let response = &spec["paths"][template][method]["responses"][status.to_string()];
    assert!(
        !response.is_null(),
        "{method} {template} answered {status}, which the description does not list: {body}"
    );
    let Some(schema) = response["content"]["application/json"]["schema"].as_object() else {
        panic!("{method} {template} {status} has no JSON schema");
    };
    let mut root = Value::Object(schema.clone());
    root["components"] = spec["components"].clone();
    let validator = jsonschema::draft202012::new(&root).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {template} {status}: the answer breaks its schema: {errors:?}\n{body}"
    );
}

async fn call(c: &TestCluster, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = c.http.request(method, c.node(1).url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn what_the_node_answers_matches_the_description() {
    let _serial = serial().await;
    let c = TestCluster::start(1, TEST_RAFT).await;
    let spec = spec(&c).await;
    let (sam, ann, bob) = (
        c.token("sam").await.unwrap(),
        c.token("ann").await.unwrap(),
        c.token("bob").await.unwrap(),
    );
    // (method, template, concrete path, token, body)
    let mut seen = 0;
    macro_rules! expect {
        ($method:expr, $template:expr, $path:expr, $token:expr, $body:expr) => {{
            let path: &str = &$path;
            let (status, answer) = call(&c, $method, path, $token, $body).await;
            check(&spec, $template, &$method.to_lowercase(), status, &answer);
            seen += 1;
            (status, answer)
        }};
    }

    log("phase: operations and accounts");
    expect!("GET", "/health", "/health", None, None);
    expect!("GET", "/ready", "/ready", None, None);
    expect!("GET", "/v1/cluster", "/v1/cluster", None, None);
    expect!("GET", "/v1/workers", "/v1/workers", None, None);
    expect!("GET", "/v1/metrics/history", "/v1/metrics/history", None, None);
    expect!("GET", "/v1/account", "/v1/account", Some(&ann), None);
    let (status, _) = expect!("GET", "/v1/account", "/v1/account", Some("gvl_nope"), None);
    assert_eq!(status, 401);
    let body = json!({"name": "cat", "roles": ["bidder"], "budget": 100000});
    let (status, cat) = expect!("POST", "/v1/accounts", "/v1/accounts", Some(ADMIN_TOKEN), Some(body));
    assert_eq!(status, 201);
    assert!(cat["token"].is_string());
    expect!(
        "GET",
        "/v1/accounts/{name}",
        "/v1/accounts/cat",
        Some(ADMIN_TOKEN),
        None
    );
    expect!("GET", "/v1/accounts/{name}/key", "/v1/accounts/cat/key", None, None);
    expect!(
        "POST",
        "/v1/accounts/{name}/tokens",
        "/v1/accounts/cat/tokens",
        Some(ADMIN_TOKEN),
        None
    );
    expect!(
        "DELETE",
        "/v1/accounts/{name}",
        "/v1/accounts/cat",
        Some(ADMIN_TOKEN),
        None
    );
    let (status, _) = expect!(
        "GET",
        "/v1/accounts/{name}",
        "/v1/accounts/nobody",
        Some(ADMIN_TOKEN),
        None
    );
    assert_eq!(status, 404);

    log("phase: every format's auction, created, read and listed");
    let english = json!({"title": "lamp", "starting_price": 1000, "increment": [{"from": 0, "increment": 100}, {"from": 5000, "increment": 500}],
        "reserve_price": 1500, "buy_now_price": 9000, "duration_secs": 600,
        "soft_close": {"window_secs": 30, "extend_secs": 30, "max_extensions": 5}});
    let sealed =
        json!({"title": "crane", "format": "sealed_second_price", "starting_price": 100, "duration_secs": 600});
    let dutch = json!({"title": "tulips", "format": "dutch", "starting_price": 5000, "decrement": 100,
        "decrement_every_secs": 2, "floor_price": 2000});
    let rounds = json!({"title": "rights", "format": "multi_round_sealed", "starting_price": 100, "min_rounds": 1,
        "max_rounds": 3, "round_secs": 60, "min_bidders": 2, "join_secs": 300});
    let buyable =
        json!({"title": "vase", "starting_price": 100, "increment": 10, "buy_now_price": 500, "duration_secs": 600});
    let mut ids = Vec::new();
    for body in [english, sealed, dutch, rounds, buyable] {
        let (status, a) = expect!("POST", "/v1/auctions", "/v1/auctions", Some(&sam), Some(body));
        assert_eq!(status, 201, "{a}");
        ids.push(a["id"].as_u64().unwrap());
    }
    let [english, sealed, dutch, rounds, buyable] = ids[..] else {
        unreachable!()
    };
    let (status, _) = expect!(
        "POST",
        "/v1/auctions",
        "/v1/auctions",
        Some(&sam),
        Some(json!({"title": 5}))
    );
    assert_eq!(status, 400);
    expect!("GET", "/v1/auctions", "/v1/auctions?limit=2", None, None);

    log("phase: bids of each kind, refusals, histories");
    let (status, _) = expect!(
        "POST",
        "/v1/auctions/{id}/bids",
        format!("/v1/auctions/{english}/bids"),
        Some(&ann),
        Some(json!({"amount": 1000}))
    );
    assert_eq!(status, 201);
    expect!(
        "POST",
        "/v1/auctions/{id}/bids",
        format!("/v1/auctions/{english}/bids"),
        Some(&bob),
        Some(json!({"max_amount": 3000}))
    );
    let (status, _) = expect!(
        "POST",
        "/v1/auctions/{id}/bids",
        format!("/v1/auctions/{english}/bids"),
        Some(&ann),
        Some(json!({"amount": 5}))
    );
    assert_eq!(status, 409);
    let (status, _) = expect!(
        "POST",
        "/v1/auctions/{id}/bids",
        format!("/v1/auctions/{sealed}/bids"),
        Some(&ann),
        Some(json!({"amount": 400}))
    );
    assert_eq!(status, 201);
    expect!(
        "POST",
        "/v1/auctions/{id}/bids",
        format!("/v1/auctions/{dutch}/bids"),
        Some(&bob),
        Some(json!({"amount": 5000}))
    );
    expect!(
        "POST",
        "/v1/auctions/{id}/join",
        format!("/v1/auctions/{rounds}/join"),
        Some(&ann),
        None
    );
    expect!(
        "POST",
        "/v1/auctions/{id}/join",
        format!("/v1/auctions/{rounds}/join"),
        Some(&bob),
        None
    );
    expect!(
        "POST",
        "/v1/auctions/{id}/start",
        format!("/v1/auctions/{rounds}/start"),
        Some(&sam),
        None
    );
    expect!(
        "POST",
        "/v1/auctions/{id}/bids",
        format!("/v1/auctions/{rounds}/bids"),
        Some(&ann),
        Some(json!({"amount": 300}))
    );
    for id in [english, sealed, dutch, rounds] {
        expect!("GET", "/v1/auctions/{id}", format!("/v1/auctions/{id}"), None, None);
        expect!(
            "GET",
            "/v1/auctions/{id}/bids",
            format!("/v1/auctions/{id}/bids"),
            None,
            None
        );
    }
    let (status, _) = expect!("GET", "/v1/auctions/{id}", "/v1/auctions/999", None, None);
    assert_eq!(status, 404);

    log("phase: buy now, results, cancel, subscriptions, snapshots");
    let (status, _) = expect!(
        "POST",
        "/v1/auctions/{id}/buy",
        format!("/v1/auctions/{buyable}/buy"),
        Some(&ann),
        None
    );
    assert_eq!(status, 200);
    for who in [&ann, &sam] {
        expect!(
            "GET",
            "/v1/auctions/{id}/result",
            format!("/v1/auctions/{buyable}/result"),
            Some(who),
            None
        );
    }
    expect!(
        "GET",
        "/v1/auctions/{id}/result",
        format!("/v1/auctions/{dutch}/result"),
        Some(&bob),
        None
    );
    let (status, _) = expect!(
        "GET",
        "/v1/auctions/{id}/result",
        format!("/v1/auctions/{english}/result"),
        Some(&ann),
        None
    );
    assert_eq!(status, 409);
    let (status, _) = expect!(
        "POST",
        "/v1/auctions/{id}/cancel",
        format!("/v1/auctions/{english}/cancel"),
        Some(ADMIN_TOKEN),
        None
    );
    assert_eq!(status, 200);
    let udp = format!("127.0.0.1:{}", free_udp_port());
    let (status, _) = expect!(
        "POST",
        "/v1/auctions/{id}/subscriptions",
        format!("/v1/auctions/{sealed}/subscriptions"),
        Some(&ann),
        Some(json!({"udp": udp, "ttl_secs": 60}))
    );
    assert_eq!(status, 202);
    expect!(
        "DELETE",
        "/v1/auctions/{id}/subscriptions",
        format!("/v1/auctions/{sealed}/subscriptions"),
        Some(&ann),
        Some(json!({"udp": udp}))
    );
    let (status, _) = expect!(
        "POST",
        "/v1/admin/snapshot",
        "/v1/admin/snapshot",
        Some(ADMIN_TOKEN),
        None
    );
    assert_eq!(status, 200);
    let (status, _) = expect!("POST", "/v1/admin/snapshot", "/v1/admin/snapshot", Some(&ann), None);
    assert_eq!(status, 403);
    log(&format!("{seen} answers matched their schemas"));
}
