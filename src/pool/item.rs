//! Item identity and per-item state: what a catalog entry says and what the pool tracks.

use std::fmt;

/// Position of an item in the pool, stable for the pool's lifetime (new items are appended).
///
/// This is what the log stores for a draw: four bytes instead of the item's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemIndex(pub u32);

/// Request ids are assigned by the core thread in log order: unique and strictly increasing,
/// also across restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How many units of an item remain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantity {
    /// This many units remain; 0 means exhausted.
    Finite(u64),
    /// Never runs out (`-1` in config files and JSON).
    Unlimited,
}

impl Quantity {
    /// The external encoding: `-1` for unlimited, the count otherwise.
    #[must_use]
    pub fn to_i64(self) -> i64 {
        match self {
            Quantity::Unlimited => -1,
            Quantity::Finite(n) => i64::try_from(n).unwrap_or(i64::MAX),
        }
    }

    /// Decodes the external encoding; `None` for anything below `-1`.
    #[must_use]
    pub fn from_i64(raw: i64) -> Option<Quantity> {
        match raw {
            -1 => Some(Quantity::Unlimited),
            n => u64::try_from(n).ok().map(Quantity::Finite),
        }
    }

    /// True while at least one unit can be drawn.
    #[must_use]
    pub fn is_available(self) -> bool {
        !matches!(self, Quantity::Finite(0))
    }
}

/// One catalog entry: an item's id, how many units it starts with, and its weight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemSpec {
    /// Unique, non-empty name.
    pub id: String,
    /// Starting quantity.
    pub quantity: Quantity,
    /// Integer weight; 0 means never drawn.
    pub weight: u32,
}

impl ItemSpec {
    /// A catalog entry; `quantity` uses the external encoding (-1 = unlimited).
    ///
    /// # Panics
    /// If `quantity < -1` (validated config never contains one).
    #[must_use]
    pub fn new(id: &str, quantity: i64, weight: u32) -> ItemSpec {
        let quantity = Quantity::from_i64(quantity).expect("quantity must be -1 or more");
        ItemSpec { id: id.to_owned(), quantity, weight }
    }
}
