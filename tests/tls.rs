//! TLS with certificates made at test time (rcgen): a 3-node cluster serving HTTPS forms,
//! replicates and forwards over mutual TLS; plain HTTP gets nowhere; node RPC refuses a
//! connection without a certificate from the peer CA even with the right secret; a node
//! whose certificate another CA signed cannot join.

mod common;

use std::path::Path;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA and a certificate it signed for 127.0.0.1 and localhost, usable by servers and
/// clients; returns (CA PEM, certificate PEM, key PEM).
fn issue(ca_name: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let mut node = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    node.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    node.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    node.distinguished_name.push(DnType::CommonName, "gavel node");
    let node_key = KeyPair::generate().unwrap();
    let node_cert = node.signed_by(&node_key, &ca_cert, &ca_key).unwrap();
    (ca_cert.pem(), node_cert.pem(), node_key.serialize_pem())
}

fn write_tls(dir: &Path, name: &str, (ca, cert, key): &(String, String, String)) -> String {
    let p = |f: &str| dir.join(format!("{name}-{f}"));
    std::fs::write(p("ca.pem"), ca).unwrap();
    std::fs::write(p("cert.pem"), cert).unwrap();
    std::fs::write(p("key.pem"), key).unwrap();
    format!(
        "tls_cert = {:?}\ntls_key = {:?}\npeer_ca = {:?}\n",
        p("cert.pem").to_str().unwrap(),
        p("key.pem").to_str().unwrap(),
        p("ca.pem").to_str().unwrap()
    )
}

#[tokio::test]
async fn a_cluster_over_mutual_tls() {
    let _serial = serial().await;
    let files = tempfile::tempdir().unwrap();
    let good = issue("gavel test CA");
    let tls = write_tls(files.path(), "good", &good);
    log("three nodes serving HTTPS join and replicate over mutual TLS");
    let c = TestCluster::start_tls(3, &format!("{tls}{TEST_RAFT}"), good.0.as_bytes()).await;
    let leader = c.leader().await;
    let follower = c.running().into_iter().find(|id| *id != leader).unwrap();
    let (status, body) = c.post(follower, "/v1/auctions", &auction_body("lot", 600), None).await;
    assert_eq!(status, 201, "a write forwarded over TLS: {body}");
    c.wait_converged().await;

    log("plain HTTP to the same port gets no answer");
    let mut plain = tokio::net::TcpStream::connect(&c.node(1).addr).await.unwrap();
    plain
        .write_all(b"GET /ready HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, plain.read_to_end(&mut buf)).await;
    assert!(
        !String::from_utf8_lossy(&buf).contains("200 OK"),
        "plain HTTP was served"
    );

    log("node RPC without a client certificate is refused, even with the secret");
    let resp = c
        .http
        .post(c.node(1).url("/raft/vote"))
        .bearer_auth(SECRET)
        .body(vec![0u8; 8])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("certificate"),
        "{body}"
    );

    log("a node whose certificate another CA signed cannot join");
    let rogue = issue("another CA");
    let rogue_files = write_tls(files.path(), "rogue", &rogue);
    // Its own trust is the good CA, so only its certificate is wrong.
    let rogue_files = rogue_files.replace(
        &files.path().join("rogue-ca.pem").display().to_string(),
        &files.path().join("good-ca.pem").display().to_string(),
    );
    let mut c = c;
    c.extra_config = format!("{rogue_files}{TEST_RAFT}");
    c.add_node(4, Some(leader), SECRET);
    let members = || async {
        c.cluster(leader).await["members"]
            .as_array()
            .map(|m| m.iter().any(|m| m["id"] == json!(4)))
            .unwrap_or(false)
    };
    let log_path = c.node(4).log_path.clone();
    c.wait_for("the rogue node's join to fail its TLS handshake", DEADLINE, || async {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        text.contains("cannot reach").then_some(())
    })
    .await;
    assert!(!members().await, "the rogue node became a member");
}
