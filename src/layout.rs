//! The names of the files in a data directory, in one place.
//!
//! | name | what | written by |
//! |------|------|------------|
//! | `wal.NNNNNN` | a log segment ([`segment_name`]) | `wal` (created as `wal.NNNNNN.tmp`, renamed when installed) |
//! | `snapshot.NNNNNN` | the state segment `NNNNNN` starts from ([`snapshot_name`]) | `wal` (through `snapshot.NNNNNN.tmp`) |
//! | `*.tmp`, `*.core` | a file being created: a prepared spare segment, a snapshot, a repair's replacement; `.core` when the core thread had to create the next segment itself | removed by the next open ([`is_temporary`]) |
//! | `lock` | the directory lock ([`LOCK_FILE`]) | `storage` |
//! | `dropped.<name>`, `dropped.<name>.N` | a repair's copy of a file it changed or set aside ([`dropped_name`]) | `inspect` |
//! | `catalog.applied` | the fingerprint of the catalog last applied (advisory) ([`CATALOG_APPLIED_FILE`]) | the command line |
//! | `replica.applied` | a follower's last applied stream sequence ([`REPLICA_APPLIED_FILE`]) | `rewardpool follow` |
//! | `replica.epoch` | the epoch a promoted standby ships with ([`REPLICA_EPOCH_FILE`]) | `rewardpool promote` |
//!
//! Sequence numbers are written with at least 6 digits and parsed strictly: exactly what
//! [`segment_name`] and [`snapshot_name`] produce, nothing else (`wal.000001.tmp`,
//! `wal.1` and `wal.0000001` are not segments), so a stray file is never taken for part of
//! the log.

/// The directory's lock file.
pub const LOCK_FILE: &str = "lock";

/// The advisory file naming the fingerprint of the catalog last applied (recovery ignores
/// it).
pub const CATALOG_APPLIED_FILE: &str = "catalog.applied";

/// A follower's position in its pool's JetStream stream: the last stream sequence whose
/// group is durable in this directory's log (recovery ignores it).
pub const REPLICA_APPLIED_FILE: &str = "replica.applied";

/// The epoch this directory's pool ships with since `rewardpool promote` took its lease
/// (JSON `{"stream": .., "epoch": E}`; absent: epoch 1). Recovery ignores it.
pub const REPLICA_EPOCH_FILE: &str = "replica.epoch";

/// What precedes a segment's sequence number.
const SEGMENT_PREFIX: &str = "wal.";

/// What precedes a snapshot's sequence number.
const SNAPSHOT_PREFIX: &str = "snapshot.";

/// What precedes a repair's copy of a file.
const DROPPED_PREFIX: &str = "dropped.";

/// What a file being created carries until it is renamed into place.
const TMP_SUFFIX: &str = ".tmp";

/// What a segment the core thread created itself (no spare was ready) carries until it is
/// installed.
const CORE_SUFFIX: &str = ".core";

/// The file name of segment `sequence`: `wal.` and at least 6 digits (`wal.000001`).
#[must_use]
pub fn segment_name(sequence: u64) -> String {
    format!("{SEGMENT_PREFIX}{sequence:06}")
}

/// The sequence number in a segment file name, `None` for anything that is not exactly a
/// name [`segment_name`] produces: `wal.` then 6 ASCII digits, or more digits without a
/// leading zero (`wal.1000000` follows `wal.999999`). `wal.000001.tmp`, `wal.1`,
/// `wal.00000a`, `wal.-00001` and `"wal.000001 "` are all `None`.
#[must_use]
pub fn parse_segment_name(name: &str) -> Option<u64> {
    parse_numbered_name(name, SEGMENT_PREFIX)
}

/// The file name of snapshot `sequence`: `snapshot.` and at least 6 digits.
#[must_use]
pub fn snapshot_name(sequence: u64) -> String {
    format!("{SNAPSHOT_PREFIX}{sequence:06}")
}

/// The sequence number in a snapshot file name; same strict rules as
/// [`parse_segment_name`] (`snapshot.000001.tmp` is `None`).
#[must_use]
pub fn parse_snapshot_name(name: &str) -> Option<u64> {
    parse_numbered_name(name, SNAPSHOT_PREFIX)
}

/// The temporary name `name` is written under before it is renamed into place.
#[must_use]
pub fn tmp_name(name: &str) -> String {
    format!("{name}{TMP_SUFFIX}")
}

/// The temporary name of a segment the core thread creates itself (`spare` is the name the
/// preparer would have used, [`tmp_name`] of the segment).
#[must_use]
pub fn core_tmp_name(spare: &str) -> String {
    format!("{spare}{CORE_SUFFIX}")
}

/// True for a file left by an interrupted creation (`*.tmp`, `*.core`): the next open
/// removes it.
#[must_use]
pub fn is_temporary(name: &str) -> bool {
    name.ends_with(TMP_SUFFIX) || name.ends_with(CORE_SUFFIX)
}

/// A repair's `copy`-th copy of `name`: `dropped.<name>` for the first (`copy` 0), then
/// `dropped.<name>.1`, `dropped.<name>.2`, ...
#[must_use]
pub fn dropped_name(name: &str, copy: u32) -> String {
    if copy == 0 {
        format!("{DROPPED_PREFIX}{name}")
    } else {
        format!("{DROPPED_PREFIX}{name}.{copy}")
    }
}

/// The temporary name a repair writes the new `name` under before renaming it into place.
#[must_use]
pub fn repair_tmp_name(name: &str) -> String {
    format!("{name}.repair{TMP_SUFFIX}")
}

/// True for a repair's copy of a segment (`dropped.wal.*`).
#[must_use]
pub fn is_dropped_segment(name: &str) -> bool {
    name.strip_prefix(DROPPED_PREFIX).is_some_and(|base| base.starts_with(SEGMENT_PREFIX))
}

/// The name a repair's copy or a temporary file was made from: `dropped.wal.000003`,
/// `dropped.wal.000003.2` (a second copy) and `wal.000003.tmp` all give `wal.000003`; any
/// other name gives itself.
#[must_use]
pub fn original_name(name: &str) -> &str {
    let base = name.strip_prefix(DROPPED_PREFIX).unwrap_or(name);
    let base = base.split_once(TMP_SUFFIX).map_or(base, |(b, _)| b);
    match base.rsplit_once('.') {
        // `dropped.wal.000003.2`: a second copy of the same file.
        Some((b, n)) if n.len() < 6 && n.bytes().all(|c| c.is_ascii_digit()) => b,
        _ => base,
    }
}

/// What a file in a data directory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// `wal.NNNNNN`.
    Segment(u64),
    /// `snapshot.NNNNNN`.
    Snapshot(u64),
    /// `*.tmp` or `*.core` ([`is_temporary`]).
    Temporary,
    /// Anything else: the lock, a repair's copies, the advisory catalog file, strays.
    Other,
}

/// Classifies `name`.
#[must_use]
pub fn classify(name: &str) -> FileKind {
    if let Some(sequence) = parse_segment_name(name) {
        FileKind::Segment(sequence)
    } else if let Some(sequence) = parse_snapshot_name(name) {
        FileKind::Snapshot(sequence)
    } else if is_temporary(name) {
        FileKind::Temporary
    } else {
        FileKind::Other
    }
}

/// Parses `prefix` followed by a sequence number written as [`segment_name`] writes it.
fn parse_numbered_name(name: &str, prefix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 6 && digits.starts_with('0') {
        return None;
    }
    // Only ASCII digits remain, so this fails only on overflow.
    digits.parse::<u64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn segment_names() {
        assert_eq!(segment_name(1), "wal.000001");
        assert_eq!(segment_name(999_999), "wal.999999");
        assert_eq!(segment_name(1_000_000), "wal.1000000");
        assert_eq!(parse_segment_name("wal.000001"), Some(1));
        assert_eq!(parse_segment_name("wal.000000"), Some(0));
        assert_eq!(parse_segment_name("wal.999999"), Some(999_999));
        assert_eq!(parse_segment_name("wal.1000000"), Some(1_000_000));
        assert_eq!(parse_segment_name("wal.18446744073709551615"), Some(u64::MAX));
        for bad in [
            "wal.000001.tmp",
            "wal.1",
            "wal.00001",
            "wal.00000a",
            "wal.-00001",
            "wal.+00001",
            "wal.000001 ",
            " wal.000001",
            "wal.0000001",
            "wal.0999999",
            "wal.18446744073709551616",
            "wal.",
            "wal",
            "WAL.000001",
            "snapshot.000001",
            "wal.00000١",
            "wal.000001\n",
            "",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn snapshot_names() {
        assert_eq!(snapshot_name(1), "snapshot.000001");
        assert_eq!(snapshot_name(1_000_000), "snapshot.1000000");
        assert_eq!(parse_snapshot_name("snapshot.000042"), Some(42));
        assert_eq!(parse_snapshot_name("snapshot.1000000"), Some(1_000_000));
        for bad in [
            "snapshot.000001.tmp",
            "snapshot.1",
            "snapshot.00000a",
            "snapshot.-00001",
            "snapshot.000001 ",
            "snapshot.0000001",
            "wal.000001",
            "snapshot.",
        ] {
            assert_eq!(parse_snapshot_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn other_names() {
        assert_eq!(tmp_name("wal.000003"), "wal.000003.tmp");
        assert_eq!(core_tmp_name(&tmp_name("wal.000003")), "wal.000003.tmp.core");
        assert_eq!(dropped_name("wal.000003", 0), "dropped.wal.000003");
        assert_eq!(dropped_name("wal.000003", 2), "dropped.wal.000003.2");
        assert_eq!(classify("wal.000003"), FileKind::Segment(3));
        assert_eq!(classify("snapshot.000003"), FileKind::Snapshot(3));
        assert_eq!(classify("wal.000003.tmp"), FileKind::Temporary);
        assert_eq!(classify("wal.000003.tmp.core"), FileKind::Temporary);
        assert_eq!(classify("wal.000003.repair.tmp"), FileKind::Temporary);
        assert_eq!(repair_tmp_name("wal.000003"), "wal.000003.repair.tmp");
        assert!(is_dropped_segment("dropped.wal.000003.1"));
        assert!(!is_dropped_segment("dropped.snapshot.000003"));
        for copy in ["dropped.wal.000003", "dropped.wal.000003.2", "wal.000003.tmp", "wal.000003"] {
            assert_eq!(original_name(copy), "wal.000003", "{copy}");
        }
        assert_eq!(original_name("dropped.snapshot.000003.1"), "snapshot.000003");
        for other in [LOCK_FILE, CATALOG_APPLIED_FILE, "dropped.wal.000003", "notes.txt"] {
            assert_eq!(classify(other), FileKind::Other, "{other}");
        }
    }

    proptest! {
        #[test]
        fn segment_name_round_trip(sequence in any::<u64>()) {
            prop_assert_eq!(parse_segment_name(&segment_name(sequence)), Some(sequence));
        }

        #[test]
        fn segment_name_parse_never_panics(name in "\\PC{0,30}") {
            if let Some(n) = parse_segment_name(&name) {
                prop_assert_eq!(segment_name(n), name);
            }
        }

        #[test]
        fn snapshot_name_round_trip(sequence in any::<u64>()) {
            prop_assert_eq!(parse_snapshot_name(&snapshot_name(sequence)), Some(sequence));
        }
    }
}
