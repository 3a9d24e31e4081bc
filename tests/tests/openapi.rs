//! The OpenAPI documents, generated from the code, checked by schemathesis (PyPI; nobody here
//! wrote it) against a running station and a running relay (with a station syncing to it),
//! each with a token: it reads `/api/v1/openapi.json`,
//! generates valid and invalid requests for every operation, and fails on any 5xx, any
//! response whose status, content type, headers or body the document does not describe, and
//! any invalid request accepted.
//!
//! Left out, each tested elsewhere: the WebSockets (`stream.rs`, `hq.rs`, with real clients), wrong
//! tokens (`ignored_auth`: `api_auth.rs` covers every route, and the guessing limit would
//! answer 429 to the rest of the run), and "every schema-valid request is accepted"
//! (`positive_data_acceptance`: some rules span fields, `from` before `to`, which a schema
//! cannot say). The seed is fixed so that a run is repeatable.

use std::process::Command;
use std::time::Duration;

use trellis_tests::*;

const SEED: &str = "20261129";

/// Runs schemathesis on `base`'s document with `token`, with the settings of `config`
/// (schemathesis.toml); panics with its report on failure.
fn schemathesis(base: &str, token: &str, config: &str, extra: &[&str]) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config_file = dir.path().join("schemathesis.toml");
    std::fs::write(&config_file, config).expect("schemathesis.toml");
    let out = Command::new("schemathesis")
        // Its caches go there too, not into the checkout.
        .current_dir(dir.path())
        .arg("--config-file")
        .arg(&config_file)
        .arg("run")
        .arg(format!("{base}/api/v1/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "all"])
        .args(["--exclude-checks", "ignored_auth,positive_data_acceptance"])
        .args(["--seed", SEED, "--generation-deterministic"])
        .args(["--request-timeout", "10"])
        .args(extra)
        .env("NO_COLOR", "1")
        .output()
        .expect("schemathesis (scripts/test installs it)");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains(" passed"),
        "schemathesis ran no test cases:\n{report}"
    );
}

#[test]
fn the_stations_document_describes_every_answer_it_gives() {
    let (daemon, _fleet) = station_with_fleet(2, 5);
    let pilot = station_token(daemon.data.path(), "schemathesis", "pilot");
    wait_for("the token to be read", Duration::from_secs(10), || {
        (daemon.get_as(&pilot, "/api/v1/vehicles").0 == 200).then_some(())
    });
    let doc = daemon.get_as("", "/api/v1/openapi.json").1;
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/api/v1/vehicles",
        "/api/v1/vehicles/{id}/telemetry",
        "/api/v1/alerts/{seq}/ack",
        "/api/v1/export/tlog",
        "/api/v1/stream",
        "/api/v1/vehicles/{id}/commands",
        "/api/v1/commands/{id}",
        "/api/v1/vehicles/{id}/params",
        "/api/v1/vehicles/{id}/params/apply",
        "/api/v1/profiles",
    ] {
        assert!(paths.contains_key(path), "{path} is not described");
    }
    schemathesis(
        &daemon.api,
        &pilot,
        "",
        &["--exclude-path", "/api/v1/stream"],
    );
    // Nothing it sent took the daemon down.
    assert_eq!(daemon.get("/api/v1/health")["status"], "ok");
}

#[test]
fn hqs_document_describes_every_answer_it_gives() {
    let udp = free_udp_port();
    let (relay, _edge) = synced_station(udp);
    let _fleet = sim_fleet(udp, 2, 5);
    let admin = relay.token("vineyard-co", "admin");
    wait_for("the fleet at HQ", Duration::from_secs(30), || {
        let (_, body) = relay.hq_get(&admin, "/api/v1/orgs/vineyard-co/vehicles");
        (body["vehicles"].as_array()?.len() == 2).then_some(())
    });
    let ca = relay.ca_pem();
    schemathesis(
        &relay.hq_url(),
        &admin,
        // The org a token may see; any other answers 404, which would hide the rest.
        "[parameters]\n\"path.org\" = \"vineyard-co\"\n",
        &[
            "--exclude-path",
            "/api/v1/orgs/{org}/stream",
            "--tls-verify",
            ca.to_str().expect("utf-8 path"),
        ],
    );
    let (code, _) = relay.hq_get(&admin, "/api/v1/health");
    assert_eq!(code, 200);
}
