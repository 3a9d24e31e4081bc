//! Every list of the station's API pages: walked a small page at a time, each list gives
//! every item exactly once, in its order, and the walk ends with `"next": null`; a cursor or
//! limit that is not one of the list's is refused, naming the parameter.

use std::time::Duration;

use serde_json::{json, Value};
use trellis_tests::*;

const T: Duration = Duration::from_secs(60);

fn keys(items: &[Value], key: &str) -> Vec<String> {
    items
        .iter()
        .map(|i| match &i[key] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

#[test]
fn every_station_list_walks_page_by_page_to_the_same_items() {
    let udp = free_udp_port();
    let links: Vec<String> = [udp, free_udp_port(), free_udp_port()]
        .iter()
        .map(|p| format!("udpin:127.0.0.1:{p}"))
        .collect();
    let daemon = EdgeDaemon::start(&links);
    let _fleet = sim_fleet(udp, 5, 10);
    wait_for("5 simulated copters", T, || {
        let v = daemon.try_get("/api/v1/vehicles")?;
        (v["vehicles"].as_array()?.len() == 5).then_some(())
    });
    let square = json!([[38.29, -122.46], [38.29, -122.45], [38.30, -122.45]]);
    for key in ["block-9", "block-1", "block-10", "a", "block-2"] {
        let (code, body) = daemon.send(
            "PUT",
            &format!("/api/v1/fields/{key}"),
            &json!({ "name": key, "polygon": square }),
        );
        assert_eq!(code, 200, "{body}");
    }
    for key in ["north", "south", "east"] {
        let (code, body) = daemon.send(
            "PUT",
            &format!("/api/v1/geofences/{key}"),
            &json!({ "polygon": square, "ceiling_m": 90 }),
        );
        assert_eq!(code, 200, "{body}");
    }
    let get = |url: &str| daemon.get(url);

    // Collections by key: every item once, in key order, whatever the page size.
    for (path, items, key, expected) in [
        ("/api/v1/vehicles", "vehicles", "sysid", 5),
        ("/api/v1/links", "links", "id", 3),
        ("/api/v1/fields", "fields", "key", 5),
        ("/api/v1/geofences", "geofences", "key", 3),
    ] {
        let whole = daemon.get(path)[items].as_array().unwrap().clone();
        assert_eq!(whole.len(), expected, "{path}");
        for limit in [1, 2, 3] {
            let (paged, pages) = walk_pages(get, path, items, "after", limit);
            assert_eq!(keys(&paged, key), keys(&whole, key), "{path} by {limit}");
            assert_eq!(pages, expected.div_ceil(limit), "{path} by {limit}");
        }
    }
    let fields = keys(
        &walk_pages(get, "/api/v1/fields", "fields", "after", 2).0,
        "key",
    );
    assert_eq!(fields, ["a", "block-1", "block-10", "block-2", "block-9"]);
    let profiles = daemon.get("/api/v1/profiles")["profiles"]
        .as_array()
        .unwrap()
        .clone();
    assert!(profiles.len() >= 2, "{profiles:?}");
    let (paged, _) = walk_pages(get, "/api/v1/profiles", "profiles", "after", 1);
    assert_eq!(keys(&paged, "name"), keys(&profiles, "name"));

    // History: a fixed range, walked 7 samples a page, equals the range in one page; so
    // does the range downsampled to one sample a second.
    // The range ends at a committed sample: all before it are committed too, so the range
    // holds the same samples however often it is read.
    let end_ms = wait_for("60 samples of vehicle 1", T, || {
        let h = daemon.try_get("/api/v1/vehicles/1/telemetry")?;
        let samples = h["samples"].as_array()?;
        (samples.len() >= 60).then_some(())?;
        samples.last()?["t_us"].as_i64().map(|us| us / 1000)
    });
    for range in [
        format!("/api/v1/vehicles/1/telemetry?to={end_ms}"),
        format!("/api/v1/vehicles/1/telemetry?to={end_ms}&every=1s"),
    ] {
        let whole = daemon.get(&range)["samples"].as_array().unwrap().clone();
        assert!(whole.len() >= 5, "{range}: {}", whole.len());
        let (paged, pages) = walk_pages(get, &range, "samples", "after", 7);
        assert_eq!(paged, whole, "{range}");
        assert!(pages >= whole.len().div_ceil(7), "{range}");
    }

    // Logs, newest first: alerts page by `before` (tested with alerts in stream.rs); the
    // parameter history of a vehicle with none is one empty last page.
    let history = daemon.get("/api/v1/vehicles/1/params/history?limit=5");
    assert_eq!(history["changes"], json!([]));
    assert!(history["next"].is_null(), "{history}");

    // Wrong cursors and limits are refused by name.
    for (path, status, field) in [
        ("/api/v1/vehicles?after=V-08", 422, Some("after")),
        ("/api/v1/links?after=first", 422, Some("after")),
        ("/api/v1/fields?limit=0", 422, Some("limit")),
        ("/api/v1/geofences?limit=1001", 422, Some("limit")),
        ("/api/v1/missions?limit=-1", 400, None),
        ("/api/v1/profiles?after=", 200, None),
        ("/api/v1/vehicles/1/telemetry?after=12", 422, Some("after")),
        ("/api/v1/vehicles/1/params/history?before=x", 400, None),
        (
            "/api/v1/vehicles/1/params/history?limit=0",
            422,
            Some("limit"),
        ),
    ] {
        let (code, body) = daemon.get_status(path);
        assert_eq!(code, status, "{path}: {body}");
        if let Some(field) = field {
            assert_eq!(body["error"]["field"], field, "{path}: {body}");
        }
    }
}
