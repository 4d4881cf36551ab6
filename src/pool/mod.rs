//! The reward pool: catalog, quantities, weights and weighted draws.
//!
//! Pure and deterministic: no I/O, no clock, no threads. The core thread owns one `Pool`;
//! recovery rebuilds one from a snapshot and the log without drawing again.

#[cfg(any(test, feature = "testing"))]
pub mod deadline;
mod item;
mod keys;
mod rng;
mod seed;
mod selector;

use std::collections::HashMap;
use std::fmt;

use sha2::{Digest, Sha256};

pub use item::{ItemIndex, ItemSpec, Quantity, RequestId};
use keys::KeyTable;
pub use keys::{
    KeyLookup, KeyPages, KeyRecord, KeyState, KeyWindow, DRAWS_PER_KEY, HOURS_DEFAULT, HOURS_MAX,
    KEYS_DEFAULT, KEYS_MAX, KEY_DRAWS_MIN,
};
pub use rng::{Rng, GENERATOR};
pub use seed::DrawSeed;
pub use selector::Selector;

/// Largest number of items a pool holds (item indices are `u32`, and one value marks "empty").
pub const ITEM_COUNT_MAX: usize = 1 << 24;

/// The result of one draw: the request id the core assigned, and the item, if any was left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Draw {
    /// Assigned in log order.
    pub request_id: RequestId,
    /// `None` when nothing was available: a normal outcome, not an error.
    pub item: Option<ItemIndex>,
}

/// One item as `state` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemState {
    /// The item's id.
    pub id: String,
    /// Units left.
    pub quantity: Quantity,
    /// Configured weight (its live weight is 0 once exhausted).
    pub weight: u32,
}

impl ItemState {
    /// True when a draw can pick this item: it has units left (or is unlimited) and a
    /// weight above 0.
    #[must_use]
    pub fn is_available(&self) -> bool {
        self.quantity.is_available() && self.weight > 0
    }

    /// The item's *effective probability*: its chance of being picked by the next draw,
    /// `weight / available_weight`, where `available_weight` is
    /// [`available_weight`] of the items this one belongs to. 0 for an item that is not
    /// available (exhausted or weight 0), and for every item when nothing is available
    /// (`available_weight` is 0: the next draw is empty).
    ///
    /// A ratio for display and audits (SPEC §1's odds disclosed), not what the selector
    /// computes with: the sum of `u32` weights is exact in `u64`; the ratio is rounded to the
    /// nearest `f64`.
    #[must_use]
    pub fn effective_probability(&self, available_weight: u64) -> f64 {
        if !self.is_available() || available_weight == 0 {
            return 0.0;
        }
        debug_assert!(
            u64::from(self.weight) <= available_weight,
            "weight {} above the available weight {available_weight}",
            self.weight
        );
        f64::from(self.weight) / available_weight as f64
    }
}

/// The sum of the weights of the items a draw can pick (units left or unlimited): the
/// denominator of every [`ItemState::effective_probability`]. Exact: at most
/// [`ITEM_COUNT_MAX`] weights of at most `u32::MAX` each fit in a `u64`.
#[must_use]
pub fn available_weight(items: &[ItemState]) -> u64 {
    items.iter().filter(|i| i.is_available()).map(|i| u64::from(i.weight)).sum()
}

/// A full copy of the pool's state: what snapshots store and `state` prints.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PoolState {
    /// The last request id handed out (0 before the first draw).
    pub last_request_id: RequestId,
    /// Items in index order.
    pub items: Vec<ItemState>,
    /// The idempotency-key window: its bounds and its keys, oldest first.
    pub keys: KeyState,
}

impl PoolState {
    /// Every item's effective probability given the current stock, in index order (see
    /// [`ItemState::effective_probability`]): they sum to 1 when any item is available, and
    /// are all 0 when none is.
    #[must_use]
    pub fn effective_probabilities(&self) -> Vec<f64> {
        let available = available_weight(&self.items);
        self.items.iter().map(|i| i.effective_probability(available)).collect()
    }

    /// SHA-256 over a canonical encoding: equal states give equal hashes.
    #[must_use]
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.last_request_id.0.to_le_bytes());
        h.update((self.items.len() as u64).to_le_bytes());
        for item in &self.items {
            h.update((item.id.len() as u64).to_le_bytes());
            h.update(item.id.as_bytes());
            h.update(item.quantity.to_i64().to_le_bytes());
            h.update(u64::from(item.weight).to_le_bytes());
        }
        // The keys' outcomes, not their times: the log's clock and the core's may differ by
        // a second.
        h.update((self.keys.records.len() as u64).to_le_bytes());
        for r in &self.keys.records {
            h.update(r.key.to_le_bytes());
            h.update(r.first.0.to_le_bytes());
            h.update(r.count.to_le_bytes());
        }
        for item in &self.keys.items {
            h.update(item.map_or(u32::MAX, |i| i.0).to_le_bytes());
        }
        h.finalize().into()
    }
}

/// Refuses more than [`ITEM_COUNT_MAX`] items (one check for a restored pool and an added
/// item, tested at its boundary without building 2^24 items).
fn check_item_count(count: usize) -> Result<(), PoolError> {
    if count > ITEM_COUNT_MAX {
        return Err(PoolError::TooManyItems { count });
    }
    Ok(())
}

/// Why the pool refused an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolError {
    /// An item id was empty.
    EmptyId {
        /// Position in the catalog.
        position: usize,
    },
    /// Two items share an id.
    DuplicateId {
        /// The repeated id.
        id: String,
    },
    /// More items than [`ITEM_COUNT_MAX`].
    TooManyItems {
        /// How many were asked for.
        count: usize,
    },
    /// A new item was added without a quantity or weight.
    IncompleteNewItem {
        /// The new item's id.
        id: String,
    },
    /// The log says a unit was drawn from an item that had none left.
    Overdraw {
        /// The item's position.
        index: u32,
    },
    /// The log names an item that does not exist.
    UnknownIndex {
        /// The position named.
        index: u32,
    },
    /// The log's request ids do not increase.
    RequestIdNotIncreasing {
        /// The last id applied.
        last: u64,
        /// The id that followed it.
        next: u64,
    },
    /// A key read back from the log or a snapshot is 0, or has 0 draws or more than the
    /// window keeps for one request.
    KeyCount {
        /// The key.
        key: u128,
        /// Its draws.
        count: u32,
        /// The most one keyed request may have.
        max: u32,
    },
    /// A key's draws read back from the log do not follow it: another request id, or a
    /// new key before all its draws.
    KeyDraws {
        /// The key.
        key: u128,
        /// The request id its next draw should have.
        expected: u64,
        /// The request id found (0: another key came first).
        got: u64,
    },
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::EmptyId { position } => write!(f, "item #{position}: item_id is empty"),
            PoolError::DuplicateId { id } => write!(f, "item {id:?}: item_id appears twice"),
            PoolError::TooManyItems { count } => {
                write!(f, "{count} items: at most {ITEM_COUNT_MAX} are supported")
            }
            PoolError::IncompleteNewItem { id } => {
                write!(f, "item {id:?} is new: both quantity and weight are required")
            }
            PoolError::Overdraw { index } => {
                write!(f, "item #{index}: a draw was recorded with no unit left")
            }
            PoolError::UnknownIndex { index } => write!(f, "item #{index} does not exist"),
            PoolError::RequestIdNotIncreasing { last, next } => {
                write!(f, "request id {next} follows {last}: ids must increase")
            }
            PoolError::KeyCount { key, count, max } => write!(
                f,
                "key {key:032x} with {count} draws: a key is not 0 and has 1 to {max} draws"
            ),
            PoolError::KeyDraws { key, expected, got: 0 } => write!(
                f,
                "key {key:032x}: another key came before its draw with request id {expected}"
            ),
            PoolError::KeyDraws { key, expected, got } => write!(
                f,
                "key {key:032x}: its draw should have request id {expected}, the log has {got}"
            ),
        }
    }
}

impl std::error::Error for PoolError {}

/// Items, their quantities and weights, a selector over their live weights, and the last
/// request id.
#[derive(Debug)]
pub struct Pool {
    ids: Vec<String>,
    by_id: HashMap<String, ItemIndex>,
    quantities: Vec<Quantity>,
    weights: Vec<u32>,
    selector: Selector,
    rng: Rng,
    last_request_id: RequestId,
    /// Idempotency keys and their outcomes (allocated once, here).
    keys: KeyTable,
    /// Draws that found nothing available since this value was made (not persisted: an
    /// observer's counter, see [`Pool::empty_draws`]).
    empty_draws: u64,
}

impl Pool {
    /// A pool holding `items`, drawing with `rng`.
    ///
    /// # Errors
    /// An empty or duplicate id, or too many items.
    pub fn new(items: &[ItemSpec], rng: Rng) -> Result<Pool, PoolError> {
        let state = PoolState {
            last_request_id: RequestId(0),
            keys: KeyState::default(),
            items: items
                .iter()
                .map(|s| ItemState { id: s.id.clone(), quantity: s.quantity, weight: s.weight })
                .collect(),
        };
        Pool::from_state(&state, rng)
    }

    /// A pool restored from a snapshot's state (its key window included, with the bounds
    /// it was saved with: see [`Pool::set_key_window`]).
    ///
    /// # Errors
    /// An empty or duplicate id, too many items, or a key window that does not add up.
    pub fn from_state(state: &PoolState, rng: Rng) -> Result<Pool, PoolError> {
        let count = state.items.len();
        check_item_count(count)?;
        let mut by_id = HashMap::with_capacity(count);
        for (position, item) in state.items.iter().enumerate() {
            if item.id.is_empty() {
                return Err(PoolError::EmptyId { position });
            }
            let index = ItemIndex(u32::try_from(position).expect("bounded by ITEM_COUNT_MAX"));
            if by_id.insert(item.id.clone(), index).is_some() {
                return Err(PoolError::DuplicateId { id: item.id.clone() });
            }
        }
        let quantities: Vec<Quantity> = state.items.iter().map(|i| i.quantity).collect();
        let weights: Vec<u32> = state.items.iter().map(|i| i.weight).collect();
        let live: Vec<u64> = quantities.iter().zip(&weights).map(|(q, w)| live(*q, *w)).collect();
        let mut pool = Pool {
            ids: state.items.iter().map(|i| i.id.clone()).collect(),
            by_id,
            selector: Selector::new(&live, count),
            quantities,
            weights,
            rng,
            last_request_id: state.last_request_id,
            keys: KeyTable::new(checked_window(state.keys.window)),
            empty_draws: 0,
        };
        pool.load_keys(&state.keys)?;
        Ok(pool)
    }

    /// Inserts a window's keys (oldest first) into the table.
    fn load_keys(&mut self, keys: &KeyState) -> Result<(), PoolError> {
        let mut items = keys.items.iter();
        for r in &keys.records {
            self.check_key(r.key, r.count)?;
            self.keys.replay(*r);
            for _ in 0..r.count {
                let item = items.next().ok_or(PoolError::KeyDraws {
                    key: r.key,
                    expected: self.keys.pending_id(),
                    got: 0,
                })?;
                self.keys.record(*item);
            }
        }
        Ok(())
    }

    fn check_key(&self, key: u128, count: u32) -> Result<(), PoolError> {
        let max = self.keys.count_max();
        if key == 0 || count == 0 || count > max {
            return Err(PoolError::KeyCount { key, count, max });
        }
        Ok(())
    }

    /// Gives the key window new bounds, keeping its keys (the oldest go first when the new
    /// window is smaller). Allocates the new table: for engine start, not the hot path.
    ///
    /// # Panics
    /// If `window.keys` is 0 or above [`KEYS_MAX`].
    pub fn set_key_window(&mut self, window: KeyWindow) {
        if window == self.keys.window() {
            return;
        }
        let mut state = self.keys.state();
        state.window = window;
        self.keys = KeyTable::new(window);
        self.load_keys(&state).expect("a window's own keys load back");
    }

    /// Allocates the key window now (the engine does at start, so that no keyed request
    /// ever allocates); without it, the first key allocates it. Idempotent.
    pub fn allocate_keys(&mut self) {
        self.keys.allocate();
    }

    /// The key window's block, once allocated: see [`KeyPages`].
    #[must_use]
    pub fn key_pages(&self) -> Option<KeyPages> {
        self.keys.pages()
    }

    /// The key window's bounds.
    #[must_use]
    pub fn key_window(&self) -> KeyWindow {
        self.keys.window()
    }

    /// Looks up a request of `count` draws carrying `key` (not 0) at `now_s` (seconds since
    /// the Unix epoch). [`KeyLookup::New`]: the key is now known, and the pool's next
    /// `count` draws are its outcomes (draw them right away); otherwise draw nothing. No
    /// allocation.
    ///
    /// # Panics
    /// If `count` is 0 or above what the window keeps for one request (at least
    /// [`KEY_DRAWS_MIN`]); in debug builds, if `key` is 0.
    #[inline]
    pub fn key(&mut self, key: u128, count: u32, now_s: u32) -> KeyLookup {
        self.keys.lookup(key, count, self.last_request_id.0 + 1, now_s)
    }

    /// Starts loading `key`'s home slot of the key window's index into the cache: called
    /// ahead of [`Pool::key`] for a batch of keys, so their cache misses overlap each other
    /// and the draws served meanwhile. No effect on the window.
    #[inline]
    pub fn touch_key(&self, key: u128) {
        self.keys.touch(key);
    }

    /// Like [`Pool::touch_key`], for the index slots of the keys that the next `n` new keys
    /// will evict from a full window.
    #[inline]
    pub fn touch_key_victims(&mut self, n: u64) {
        self.keys.touch_victims(n);
    }

    /// The outcome at position `at` of the key window (from [`KeyLookup::Replay`]: its
    /// `count` outcomes are at `at`, `at + 1`, ...). Read them before the next call to
    /// [`Pool::key`], which may evict them.
    #[inline]
    #[must_use]
    pub fn key_item(&self, at: u64) -> Option<ItemIndex> {
        self.keys.item(at)
    }

    /// Applies a key read back from the log, right before its draws: the next `count`
    /// draws replayed ([`Pool::replay_draw`], request ids `first`, `first + 1`, ...) become
    /// the key's outcome, inserted at `unix_s` (the time the log recorded). A key already
    /// in the window is superseded.
    ///
    /// # Errors
    /// A key of 0, a count of 0 or above the window's per-request bound, or a key whose
    /// previous key still waits for draws.
    pub fn replay_key(
        &mut self,
        key: u128,
        first: RequestId,
        count: u32,
        unix_s: u32,
    ) -> Result<(), PoolError> {
        self.check_key(key, count)?;
        if self.keys.is_recording() {
            return Err(PoolError::KeyDraws { key, expected: self.keys.pending_id(), got: 0 });
        }
        if first <= self.last_request_id {
            return Err(PoolError::RequestIdNotIncreasing {
                last: self.last_request_id.0,
                next: first.0,
            });
        }
        self.keys.replay(KeyRecord { key, first, count, unix_s });
        Ok(())
    }

    /// Draws one unit: picks an available item with probability weight / total live weight
    /// and takes one unit of it. Assigns the next request id whether or not an item was left.
    #[inline(always)]
    pub fn draw(&mut self) -> Draw {
        let draw = self.pick();
        self.drawn(draw)
    }

    /// [`Pool::draw`] for the draws of a keyed request (right after [`Pool::key`] returned
    /// [`KeyLookup::New`]): the same draw, its outcome recorded for the key inline rather
    /// than by a call per draw. For a caller that is out of line already (the core thread's
    /// keyed path), so that `draw` stays small where keys are absent (measured: the call
    /// per draw cost more than the recording).
    #[inline(always)]
    pub fn draw_keyed(&mut self) -> Draw {
        let draw = self.pick();
        if self.keys.is_recording() {
            self.keys.record(draw.item);
        }
        draw
    }

    /// The draw itself, without a key's recording.
    #[inline(always)]
    fn pick(&mut self) -> Draw {
        self.last_request_id.0 += 1;
        let request_id = self.last_request_id;
        let total = self.selector.total();
        if total == 0 {
            // Counted here, on the branch that is taken only when nothing is left: a draw
            // that wins costs nothing more.
            self.empty_draws += 1;
            return Draw { request_id, item: None };
        }
        let index = self.selector.sample(self.rng.below(total, request_id.0));
        self.take(index);
        Draw { request_id, item: Some(ItemIndex(index as u32)) }
    }

    /// Draws from now on with `rng` (a new segment's generator: `DrawSeed::rng`).
    pub fn set_rng(&mut self, rng: Rng) {
        self.rng = rng;
    }

    /// The item a draw with request id `request_id` takes from the pool as it is now, under
    /// `rng`: what [`Pool::draw`] would hand out for that id, without drawing (`None`: no
    /// item has a unit left). How an audit recomputes a logged draw.
    #[must_use]
    pub fn choice_at(&self, rng: Rng, request_id: RequestId) -> Option<ItemIndex> {
        let total = self.selector.total();
        if total == 0 {
            return None;
        }
        let index = self.selector.sample(rng.below(total, request_id.0));
        Some(ItemIndex(index as u32))
    }

    /// A draw's outcome, recorded first as a new key's when one is waiting for its draws.
    /// The check is one load; the recording stays out of line, so `draw` stays small enough
    /// to inline into the core loop (measured: with it inline, `draw` was no longer inlined
    /// and single draws ran ~13 % slower).
    #[inline(always)]
    fn drawn(&mut self, draw: Draw) -> Draw {
        if self.keys.is_recording() {
            self.record_key(draw.item);
        }
        draw
    }

    #[cold]
    #[inline(never)]
    fn record_key(&mut self, item: Option<ItemIndex>) {
        self.keys.record(item);
    }

    /// Applies a draw read back from the log: never draws again (replay is deterministic).
    ///
    /// # Errors
    /// When the log's request id does not increase, the item does not exist, or it had no
    /// unit left: the log and the state disagree.
    pub fn replay_draw(&mut self, draw: Draw) -> Result<(), PoolError> {
        if draw.request_id <= self.last_request_id {
            return Err(PoolError::RequestIdNotIncreasing {
                last: self.last_request_id.0,
                next: draw.request_id.0,
            });
        }
        if self.keys.is_recording() && self.keys.pending_id() != draw.request_id.0 {
            return Err(PoolError::KeyDraws {
                key: self.keys.recording_key(),
                expected: self.keys.pending_id(),
                got: draw.request_id.0,
            });
        }
        if let Some(ItemIndex(index)) = draw.item {
            let i = index as usize;
            match self.quantities.get(i) {
                None => return Err(PoolError::UnknownIndex { index }),
                Some(Quantity::Finite(0)) => return Err(PoolError::Overdraw { index }),
                Some(_) => self.take(i),
            }
        }
        self.last_request_id = draw.request_id;
        if self.keys.is_recording() {
            self.keys.record(draw.item);
        }
        Ok(())
    }

    /// Always inlined: `draw` already is wherever it is used; without it the keyed path
    /// (`serve_keyed`, out of line) called it once per draw (perf: 6 % of its samples).
    #[inline(always)]
    fn take(&mut self, index: usize) {
        if let Quantity::Finite(n) = &mut self.quantities[index] {
            assert!(*n > 0, "selector picked exhausted item #{index}");
            *n -= 1;
            if *n == 0 {
                self.selector.set(index, 0);
            }
        }
    }

    /// Sets an item's quantity and/or weight, adding the item when it is new (then both are
    /// required). Returns the item's index and its full state after the update.
    ///
    /// # Errors
    /// An empty id, a new item without quantity or weight, or too many items.
    pub fn update(
        &mut self,
        id: &str,
        quantity: Option<Quantity>,
        weight: Option<u32>,
    ) -> Result<(ItemIndex, ItemState), PoolError> {
        if id.is_empty() {
            return Err(PoolError::EmptyId { position: self.ids.len() });
        }
        let index = match self.by_id.get(id) {
            Some(index) => *index,
            None => {
                let (Some(q), Some(w)) = (quantity, weight) else {
                    return Err(PoolError::IncompleteNewItem { id: id.to_owned() });
                };
                return self.add(id, q, w);
            }
        };
        let i = index.0 as usize;
        if let Some(q) = quantity {
            self.quantities[i] = q;
        }
        if let Some(w) = weight {
            self.weights[i] = w;
        }
        self.selector.set(i, live(self.quantities[i], self.weights[i]));
        Ok((index, self.item(index)))
    }

    fn add(
        &mut self,
        id: &str,
        quantity: Quantity,
        weight: u32,
    ) -> Result<(ItemIndex, ItemState), PoolError> {
        let count = self.ids.len() + 1;
        check_item_count(count)?;
        let index = ItemIndex(u32::try_from(self.ids.len()).expect("bounded by ITEM_COUNT_MAX"));
        self.ids.push(id.to_owned());
        self.by_id.insert(id.to_owned(), index);
        self.quantities.push(quantity);
        self.weights.push(weight);
        if count > self.selector.capacity() {
            let lives: Vec<u64> =
                self.quantities.iter().zip(&self.weights).map(|(q, w)| live(*q, *w)).collect();
            self.selector = Selector::new(&lives, count * 2);
        } else {
            self.selector.set(index.0 as usize, live(quantity, weight));
        }
        Ok((index, self.item(index)))
    }

    /// Applies an update read back from the log: the item at `index` (or a new item when
    /// `index` is the next free one) gets exactly this state.
    ///
    /// # Errors
    /// When `index` skips ahead, or names an item with another id.
    pub fn replay_update(&mut self, index: ItemIndex, item: &ItemState) -> Result<(), PoolError> {
        let i = index.0 as usize;
        if i == self.ids.len() {
            self.add(&item.id, item.quantity, item.weight)?;
            return Ok(());
        }
        match self.ids.get(i) {
            Some(id) if *id == item.id => {
                self.update(&item.id, Some(item.quantity), Some(item.weight))?;
                Ok(())
            }
            _ => Err(PoolError::UnknownIndex { index: index.0 }),
        }
    }

    /// Number of items (available or not).
    #[must_use]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when the pool has no items at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The id of the item at `index`, if it exists.
    #[must_use]
    pub fn item_id(&self, index: ItemIndex) -> Option<&str> {
        self.ids.get(index.0 as usize).map(String::as_str)
    }

    /// The index of the item called `id`, if it exists.
    #[must_use]
    pub fn index_of(&self, id: &str) -> Option<ItemIndex> {
        self.by_id.get(id).copied()
    }

    /// One item's state.
    ///
    /// # Panics
    /// If `index` is out of range.
    #[must_use]
    pub fn item(&self, index: ItemIndex) -> ItemState {
        let i = index.0 as usize;
        ItemState { id: self.ids[i].clone(), quantity: self.quantities[i], weight: self.weights[i] }
    }

    /// How many units of the item at `index` remain, if it exists (no copy of its id: for
    /// the core thread's publication of remaining quantities, `engine::metrics`).
    #[inline]
    #[must_use]
    pub fn quantity(&self, index: ItemIndex) -> Option<Quantity> {
        self.quantities.get(index.0 as usize).copied()
    }

    /// Draws ([`Pool::draw`], [`Pool::draw_keyed`]) that found nothing available since this
    /// pool was made or restored; replayed draws are not counted.
    #[must_use]
    pub fn empty_draws(&self) -> u64 {
        self.empty_draws
    }

    /// The last request id handed out.
    #[must_use]
    pub fn last_request_id(&self) -> RequestId {
        self.last_request_id
    }

    /// Sum of the weights of the items still available.
    #[must_use]
    pub fn live_weight(&self) -> u64 {
        self.selector.total()
    }

    /// A full copy of the state (allocates: not for the hot path).
    #[must_use]
    pub fn state(&self) -> PoolState {
        PoolState {
            last_request_id: self.last_request_id,
            items: self.items(),
            keys: self.keys.state(),
        }
    }

    /// Every item's state, in index order (the items of [`Pool::state`], without the key
    /// window).
    #[must_use]
    pub fn items(&self) -> Vec<ItemState> {
        (0..self.ids.len()).map(|i| self.item(ItemIndex(i as u32))).collect()
    }

    /// Checks that the selector agrees with quantities and weights.
    ///
    /// # Panics
    /// When it does not: a bug in this module.
    pub fn assert_invariants(&self) {
        let mut total = 0;
        for i in 0..self.ids.len() {
            let expected = live(self.quantities[i], self.weights[i]);
            assert_eq!(self.selector.weight(i), expected, "item #{i} live weight");
            total += expected;
        }
        assert_eq!(self.selector.total(), total, "selector total");
    }
}

/// `window`, or the default when a snapshot's bounds are out of range (the config never
/// writes those; a damaged snapshot fails its checksum first).
fn checked_window(window: KeyWindow) -> KeyWindow {
    if (1..=KEYS_MAX).contains(&window.keys) && (1..=HOURS_MAX).contains(&window.hours) {
        window
    } else {
        KeyWindow::default()
    }
}

fn live(quantity: Quantity, weight: u32) -> u64 {
    if quantity.is_available() {
        u64::from(weight)
    } else {
        0
    }
}

#[cfg(test)]
mod tests;
