//! The configuration's catalog against the pool recovered from the log.
//!
//! Once a data directory holds a log, the log is the pool's truth: the catalog in the
//! configuration only seeded it (as in the earlier Go service, whose recovery was driven by
//! the log alone). An edited catalog is therefore not applied by itself, but never ignored
//! silently either: `draw`, `update` and `state` compare it with the recovered pool and say
//! on stderr what differs and how to apply it.
//!
//! When to report: every segment header records the fingerprint of the catalog the log was
//! started with. A configuration whose catalog has that fingerprint is the one the pool came
//! from, so its quantities differ from the pool's only by draws and updates made through
//! the log: nothing to report. Otherwise every difference is listed: items added to or
//! missing from the configuration, weights, and quantities (where the pool's count includes
//! the draws made since). `update --apply-catalog` logs one update per differing item so
//! the pool equals the configuration, then records that catalog's fingerprint in
//! `catalog.applied` (an advisory file in the data directory; recovery ignores it), so the
//! applied catalog is not reported again as draws consume its quantities.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use rewardpool::layout::CATALOG_APPLIED_FILE as APPLIED_FILE;
use rewardpool::pool::{ItemSpec, ItemState, PoolState, Quantity};
use rewardpool::recovery;
use rewardpool::snapshot::catalog_fingerprint;
use rewardpool::storage::{OsStorage, Storage};
use rewardpool::wal::header::{SegmentHeader, SEGMENT_HEADER_SIZE};

/// How one item differs between the pool and the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ItemDiff {
    /// In the configuration, not in the pool.
    Added {
        /// Item id.
        id: String,
        /// The configuration's quantity.
        quantity: Quantity,
        /// The configuration's weight.
        weight: u32,
    },
    /// In the pool, not in the configuration (items are never deleted: applying sets its
    /// quantity to 0, so it is never drawn again).
    Missing {
        /// Item id.
        id: String,
        /// The pool's quantity.
        quantity: Quantity,
        /// The pool's weight.
        weight: u32,
    },
    /// In both, with a different quantity and/or weight: `(pool, configuration)` of each
    /// that differs.
    Changed {
        /// Item id.
        id: String,
        /// Pool's and configuration's quantity, when they differ.
        quantity: Option<(Quantity, Quantity)>,
        /// Pool's and configuration's weight, when they differ.
        weight: Option<(u32, u32)>,
    },
}

impl ItemDiff {
    /// The update that makes the pool's item equal to the configuration's:
    /// `(id, quantity, weight)`.
    pub(crate) fn update(&self) -> (&str, Option<Quantity>, Option<u32>) {
        match self {
            ItemDiff::Added { id, quantity, weight } => (id, Some(*quantity), Some(*weight)),
            ItemDiff::Missing { id, .. } => (id, Some(Quantity::Finite(0)), None),
            ItemDiff::Changed { id, quantity, weight } => {
                (id, quantity.map(|(_, c)| c), weight.map(|(_, c)| c))
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            ItemDiff::Added { id, quantity, weight } => format!(
                "{id}: in the configuration, not in the pool (quantity {}, weight {weight})",
                show(*quantity)
            ),
            ItemDiff::Missing { id, quantity, weight } => format!(
                "{id}: in the pool (quantity {}, weight {weight}), not in the configuration",
                show(*quantity)
            ),
            ItemDiff::Changed { id, quantity, weight } => {
                let mut parts = Vec::new();
                if let Some((p, c)) = weight {
                    parts.push(format!("weight {p} in the pool, {c} in the configuration"));
                }
                if let Some((p, c)) = quantity {
                    parts.push(format!(
                        "quantity {} in the pool, {} in the configuration",
                        show(*p),
                        show(*c)
                    ));
                }
                format!("{id}: {}", parts.join("; "))
            }
        }
    }
}

fn show(q: Quantity) -> String {
    match q {
        Quantity::Unlimited => "unlimited".to_owned(),
        Quantity::Finite(n) => n.to_string(),
    }
}

/// Every item that differs, in the pool's order, then the configuration's new items in its
/// order.
pub(crate) fn differences(catalog: &[ItemSpec], pool: &[ItemState]) -> Vec<ItemDiff> {
    let mut diffs = Vec::new();
    for item in pool {
        match catalog.iter().find(|c| c.id == item.id) {
            None => diffs.push(ItemDiff::Missing {
                id: item.id.clone(),
                quantity: item.quantity,
                weight: item.weight,
            }),
            Some(c) => {
                let quantity = (c.quantity != item.quantity).then_some((item.quantity, c.quantity));
                let weight = (c.weight != item.weight).then_some((item.weight, c.weight));
                if quantity.is_some() || weight.is_some() {
                    diffs.push(ItemDiff::Changed { id: item.id.clone(), quantity, weight });
                }
            }
        }
    }
    for c in catalog {
        if !pool.iter().any(|i| i.id == c.id) {
            diffs.push(ItemDiff::Added {
                id: c.id.clone(),
                quantity: c.quantity,
                weight: c.weight,
            });
        }
    }
    diffs
}

/// The fingerprint of the catalog the log in `dir` was started with (from its newest
/// segment's header), or `None` when there is no readable log.
fn born_fingerprint(dir: &Path) -> Option<u64> {
    let storage = OsStorage::existing(dir).ok()?;
    let layout = recovery::layout(&storage).ok()?;
    let (_, name) = layout.segments.last()?;
    let (bytes, _) = storage.read_prefix(name, SEGMENT_HEADER_SIZE).ok()?;
    SegmentHeader::decode(&bytes).ok().map(|h| h.catalog_fingerprint)
}

/// The fingerprint recorded by the last `update --apply-catalog` in `dir`.
fn applied_fingerprint(dir: &Path) -> Option<u64> {
    let text = fs::read_to_string(dir.join(APPLIED_FILE)).ok()?;
    u64::from_str_radix(text.trim(), 16).ok()
}

/// Records that `catalog` was applied to the pool in `dir` (written to a temporary name,
/// synced, then renamed: a crash leaves the old file or the new one).
///
/// # Errors
/// Any write, sync or rename error.
pub(crate) fn record_applied(dir: &Path, catalog: &[ItemSpec]) -> std::io::Result<()> {
    let storage = OsStorage::existing(dir)?;
    let tmp = format!("{APPLIED_FILE}.tmp");
    storage.write_synced(&tmp, format!("{:016x}\n", catalog_fingerprint(catalog)).as_bytes())?;
    storage.rename(&tmp, APPLIED_FILE)?;
    storage.sync_dir()
}

/// The differences worth reporting: none when `catalog` is the one the log in `dir` was
/// started with or the one last applied, or when there is no log (the pool is the
/// catalog's).
pub(crate) fn unapplied(dir: &Path, catalog: &[ItemSpec], state: &PoolState) -> Vec<ItemDiff> {
    let Some(born) = born_fingerprint(dir) else {
        return Vec::new();
    };
    let fingerprint = catalog_fingerprint(catalog);
    if fingerprint == born || applied_fingerprint(dir) == Some(fingerprint) {
        return Vec::new();
    }
    differences(catalog, &state.items)
}

/// The warning for `diffs` (empty when there are none): which catalog, what differs, how to
/// apply it. `source` names the catalog; `apply` is the command that applies it.
pub(crate) fn warning(diffs: &[ItemDiff], source: &str, dir: &Path, apply: &str) -> String {
    if diffs.is_empty() {
        return String::new();
    }
    let mut text = format!(
        "warning: the catalog in {source} differs from the pool recovered from {} (the log \
         is the pool's truth; the configuration's catalog only seeds a new data directory):\n",
        dir.display()
    );
    for d in diffs {
        let _ = writeln!(text, "  {}", d.describe());
    }
    if diffs.iter().any(|d| matches!(d, ItemDiff::Changed { quantity: Some(_), .. })) {
        text.push_str(
            "  (the pool's quantities count the draws made since the log began; the \
             configuration's are starting quantities)\n",
        );
    }
    let _ = writeln!(
        text,
        "  to apply: `rewardpool update --item ID ...` for one item, or `{apply}` to make \
         the pool equal to the configuration (sets the quantities above too)"
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, q: i64, w: u32) -> ItemSpec {
        ItemSpec { id: id.to_owned(), quantity: Quantity::from_i64(q).unwrap(), weight: w }
    }

    fn item(id: &str, q: i64, w: u32) -> ItemState {
        ItemState { id: id.to_owned(), quantity: Quantity::from_i64(q).unwrap(), weight: w }
    }

    #[test]
    fn differences_name_each_kind_and_the_update_that_applies_it() {
        let catalog = [spec("gold", 1000, 25), spec("mud", -1, 70), spec("ruby", 5, 3)];
        let pool =
            [item("gold", 990, 20), item("mud", -1, 70), item("log", -1, 50), item("rock", 7, 1)];
        let diffs = differences(&catalog, &pool);
        assert_eq!(
            diffs,
            vec![
                ItemDiff::Changed {
                    id: "gold".into(),
                    quantity: Some((Quantity::Finite(990), Quantity::Finite(1000))),
                    weight: Some((20, 25)),
                },
                ItemDiff::Missing { id: "log".into(), quantity: Quantity::Unlimited, weight: 50 },
                ItemDiff::Missing { id: "rock".into(), quantity: Quantity::Finite(7), weight: 1 },
                ItemDiff::Added { id: "ruby".into(), quantity: Quantity::Finite(5), weight: 3 },
            ]
        );
        assert_eq!(diffs[0].update(), ("gold", Some(Quantity::Finite(1000)), Some(25)));
        assert_eq!(diffs[1].update(), ("log", Some(Quantity::Finite(0)), None));
        assert_eq!(diffs[3].update(), ("ruby", Some(Quantity::Finite(5)), Some(3)));
        let text = warning(&diffs, "c.yaml", Path::new("d"), "rewardpool update --apply-catalog");
        assert!(text.contains("gold: weight 20 in the pool, 25 in the configuration; quantity 990 in the pool, 1000 in the configuration"), "{text}");
        assert!(
            text.contains(
                "log: in the pool (quantity unlimited, weight 50), not in the configuration"
            ),
            "{text}"
        );
        assert!(
            text.contains("ruby: in the configuration, not in the pool (quantity 5, weight 3)"),
            "{text}"
        );
        assert!(text.contains("rewardpool update --apply-catalog"), "{text}");
        assert_eq!(
            differences(
                &catalog,
                &[item("gold", 1000, 25), item("mud", -1, 70), item("ruby", 5, 3)]
            ),
            vec![]
        );
        assert_eq!(warning(&[], "c.yaml", Path::new("d"), "x"), "");
    }
}
