//! The web page in a real browser: headless Chromium (Debian's `chromium`), driven
//! through `chromedriver` over WebDriver, against a real 3-node cluster.
//!
//! Two browser sessions on two different nodes: one logs in as a seller and creates an
//! auction through the form, then logs in as a bidder; the other logs in as a second
//! bidder. Each sees the other's bid appear within 1 s, both see the countdown move out
//! when a late bid extends the end, and both see the result at the close. Screenshots of
//! each step go to `target/browser-screenshots/` (or `$GAVEL_SCREENSHOT_DIR`).
//!
//! Without `chromium` and `chromedriver` the test says so and passes; with
//! `GAVEL_REQUIRE_BROWSER=1` (CI sets it) their absence fails it.

mod common;

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long another session may take to show a bid.
const LIVE_WITHIN: Duration = Duration::from_secs(1);
/// Deadline for page loads, logins and the close.
const UI_DEADLINE: Duration = Duration::from_secs(30);

/// `chromedriver` in a process group of its own, which the Chromium processes it starts
/// join; the whole group is stopped by its PID when dropped, so a failing test (which
/// never closes its sessions) leaves no browser running.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver() -> Driver {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver { child, port };
    let url = format!("http://127.0.0.1:{port}/status");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + UI_DEADLINE;
    loop {
        if let Ok(resp) = http.get(&url).send().await {
            if resp.status().is_success() {
                return driver;
            }
        }
        assert!(Instant::now() < deadline, "chromedriver did not answer on {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A headless Chromium session with its own profile directory.
async fn browser(driver: &Driver, profile: &std::path::Path, width: u32, height: u32) -> Client {
    let args = vec![
        "--headless=new".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--no-first-run".into(),
        "--disable-quic".into(),
        format!("--window-size={width},{height}"),
        format!("--user-data-dir={}", profile.display()),
    ];
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "binary": CHROMIUM, "args": args }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session starts")
}

fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("GAVEL_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/browser-screenshots")));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    let path = screenshot_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    log(&format!("screenshot {}", path.display()));
}

/// Polls `check` on `client` until it yields `Some`, for at most `within`.
async fn wait_until<T, F, Fut>(client: &Client, what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut(Client) -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check(client.clone()).await {
            return v;
        }
        if Instant::now() >= deadline {
            let _ = shot(client, "timed-out").await;
            panic!("timed out after {within:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn find(client: &Client, css: &str) -> Option<Element> {
    client.find(Locator::Css(css)).await.ok()
}

async fn text_of(client: &Client, css: &str) -> Option<String> {
    find(client, css).await?.text().await.ok()
}

async fn attr_of(client: &Client, css: &str, attr: &str) -> Option<String> {
    find(client, css).await?.attr(attr).await.ok().flatten()
}

async fn fill(client: &Client, css: &str, value: &str) {
    let field = wait_until(client, css, UI_DEADLINE, |c| async move { find(&c, css).await }).await;
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

async fn click(client: &Client, css: &str) {
    let button = wait_until(client, css, UI_DEADLINE, |c| async move { find(&c, css).await }).await;
    button.click().await.unwrap();
}

async fn log_in(client: &Client, base: &str, token: &str, name: &str) {
    client.goto(&format!("{base}/#/login")).await.unwrap();
    fill(client, "#token-input", token).await;
    click(client, "#login-button").await;
    wait_until(client, &format!("logged in as {name}"), UI_DEADLINE, |c| async move {
        (text_of(&c, "[data-testid=whoami]").await.as_deref().map(str::trim) == Some(name)).then_some(())
    })
    .await;
}

async fn open_auction(client: &Client, base: &str, id: u64) {
    client.goto(&format!("{base}/#/auctions/{id}")).await.unwrap();
    wait_until(client, "the live connection", UI_DEADLINE, |c| async move {
        let status = text_of(&c, "[data-testid=live-status]").await?;
        status.starts_with("live").then_some(())
    })
    .await;
}

/// Bids `amount` (major units, as a person types it) and waits for the page's answer.
async fn bid(client: &Client, amount: &str) -> String {
    let before = text_of(client, "[data-testid=bid-message]").await.unwrap_or_default();
    fill(client, "#bid-amount", amount).await;
    click(client, "#bid-submit").await;
    wait_until(client, "the bid's answer", UI_DEADLINE, |c| {
        let before = before.clone();
        async move {
            // Not "Placing your bid…" (kind "info"): the answer.
            let kind = attr_of(&c, "[data-testid=bid-message]", "data-kind").await?;
            let now = text_of(&c, "[data-testid=bid-message]").await?;
            (kind != "info" && !now.trim().is_empty() && now != before).then_some(now)
        }
    })
    .await
}

/// Waits at most [`LIVE_WITHIN`] for `client` to show `price` led by `leader`.
async fn sees_bid(client: &Client, price: &str, leader: &str) -> Duration {
    let started = Instant::now();
    wait_until(
        client,
        &format!("price {price} led by {leader}"),
        LIVE_WITHIN,
        |c| async move {
            let shown = text_of(&c, "[data-testid=price]").await?;
            let who = text_of(&c, "[data-testid=leader]").await?;
            (shown.trim() == price && who.trim() == leader).then_some(())
        },
    )
    .await;
    started.elapsed()
}

fn ends_at_ms(rfc3339: &str) -> i128 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp_nanos()
        / 1_000_000
}

#[tokio::test]
async fn two_browsers_bid_live_see_the_end_extend_and_see_the_result() {
    let available = std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
    if !available {
        assert!(
            std::env::var_os("GAVEL_REQUIRE_BROWSER").is_none(),
            "GAVEL_REQUIRE_BROWSER is set but {CHROMIUM} or {CHROMEDRIVER} is missing \
             (Debian: apt-get install chromium chromium-driver)"
        );
        log(&format!(
            "SKIPPED: {CHROMIUM} or {CHROMEDRIVER} is missing (Debian: apt-get install chromium chromium-driver)"
        ));
        return;
    }
    let _serial = serial().await;
    let c = TestCluster::start(3, TEST_RAFT).await;
    let (sam, ann, bob) = (
        c.token("sam").await.unwrap(),
        c.token("ann").await.unwrap(),
        c.token("bob").await.unwrap(),
    );
    let driver = start_driver().await;
    let profiles = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (profiles.path().join("a"), profiles.path().join("b"));
    let a = browser(&driver, &dir_a, 1280, 1000).await;
    let b = browser(&driver, &dir_b, 390, 844).await;
    let (node_a, node_b) = (c.node(1).url(""), c.node(2).url(""));

    log("phase: session A logs in as the seller and creates an auction through the form");
    log_in(&a, &node_a, &sam, "sam").await;
    shot(&a, "01-logged-in").await;
    a.goto(&format!("{node_a}/#/new")).await.unwrap();
    fill(&a, "#f-title", "Brass lamp").await;
    wait_until(&a, "the format select", UI_DEADLINE, |c| async move {
        find(&c, "#f-format").await
    })
    .await
    .select_by_value("english")
    .await
    .unwrap();
    fill(&a, "#f-starting-price", "10.00").await;
    fill(&a, "#f-increment", "1.00").await;
    // Every bid in the first 15 s is late: it moves the end to 20 s after it, once.
    fill(&a, "#f-duration-secs", "15").await;
    fill(&a, "#f-soft-window-secs", "15").await;
    fill(&a, "#f-soft-extend-secs", "20").await;
    fill(&a, "#f-soft-max-extensions", "1").await;
    shot(&a, "02-create-form").await;
    click(&a, "#create-submit").await;
    let id: u64 = wait_until(&a, "the new auction's page", UI_DEADLINE, |c| async move {
        let url = c.current_url().await.ok()?;
        url.fragment()?.strip_prefix("/auctions/")?.parse().ok()
    })
    .await;
    let (status, auction) = c.get(3, &format!("/v1/auctions/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            auction["title"].as_str(),
            auction["seller"].as_str(),
            auction["starting_price"].as_u64()
        ),
        (Some("Brass lamp"), Some("sam"), Some(1000)),
        "the form created what was typed: {auction}"
    );
    assert_eq!(auction["soft_close"]["extend_secs"], 20, "{auction}");

    log("phase: A becomes ann, B (a phone-sized window on another node) logs in as bob");
    log_in(&a, &node_a, &ann, "ann").await;
    log_in(&b, &node_b, &bob, "bob").await;
    open_auction(&a, &node_a, id).await;
    open_auction(&b, &node_b, id).await;
    let original_end = attr_of(&a, "[data-testid=countdown]", "data-ends-at").await.unwrap();
    assert_eq!(
        ends_at_ms(&original_end),
        ends_at_ms(auction["ends_at"].as_str().unwrap())
    );

    log("phase: ann bids; bob's page shows it within 1 s, with the end extended");
    let answer = bid(&a, "10.00").await;
    assert!(!answer.to_lowercase().contains("error"), "ann's bid: {answer}");
    let took = sees_bid(&b, "10.00", "ann").await;
    log(&format!("bob's page showed ann's bid {took:?} after her answer"));
    for (session, who) in [(&a, "ann"), (&b, "bob")] {
        let end = wait_until(session, "the countdown to move out", LIVE_WITHIN, |c| {
            let original_end = original_end.clone();
            async move {
                let end = attr_of(&c, "[data-testid=countdown]", "data-ends-at").await?;
                (ends_at_ms(&end) > ends_at_ms(&original_end)).then_some(end)
            }
        })
        .await;
        let extensions = text_of(session, "[data-testid=extensions]").await.unwrap();
        assert!(
            extensions.trim().starts_with('1'),
            "{who} sees {extensions:?} extensions"
        );
        log(&format!("{who} sees the end moved from {original_end} to {end}"));
    }
    shot(&a, "03-ann-after-her-late-bid").await;
    shot(&b, "04-bob-sees-the-extension-phone").await;

    log("phase: bob outbids; ann's page shows it within 1 s; a too-low bid is refused with its minimum");
    let answer = bid(&b, "11.00").await;
    assert!(!answer.to_lowercase().contains("error"), "bob's bid: {answer}");
    let took = sees_bid(&a, "11.00", "bob").await;
    log(&format!("ann's page showed bob's bid {took:?} after his answer"));
    let refused = bid(&a, "11.50").await;
    assert!(refused.contains("12.00"), "the refusal names the minimum: {refused}");
    let rows = a.find_all(Locator::Css("[data-testid=bid-row]")).await.unwrap();
    assert_eq!(rows.len(), 2, "the history shows both bids");
    shot(&a, "05-ann-outbid").await;

    log("phase: at the close both pages show the result");
    let end = attr_of(&a, "[data-testid=countdown]", "data-ends-at").await.unwrap();
    log(&format!("the auction ends at {end}"));
    for (session, name) in [(&a, "06-result-ann"), (&b, "07-result-bob-phone")] {
        let result = wait_until(session, "the result", UI_DEADLINE, |c| async move {
            let el = find(&c, "[data-testid=result]").await?;
            if !el.is_displayed().await.ok()? {
                return None;
            }
            let text = el.text().await.ok()?;
            text.contains("bob").then_some(text)
        })
        .await;
        assert!(result.contains("11.00"), "the result shows the price: {result}");
        let status = text_of(session, "[data-testid=status]").await.unwrap();
        assert_eq!(status.trim().to_lowercase(), "closed");
        shot(session, name).await;
    }
    let (_, closed) = c.get(1, &format!("/v1/auctions/{id}")).await;
    assert_eq!(
        (closed["result"]["winner"].as_str(), closed["result"]["price"].as_u64()),
        (Some("bob"), Some(1100)),
        "{closed}"
    );

    log("phase: the operator page shows the three members and the workers");
    a.goto(&format!("{node_a}/#/operator")).await.unwrap();
    wait_until(&a, "three members", UI_DEADLINE, |c| async move {
        let rows = c
            .find_all(Locator::Css("[data-testid=cluster-members] tbody tr"))
            .await
            .ok()?;
        (rows.len() == 3).then_some(())
    })
    .await;
    find(&a, "[data-testid=workers]").await.expect("the workers");
    shot(&a, "08-operator").await;

    a.close().await.unwrap();
    b.close().await.unwrap();
    drop(driver);
}
