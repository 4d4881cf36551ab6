//! Item ids by index, shared with callers: an outcome names its item by index
//! ([`ItemIndex`]), and [`ItemIds`] turns that index into the item's id without asking the
//! core thread for its state.
//!
//! Indices are stable: an item keeps its index for the life of the pool (also across
//! restarts, since recovery replays the log in order), and `update` appends new items at the
//! end. So the table only grows, and an immutable copy stays correct for every index it holds.
//! The core thread publishes a longer copy when an update adds an item, *before* it serves any
//! draw that could hand that item out; a caller's copy that does not know an index reloads
//! the shared one, which then does.

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::pool::{ItemIndex, Pool};

/// The current table. The core thread replaces it (under the lock) when an item is added;
/// readers take the lock only to clone the `Arc`, and only when their copy is too short.
pub(crate) struct IdCell {
    table: Mutex<Arc<[Arc<str>]>>,
}

impl IdCell {
    /// The ids of `pool`'s items, in index order.
    pub(crate) fn new(pool: &Pool) -> IdCell {
        let table: Arc<[Arc<str>]> = (0..pool.len())
            .filter_map(|i| pool.item_id(ItemIndex(u32::try_from(i).ok()?)))
            .map(Arc::from)
            .collect();
        IdCell { table: Mutex::new(table) }
    }

    fn load(&self) -> Arc<[Arc<str>]> {
        Arc::clone(&self.table.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Records `id` at `index` when `index` is the next free one (an update added an item);
    /// an update of an existing item changes nothing here. Called by the core thread before
    /// it serves the next draw. Allocates (a new table): updates are off the hot path.
    pub(crate) fn added(&self, index: ItemIndex, id: &str) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if index.0 as usize == table.len() {
            *table = table.iter().cloned().chain(std::iter::once(Arc::from(id))).collect();
        }
    }
}

/// Item ids by index: resolves an [`Outcome`](super::Outcome)'s item to its id without a
/// state round trip and without allocating.
///
/// A handle holds an immutable copy of the table, shared (`Arc`) with the engine and every
/// other handle. A lookup of an index the copy does not hold (an item added by
/// [`Engine::update`](super::Engine::update) since) reloads the engine's current table once:
/// a lock and an `Arc` clone, no allocation. Get one with
/// [`Engine::item_ids`](super::Engine::item_ids) or
/// [`Client::item_ids`](super::Client::item_ids); keep it next to the client (a separate
/// value, so it can be used inside a [`Client::drain`](super::Client::drain) callback).
///
/// ```
/// # use rewardpool::{Engine, EngineConfig, ItemSpec, MemoryJournal, Pool, Rng};
/// let pool = Pool::new(&[ItemSpec::new("gold", 1, 1)], Rng::from_seed(1))?;
/// let engine = Engine::start(pool, MemoryJournal::new(), EngineConfig::default())?;
/// let mut client = engine.client()?;
/// let mut ids = client.item_ids();
/// let outcome = client.draw()?;
/// assert_eq!(outcome.item_id(&mut ids), Some("gold"));
/// // The only unit is gone: the next draw wins nothing.
/// assert_eq!(client.draw()?.item_id(&mut ids), None);
/// # engine.shutdown()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ItemIds {
    cell: Arc<IdCell>,
    table: Arc<[Arc<str>]>,
}

impl fmt::Debug for ItemIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemIds").field("len", &self.table.len()).finish_non_exhaustive()
    }
}

impl ItemIds {
    pub(crate) fn new(cell: Arc<IdCell>) -> ItemIds {
        let table = cell.load();
        ItemIds { cell, table }
    }

    /// The id of the item at `index`; `None` only for an index this engine never handed out.
    /// Reloads the shared table when `index` is beyond this copy (an item added since).
    #[inline]
    pub fn get(&mut self, index: ItemIndex) -> Option<&str> {
        let i = index.0 as usize;
        if i >= self.table.len() {
            self.refresh();
        }
        self.table.get(i).map(|id| &**id)
    }

    /// Takes the engine's current table (a lock and an `Arc` clone).
    pub fn refresh(&mut self) {
        self.table = self.cell.load();
    }

    /// The ids in index order, as of this copy (it may lack items added since; see
    /// [`ItemIds::refresh`]).
    #[must_use]
    pub fn as_slice(&self) -> &[Arc<str>] {
        &self.table
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{ItemSpec, Rng};

    #[test]
    fn a_copy_reloads_for_an_index_added_after_it_was_taken() {
        let pool = Pool::new(&[ItemSpec::new("gold", 1, 1)], Rng::from_seed(1)).unwrap();
        let cell = Arc::new(IdCell::new(&pool));
        let mut ids = ItemIds::new(Arc::clone(&cell));
        assert_eq!(ids.as_slice().len(), 1);
        assert_eq!(ids.get(ItemIndex(1)), None);
        cell.added(ItemIndex(1), "mud");
        // An update of an existing item, or a stale index, changes nothing.
        cell.added(ItemIndex(0), "other");
        cell.added(ItemIndex(5), "skipped");
        assert_eq!(ids.as_slice().len(), 1, "a copy is immutable until it misses");
        assert_eq!(ids.get(ItemIndex(1)), Some("mud"));
        assert_eq!(ids.get(ItemIndex(0)), Some("gold"));
        assert_eq!(ids.as_slice().len(), 2);
        assert_eq!(ids.get(ItemIndex(2)), None);
    }
}
