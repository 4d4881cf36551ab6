//! Configuration through the real binary: every validation rule is refused with exit code 2
//! and a message naming the field (and the item), never a panic; the Go service's sample
//! config loads unchanged and draws.

use std::fs;

use super::cli::{rewardpool, Run};

/// The Go service's `samples/config.yaml`, byte for byte (`shared/seeds/go-sample-config.yaml`).
pub(crate) const GO_SAMPLE: &str = include_str!("fixtures/go-sample-config.yaml");

/// Runs `state` on `yaml` and expects a refusal naming every string in `names`.
fn refused(yaml: &str, names: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    fs::write(&path, yaml).unwrap();
    let run = rewardpool(dir.path(), &["state", "--config", path.to_str().unwrap()]);
    assert_eq!(run.code, Some(2), "expected exit 2 for {yaml:?}: {run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(!run.stderr.contains("panicked"), "{run:?}");
    assert!(run.stderr.starts_with("error: "), "{run:?}");
    for name in names {
        assert!(run.stderr.contains(name), "stderr should name {name:?}: {run:?}");
    }
    run
}

fn item(line: &str) -> String {
    format!(
        "pool:\n  catalog:\n    - {{ item_id: ok, quantity: 1, probability: 1 }}\n    - {line}\n"
    )
}

#[test]
fn every_rule_is_refused_with_the_field_named() {
    refused("pool:\n  catalog: []\n", &["pool.catalog", "empty"]);
    refused(&item("{ item_id: \"\", quantity: 1, probability: 1 }"), &["item_id", "catalog[1]"]);
    refused(&item("{ item_id: ok, quantity: 1, probability: 1 }"), &["item_id", "\"ok\""]);
    refused(&item("{ item_id: gold, quantity: -2, probability: 1 }"), &["quantity", "\"gold\""]);
    refused(&item("{ item_id: gold, quantity: 1, probability: -1 }"), &["probability", "\"gold\""]);
    refused(&item("{ item_id: gold, quantity: 1, weight: -1 }"), &["probability", "\"gold\""]);
    let run = refused(
        &item("{ item_id: gold, quantity: 1.5, probability: 1 }"),
        &["quantity", "\"gold\"", "integer", "line 4"],
    );
    assert!(run.stderr.contains("1.5"), "{run:?}");
    refused(
        &item("{ item_id: gold, quantity: 1, probability: \"ten\" }"),
        &["probability", "\"gold\"", "integer", "ten"],
    );
    refused("wal:\n  flush_after_n_draw: 1\n", &["pool", "missing"]);
    refused("pool: [\n", &["not valid YAML", "line"]);
    refused("just a sentence\n", &["YAML"]);
    refused("", &["empty"]);
    refused("# nothing but a comment\n", &["empty"]);
    let base = item("{ item_id: b, quantity: 1, probability: 1 }");
    for key in ["max_file_size_kb", "max_request_buffer_size", "flush_after_n_draw"] {
        refused(&format!("{base}wal:\n  {key}: 0\n"), &[&format!("wal.{key}")]);
        refused(&format!("{base}wal:\n  {key}: 99999999999\n"), &[&format!("wal.{key}")]);
    }
    refused(&format!("{base}wal:\n  durability: fast\n"), &["wal.durability", "fast"]);
    refused(&format!("{base}wal:\n  flush_after_n_draws: 3\n"), &["flush_after_n_draws"]);
}

#[test]
fn missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let run = rewardpool(dir.path(), &["state", "--config", "no-such.yaml"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("no-such.yaml"), "{run:?}");
    assert!(!run.stderr.contains("panicked"), "{run:?}");
}

#[test]
fn go_sample_config_loads_and_draws() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    fs::write(&path, GO_SAMPLE).unwrap();
    let config = path.to_str().unwrap();
    let run = rewardpool(dir.path(), &["state", "--json", "--config", config]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let state: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let ids: Vec<&str> =
        state["items"].as_array().unwrap().iter().map(|i| i["item_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["diamond", "gold", "silver", "rock", "mud", "log"]);
    let run = rewardpool(dir.path(), &["draw", "--count", "3", "--json", "--config", config]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout.lines().count(), 3, "{run:?}");
    for line in run.stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(ids.contains(&v["item"].as_str().unwrap()), "{line}");
    }
}
