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

/// Ids per chunk. An added item copies one chunk and the list of chunks (not the whole
/// table), so an update that adds an item to a catalog of a million costs the core thread
/// about 2,000 reference-count increments, not a million.
const CHUNK: usize = 1024;

/// An immutable table: full chunks of [`CHUNK`] ids, the last one possibly shorter.
#[derive(Clone)]
struct Table {
    chunks: Arc<[Arc<[Arc<str>]>]>,
    len: usize,
}

impl Table {
    fn get(&self, i: usize) -> Option<&str> {
        if i >= self.len {
            return None;
        }
        self.chunks.get(i / CHUNK)?.get(i % CHUNK).map(|id| &**id)
    }

    /// A copy with `id` appended: shares every full chunk with `self`.
    fn push(&self, id: &str) -> Table {
        let mut chunks: Vec<Arc<[Arc<str>]>> = self.chunks.to_vec();
        match chunks.last_mut() {
            Some(last) if last.len() < CHUNK => {
                *last = last.iter().cloned().chain(std::iter::once(Arc::from(id))).collect();
            }
            _ => chunks.push(Arc::from([Arc::from(id)])),
        }
        Table { chunks: chunks.into(), len: self.len + 1 }
    }
}

/// The current table. The core thread replaces it (under the lock) when an item is added;
/// readers take the lock only to clone it (an `Arc`), and only when their copy is too short.
pub(crate) struct IdCell {
    table: Mutex<Table>,
}

impl IdCell {
    /// The ids of `pool`'s items, in index order.
    pub(crate) fn new(pool: &Pool) -> IdCell {
        let ids: Vec<Arc<str>> = (0..pool.len())
            .filter_map(|i| pool.item_id(ItemIndex(u32::try_from(i).ok()?)))
            .map(Arc::from)
            .collect();
        let len = ids.len();
        let chunks = ids.chunks(CHUNK).map(Arc::from).collect();
        IdCell { table: Mutex::new(Table { chunks, len }) }
    }

    fn load(&self) -> Table {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records `id` at `index` when `index` is the next free one (an update added an item);
    /// an update of an existing item changes nothing here. Called by the core thread before
    /// it serves the next draw. Allocates (a chunk and the chunk list): updates are off the
    /// hot path.
    pub(crate) fn added(&self, index: ItemIndex, id: &str) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if index.0 as usize == table.len {
            *table = table.push(id);
        }
    }
}

/// Item ids by index: resolves an [`Outcome`](super::Outcome)'s item to its id without a
/// state round trip and without allocating.
///
/// A handle holds an immutable copy of the table, shared (`Arc`) with the engine and every
/// other handle. A lookup of an index the copy does not hold (an item added by
/// [`Engine::update`](crate::Engine::update) since) reloads the engine's current table once:
/// a lock and an `Arc` clone, no allocation. Get one with
/// [`Engine::item_ids`](crate::Engine::item_ids) or
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
    table: Table,
}

impl fmt::Debug for ItemIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemIds").field("len", &self.table.len).finish_non_exhaustive()
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
        if i >= self.table.len {
            self.refresh();
        }
        self.table.get(i)
    }

    /// Takes the engine's current table (a lock and an `Arc` clone).
    pub fn refresh(&mut self) {
        self.table = self.cell.load();
    }

    /// Items in this copy (it may lack items added since; see [`ItemIds::refresh`]).
    #[must_use]
    pub fn len(&self) -> usize {
        self.table.len
    }

    /// True when this copy holds no item.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.table.len == 0
    }

    /// The ids in index order, as of this copy.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.table.chunks.iter().flat_map(|chunk| chunk.iter().map(|id| &**id))
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
        assert_eq!(ids.len(), 1);
        assert_eq!(ids.get(ItemIndex(1)), None);
        cell.added(ItemIndex(1), "mud");
        // An update of an existing item, or an index past the next free one, changes nothing.
        cell.added(ItemIndex(0), "other");
        cell.added(ItemIndex(5), "skipped");
        assert_eq!(ids.len(), 1, "a copy is immutable until it misses");
        assert_eq!(ids.get(ItemIndex(1)), Some("mud"));
        assert_eq!(ids.get(ItemIndex(0)), Some("gold"));
        assert_eq!(ids.iter().collect::<Vec<_>>(), ["gold", "mud"]);
        assert_eq!(ids.get(ItemIndex(2)), None);
    }

    #[test]
    fn chunks_fill_and_start_across_boundaries() {
        let catalog: Vec<ItemSpec> =
            (0..CHUNK - 1).map(|i| ItemSpec::new(&format!("i{i}"), 1, 1)).collect();
        let pool = Pool::new(&catalog, Rng::from_seed(1)).unwrap();
        let cell = Arc::new(IdCell::new(&pool));
        let before = ItemIds::new(Arc::clone(&cell));
        let mut first_full = None;
        for i in CHUNK - 1..2 * CHUNK + 3 {
            cell.added(ItemIndex(i as u32), &format!("i{i}"));
            if i == CHUNK - 1 {
                first_full = Some(ItemIds::new(Arc::clone(&cell)));
            }
        }
        let mut ids = ItemIds::new(Arc::clone(&cell));
        assert_eq!(ids.len(), 2 * CHUNK + 3);
        for i in [0, CHUNK - 2, CHUNK - 1, CHUNK, 2 * CHUNK - 1, 2 * CHUNK, 2 * CHUNK + 2] {
            assert_eq!(ids.get(ItemIndex(i as u32)), Some(format!("i{i}").as_str()), "#{i}");
        }
        assert_eq!(ids.get(ItemIndex(2 * CHUNK as u32 + 3)), None);
        let all: Vec<String> = ids.iter().map(str::to_owned).collect();
        let expected: Vec<String> = (0..2 * CHUNK + 3).map(|i| format!("i{i}")).collect();
        assert_eq!(all, expected);
        // Older copies still read their own length; full chunks are shared, not copied.
        assert_eq!(before.len(), CHUNK - 1);
        let first_full = first_full.unwrap();
        assert_eq!(first_full.len(), CHUNK);
        assert!(Arc::ptr_eq(&ids.table.chunks[0], &first_full.table.chunks[0]));
    }
}
