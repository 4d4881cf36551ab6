//! A real full disk (issue 13, item 4): the data directory on a small tmpfs mounted by the
//! test (root only; skipped with one printed line otherwise). Filled under load, new draws
//! get `NoSpace` (not a failure), nothing acknowledged is lost, and once space returns the
//! same engine draws again without a restart.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use rewardpool::inspect;
use rewardpool::recovery::recover;
use rewardpool::storage::OsStorage;
use rewardpool::store::{open_engine_on, Durability, WalOptions};
use rewardpool::wal::frame::Record;
use rewardpool::DrawError;

use super::recovery::{catalog, draw_n, engine_config};

/// Unmounts the tmpfs when the test ends, passed or not.
struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

#[test]
fn a_full_tmpfs_refuses_draws_with_no_space_loses_nothing_and_resumes() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mount = tmp.path().join("small");
    std::fs::create_dir(&mount).unwrap();
    let mounted = root
        && Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
            .arg(&mount)
            .status()
            .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!(
            "skipped: cannot mount a tmpfs here (needs root and mount(8)): no real full-disk test"
        );
        return;
    }
    let _unmount = Mounted(&mount);
    // Most of the space taken by a file the test deletes later ("space returns").
    let filler = mount.join("filler");
    std::fs::write(&filler, vec![1_u8; 384 << 10]).unwrap();
    let dir = mount.join("data");
    let storage = OsStorage::new(&dir).expect("data dir");
    let wal = WalOptions {
        dir: dir.clone(),
        durability: Durability::Sync,
        segment_size_bytes: 16 << 10,
        retention_segments: 1_000,
        ..WalOptions::default()
    };
    let engine = open_engine_on(Arc::new(storage), &catalog(), &wal, engine_config(), Some(7))
        .expect("open on the tmpfs");
    let mut acked = Vec::new();
    let mut refused = None;
    for _ in 0..400 {
        let (outcomes, err) = draw_n(&engine, 5_000);
        acked.extend(outcomes);
        if let Some(e) = err {
            refused = Some(e);
            break;
        }
    }
    assert_eq!(refused, Some(DrawError::NoSpace), "the disk never filled up, or another error");
    assert!(engine.failure().is_none(), "a full disk stopped the engine: {:?}", engine.failure());
    assert!(!acked.is_empty());
    // Space returns: the same engine goes on.
    std::fs::remove_file(&filler).unwrap();
    let (more, err) = draw_n(&engine, 20_000);
    assert_eq!(err, None, "draws did not resume once space returned");
    acked.extend(more);
    engine.shutdown().expect("clean shutdown");
    // Nothing acknowledged lost: every acknowledged draw is in the log with its item.
    let storage = OsStorage::existing(&dir).unwrap();
    let r = recover(&storage, &catalog()).expect("recovers");
    let last = acked.iter().map(|o| o.request_id.0).max().unwrap();
    assert!(r.state.last_request_id.0 >= last);
    let mut logged = std::collections::HashMap::new();
    inspect::dump(&storage, false, |info| {
        if let Record::Draw { request_id, item } = info.record {
            logged.insert(request_id, item);
        }
        Ok(())
    })
    .expect("dump");
    for o in &acked {
        assert_eq!(logged.get(&o.request_id.0), Some(&o.item.map(|i| i.0)), "{o:?}");
    }
    eprintln!(
        "tmpfs of 512 KiB: {} draws acknowledged around a full disk, all logged",
        acked.len()
    );
}
