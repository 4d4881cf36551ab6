//! Failures keep their kind end to end: an I/O error in the log's helper threads (or an
//! injected one) reaches the caller of `Client::wait`/`drain` and `Engine::shutdown` as a
//! typed value (`FailureKind`, `JournalError::Io` with the `io::Error` as its source), so a
//! service maps it to a status code without parsing a sentence.

use std::error::Error as _;
use std::io;

use rewardpool::engine::CorePin;
use rewardpool::journal::testing::FailingJournal;
use rewardpool::storage::FaultyStorage;
use rewardpool::store::Durability;
use rewardpool::{
    DrawError, Engine, EngineConfig, EngineError, FailureKind, ItemSpec, JournalError, Pool,
    Quantity, Rng,
};

use crate::recovery::{draw_n, open};

/// The `io::Error` at the end of `e`'s source chain, if any.
fn io_source<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut at = Some(e);
    while let Some(e) = at {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io);
        }
        at = e.source();
    }
    None
}

/// An engine on a journal that fails with `error` (as if doing `context`) at its next call,
/// after one acknowledged draw; returns what a waiting caller and the shutdown saw.
fn fail_with(context: &str, error: io::Error) -> (DrawError, JournalError, EngineError) {
    let pool = Pool::new(&[ItemSpec::new("mud", -1, 1)], Rng::from_seed(1)).unwrap();
    let (journal, switch) = FailingJournal::new();
    let config = EngineConfig { core: CorePin::Unpinned, ..EngineConfig::default() };
    let engine = Engine::start(pool, journal, config).unwrap();
    let mut client = engine.client().unwrap();
    client.draw().expect("served before the fault");
    switch.fail_with(context, error);
    let ticket = client.try_draw().expect("intake still open");
    let seen = client.wait(ticket).expect_err("the journal failed");
    let failure = engine.failure().expect("a failure recorded");
    let stopped = engine.shutdown().expect_err("shutdown after a failure");
    (seen, failure, stopped)
}

#[test]
fn enospc_reaches_wait_and_shutdown_as_storage_full() {
    let enospc = io::Error::from_raw_os_error(libc::ENOSPC);
    let (seen, failure, stopped) = fail_with("syncing wal.000001", enospc);
    let full = FailureKind::Io { kind: io::ErrorKind::StorageFull, os_code: Some(libc::ENOSPC) };
    assert_eq!(seen, DrawError::Failed(full));
    assert_eq!(failure.kind(), full);
    assert!(
        matches!(&failure, JournalError::Io { context, .. } if context == "syncing wal.000001")
    );
    assert_eq!(stopped.failure_kind(), Some(full));
    let source = io_source(&stopped).expect("the io::Error is in the source chain");
    assert_eq!(source.kind(), io::ErrorKind::StorageFull);
    // The sentences stay what they were.
    let text = stopped.to_string();
    assert!(text.starts_with("the engine stopped after a failure: syncing wal.000001: "), "{text}");
}

#[test]
fn eio_reaches_wait_and_shutdown_with_its_os_code() {
    let (seen, failure, stopped) =
        fail_with("msync wal.000002", io::Error::from_raw_os_error(libc::EIO));
    let eio = FailureKind::of(&io::Error::from_raw_os_error(libc::EIO));
    assert!(matches!(eio, FailureKind::Io { os_code: Some(libc::EIO), .. }), "{eio:?}");
    assert_eq!(seen, DrawError::Failed(eio));
    assert_eq!(failure.kind(), eio);
    assert_eq!(stopped.failure_kind(), Some(eio));
    assert_eq!(io_source(&stopped).and_then(io::Error::raw_os_error), Some(libc::EIO));
}

/// The flusher's failed fdatasync (FaultyStorage's injected EIO, kind `Other`) keeps its kind
/// and what it was doing from the helper thread to every caller.
#[test]
fn a_failed_sync_in_the_flusher_reaches_drain_and_shutdown_typed() {
    let storage = FaultyStorage::new();
    let engine = open(&storage, Durability::Sync, 1 << 20);
    assert_eq!(draw_n(&engine, 100).1, None);
    storage.fail_sync_after(1);
    let (_, err) = draw_n(&engine, 5_000);
    let other = FailureKind::Io { kind: io::ErrorKind::Other, os_code: None };
    assert_eq!(err, Some(DrawError::Failed(other)));
    let failure = engine.failure().expect("a failure recorded");
    match &failure {
        JournalError::Io { context, source } => {
            assert!(context.contains("wal."), "{context}");
            assert!(source.to_string().contains("injected sync failure"), "{source}");
        }
        other => panic!("not an I/O failure: {other:?}"),
    }
    let stopped = engine.shutdown().expect_err("shutdown after a failure");
    assert!(matches!(stopped, EngineError::Failed(JournalError::Io { .. })), "{stopped:?}");
    assert_eq!(stopped.failure_kind(), Some(other));
    assert_eq!(io_source(&stopped).map(io::Error::kind), Some(io::ErrorKind::Other));
}

/// ENOSPC at rotation is not final: draws are refused with `NoSpace`, and an update that
/// needs the next segment is refused with a `StorageFull` kind; the engine goes on.
#[test]
fn a_full_disk_refuses_an_update_as_storage_full() {
    let storage = FaultyStorage::new();
    let engine = open(&storage, Durability::Sync, 16 << 10);
    storage.set_disk_full(true);
    let mut refused = None;
    for n in 0..2_000 {
        let (_, err) = draw_n(&engine, 50);
        assert!(matches!(err, None | Some(DrawError::NoSpace)), "{err:?}");
        match engine.update(&format!("item-{n}"), Some(Quantity::Finite(1)), Some(1)) {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("the disk never filled up");
    assert!(matches!(refused, EngineError::NoSpace(JournalError::NoSpace { .. })), "{refused:?}");
    let full = FailureKind::Io { kind: io::ErrorKind::StorageFull, os_code: Some(libc::ENOSPC) };
    assert_eq!(refused.failure_kind(), Some(full));
    assert!(refused.to_string().starts_with("update not applied: creating "), "{refused}");
    storage.set_disk_full(false);
    assert_eq!(draw_n(&engine, 10).1, None, "draws resume once space returns");
    engine.shutdown().expect("clean shutdown");
}

#[test]
fn a_bad_bound_names_its_field() {
    let pool = Pool::new(&[ItemSpec::new("mud", -1, 1)], Rng::from_seed(1)).unwrap();
    let config = EngineConfig { clients_max: 0, ..EngineConfig::default() };
    let Err(e) = Engine::start(pool, rewardpool::MemoryJournal::new(), config) else {
        panic!("clients_max = 0 accepted");
    };
    assert!(matches!(&e, EngineError::Config(b) if b.field == "clients_max"), "{e:?}");
    assert_eq!(e.to_string(), "bad engine configuration: clients_max must be at least 1");
    assert!(e.source().is_some());
}
