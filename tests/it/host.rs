//! The host maps pool names to engines: the Go form's one pool `default`, or every pool of
//! `pools:`, each in its own directory with its own core thread and log.

use std::path::{Path, PathBuf};

use rewardpool::host::{pool_dirs, DEFAULT_POOL};
use rewardpool::pool::Quantity;
use rewardpool::{Config, Host, OpenError};

#[test]
fn a_host_opens_the_default_pool_and_shuts_it_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::from_yaml_str(
        "pool:\n  catalog:\n    - { item_id: gold, quantity: 2, probability: 1 }\n\
         wal:\n  durability: sync\n  max_file_size_kb: 1024\n",
    )
    .unwrap();
    config.working_dir = dir.path().join("data");

    let host = Host::open(&config).unwrap();
    assert_eq!(host.names().collect::<Vec<_>>(), [DEFAULT_POOL]);
    assert!(host.pool("other").is_none());
    let engine = host.pool("default").expect("the default pool");
    let mut client = engine.client().unwrap();
    assert_eq!(client.draw().unwrap().request_id.0, 1);
    drop(client);
    let stopped = host.shutdown();
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0].0, "default");
    assert_eq!(stopped[0].1.as_ref().unwrap().last_request_id.0, 1);
    // The Go form keeps its files directly in working_dir.
    assert!(dir.path().join("data/wal.000000").is_file());

    // The same directory through the old path: `rewardpool::open` continues it.
    let engine = rewardpool::open(&config).unwrap();
    assert_eq!(engine.metrics().last_request_id.0, 1);
    engine.shutdown().unwrap();
}

/// Two pools (`eu` buffered with 3 gold, `us` sync with 5 ruby) in `root`.
pub(crate) fn two_pools_yaml(root: &Path) -> String {
    format!(
        "working_dir: \"{}\"\nwal:\n  durability: buffered\n  max_file_size_kb: 256\n\
         pools:\n  - name: eu\n    catalog:\n      - {{ item_id: gold, quantity: 3, probability: 1 }}\n      \
         - {{ item_id: mud, quantity: -1, probability: 1 }}\n  - name: us\n    catalog:\n      \
         - {{ item_id: ruby, quantity: 5, probability: 1 }}\n    wal:\n      durability: sync\n",
        root.display()
    )
}

fn two_pools(root: &Path) -> Config {
    Config::from_yaml_str(&two_pools_yaml(root)).unwrap()
}

fn segments(dir: &Path) -> Vec<String> {
    crate::wal_cli::segment_names(dir)
}

#[test]
fn two_pools_share_nothing_stock_log_or_request_ids() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let config = two_pools(&root);
    let host = Host::open(&config).unwrap();
    assert_eq!(host.names().collect::<Vec<_>>(), ["eu", "us"]);
    // Resolved once; the draws below never name a pool.
    let (eu, us) = (host.pool("eu").unwrap(), host.pool("us").unwrap());
    assert_eq!(host.engine(host.index("us").unwrap()).unwrap().core_id(), us.core_id());
    if rewardpool::engine::available_cores().len() >= 2 {
        assert_ne!(eu.core_id(), us.core_id(), "one core per pool when the machine has them");
    }
    let mut client = eu.client().unwrap();
    let drawn: Vec<_> = (0..20).map(|_| client.draw().unwrap()).collect();
    drop(client);
    assert_eq!(drawn.last().unwrap().request_id.0, 20);
    let eu_state = eu.state().unwrap();
    let us_state = us.state().unwrap();
    assert_eq!(us_state.last_request_id.0, 0, "eu's draws are not us's");
    assert_eq!(us_state.items.len(), 1);
    assert_eq!(us_state.items[0].quantity, Quantity::Finite(5), "us's stock untouched");
    let gold = eu_state.items.iter().find(|i| i.id == "gold").unwrap();
    let golds = drawn.iter().filter(|o| o.item.is_some_and(|i| i.0 == 0)).count() as u64;
    assert_eq!(gold.quantity, Quantity::Finite(3 - golds));
    us.update("ruby", Some(Quantity::Finite(9)), None).unwrap();
    for (name, result) in host.shutdown() {
        result.unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    // Each pool's files in its own directory, none directly in working_dir.
    assert!(segments(&root).is_empty(), "{:?}", segments(&root));
    assert!(!segments(&root.join("eu")).is_empty());
    assert!(!segments(&root.join("us")).is_empty());
    assert!(root.join("eu/lock").exists() && root.join("us/lock").exists());
    // The logs: eu holds its draws, us holds its update and no draw.
    let eu_after =
        rewardpool::host::read_state(&[], &wal_at(&config, 0, &root.join("eu"))).unwrap();
    assert_eq!(eu_after.last_request_id.0, 20);
    assert_eq!(eu_after.items, eu_state.items);
    let us_after =
        rewardpool::host::read_state(&[], &wal_at(&config, 1, &root.join("us"))).unwrap();
    assert_eq!(us_after.last_request_id.0, 0);
    assert_eq!(us_after.items[0].quantity, Quantity::Finite(9));

    // Reopened, both continue where they stopped.
    let host = Host::open(&config).unwrap();
    assert_eq!(host.pool("eu").unwrap().metrics().last_request_id.0, 20);
    let mut client = host.pool("us").unwrap().client().unwrap();
    assert_eq!(client.draw().unwrap().request_id.0, 1);
    drop(client);
    for (name, result) in host.shutdown() {
        result.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

fn wal_at(config: &Config, index: usize, dir: &Path) -> rewardpool::host::WalOptions {
    config.for_pool(index, dir.to_owned()).unwrap().wal_options()
}

/// A copy of `tests/it/fixtures/log-v1/data`: a directory the previous release wrote (one
/// pool, its files directly in `working_dir`).
fn old_directory(into: &Path) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/log-v1/data");
    std::fs::create_dir_all(into).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), into.join(entry.file_name())).unwrap();
    }
    into.to_owned()
}

fn fixture_last_request_id() -> u64 {
    let text = include_str!("fixtures/log-v1/state.json");
    let rest = text.split("\"last_request_id\":").nth(1).unwrap();
    rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

#[test]
fn an_old_single_pool_directory_opens_as_pool_default() {
    let dir = tempfile::tempdir().unwrap();
    let root = old_directory(&dir.path().join("data"));
    let last = fixture_last_request_id();
    let catalog = "    catalog:\n      - { item_id: gold, quantity: 1, probability: 1 }\n";

    // The Go form, as it was written.
    let mut go = Config::from_yaml_str(include_str!("fixtures/log-v1/config.yaml")).unwrap();
    go.working_dir.clone_from(&root);
    let host = Host::open(&go).unwrap();
    assert_eq!(host.pool(DEFAULT_POOL).unwrap().metrics().last_request_id.0, last);
    drop(host.shutdown());

    // A `pools:` file with a pool named default keeps the log where it is; other pools go
    // into their own directories beside it.
    let yaml = format!(
        "working_dir: \"{}\"\nwal:\n  max_file_size_kb: 64\n  durability: buffered\npools:\n  \
         - name: default\n{catalog}  - name: new\n{catalog}",
        root.display()
    );
    let config = Config::from_yaml_str(&yaml).unwrap();
    assert_eq!(pool_dirs(&config).unwrap(), [root.clone(), root.join("new")]);
    let host = Host::open(&config).unwrap();
    let engine = host.pool(DEFAULT_POOL).unwrap();
    assert_eq!(engine.metrics().last_request_id.0, last);
    let mut client = engine.client().unwrap();
    assert_eq!(client.draw().unwrap().request_id.0, last + 1);
    drop(client);
    assert_eq!(host.pool("new").unwrap().metrics().last_request_id.0, 0);
    for (name, result) in host.shutdown() {
        result.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(!segments(&root.join("new")).is_empty());

    // Without a pool named default, the old log would be left out: refused, naming why.
    let without = yaml.replace("name: default", "name: old");
    let config = Config::from_yaml_str(&without).unwrap();
    let e = Host::open(&config).unwrap_err();
    assert!(matches!(e, OpenError::FlatLogWithoutDefault { .. }), "{e}");
    let s = e.to_string();
    assert!(s.contains("single-pool log") && s.contains("old, new"), "{s}");
    assert!(s.contains("\"default\""), "{s}");

    // A second log in working_dir/default/ is refused too.
    old_directory(&root.join("default"));
    let config = Config::from_yaml_str(&yaml).unwrap();
    let e = Host::open(&config).unwrap_err();
    assert!(matches!(e, OpenError::TwoDefaultLogs { .. }), "{e}");
}

#[test]
fn one_pool_that_cannot_open_leaves_the_others_serving() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let config = two_pools(&root);
    // Another process (here: another host) holds pool us's directory.
    let first = Host::open(&config).unwrap();
    let (host, failed) = Host::open_each(&config).unwrap();
    assert!(host.pool("eu").is_none() && host.pool("us").is_none(), "both are locked");
    assert_eq!(failed.len(), 2);
    drop(host.shutdown());
    let mut stopped = first.shutdown().into_iter();
    let (eu, _) = stopped.next().unwrap();
    assert_eq!(eu, "eu");

    // Lock only us: eu opens and serves, us is reported by name.
    let us_only = Config::from_yaml_str(
        &two_pools_yaml(&root).replace("  - name: eu\n", "  - name: eu-off\n"),
    )
    .unwrap();
    let holder = Host::open(&us_only).unwrap();
    let (host, failed) = Host::open_each(&config).unwrap();
    assert_eq!(host.names().collect::<Vec<_>>(), ["eu"]);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, "us");
    assert!(matches!(failed[0].1, OpenError::Locked { .. }), "{}", failed[0].1);
    let mut client = host.pool("eu").unwrap().client().unwrap();
    client.draw().unwrap();
    drop(client);
    drop(host.shutdown());
    // Host::open is all or nothing and names the pool; eu is closed again, so a second
    // try (us still held) fails the same way.
    for _ in 0..2 {
        let e = Host::open(&config).unwrap_err();
        assert!(e.to_string().starts_with("pool \"us\": "), "{e}");
        assert!(matches!(&e, OpenError::InPool { pool, .. } if pool == "us"), "{e}");
    }
    drop(holder.shutdown());
}
