//! Weighted selection over live weights with a Fenwick (binary indexed) tree.
//!
//! `sample` descends the implicit tree in `log2(capacity)` steps (Fenwick 1994, "A new data
//! structure for cumulative frequency tables"); `set` is a point update in as many steps. The
//! tree is sized once to a power of two, so neither allocates. MEASURED.md: descent over 100
//! items ≈ 13 ns, 10k ≈ 50 ns, 1M ≈ 660 ns.

/// Fenwick tree over `u64` weights, indexable by item position.
#[derive(Clone, Debug)]
pub struct Selector {
    /// 1-based Fenwick array; `tree[0]` is unused. Length is `capacity + 1`.
    tree: Box<[u64]>,
    /// The weight of each position, kept to turn `set` into a delta.
    weights: Box<[u64]>,
    total: u64,
}

impl Selector {
    /// A selector over `weights`, with room for at least `capacity` items.
    #[must_use]
    pub fn new(weights: &[u64], capacity: usize) -> Selector {
        let capacity = capacity.max(weights.len()).max(1).next_power_of_two();
        let mut tree = vec![0_u64; capacity + 1].into_boxed_slice();
        let mut stored = vec![0_u64; capacity].into_boxed_slice();
        stored[..weights.len()].copy_from_slice(weights);
        // Linear-time construction: each node pushes its sum to its parent.
        for i in 1..=capacity {
            tree[i] += stored[i - 1];
            let parent = i + (i & i.wrapping_neg());
            if parent <= capacity {
                tree[parent] += tree[i];
            }
        }
        let total = stored.iter().sum();
        Selector { tree, weights: stored, total }
    }

    /// Number of positions the tree can hold without growing.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.weights.len()
    }

    /// Sum of all weights.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Weight stored at `index`.
    #[must_use]
    pub fn weight(&self, index: usize) -> u64 {
        self.weights[index]
    }

    /// Sets the weight at `index` (`index < capacity`).
    #[inline]
    pub fn set(&mut self, index: usize, weight: u64) {
        let old = self.weights[index];
        if old == weight {
            return;
        }
        self.weights[index] = weight;
        self.total = self.total - old + weight;
        let capacity = self.weights.len();
        let mut i = index + 1;
        while i <= capacity {
            // Wrapping arithmetic applies a negative delta without signed casts; every node
            // stays the exact sum of its range, so it never really wraps.
            self.tree[i] = self.tree[i].wrapping_sub(old).wrapping_add(weight);
            i += i & i.wrapping_neg();
        }
    }

    /// The position whose cumulative range contains `value`; `value < total()`.
    ///
    /// Positions with weight 0 are never returned.
    #[inline]
    #[must_use]
    pub fn sample(&self, mut value: u64) -> usize {
        debug_assert!(value < self.total, "value={value} total={}", self.total);
        let mut pos = 0_usize;
        let mut step = self.weights.len();
        while step > 0 {
            let next = pos + step;
            // `next <= capacity` always holds: capacity is a power of two and `pos` is a sum
            // of distinct smaller powers of two.
            let node = self.tree[next];
            if node <= value {
                pos = next;
                value -= node;
            }
            step >>= 1;
        }
        debug_assert!(pos < self.weights.len());
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::Selector;
    use crate::pool::deadline::{deadline, UNIT_TEST_DEADLINE};
    use proptest::prelude::*;

    fn linear(weights: &[u64], mut value: u64) -> usize {
        for (i, w) in weights.iter().enumerate() {
            if value < *w {
                return i;
            }
            value -= w;
        }
        unreachable!("value beyond total")
    }

    proptest! {
        #[test]
        fn sample_equals_linear_prefix_scan(
            weights in proptest::collection::vec(0_u64..1_000, 1..200),
            raw in any::<u64>(),
        ) {
            let _deadline = deadline("sample_equals_linear_prefix_scan", UNIT_TEST_DEADLINE);
            let total: u64 = weights.iter().sum();
            prop_assume!(total > 0);
            let sel = Selector::new(&weights, weights.len());
            let value = raw % total;
            prop_assert_eq!(sel.sample(value), linear(&weights, value));
        }

        #[test]
        fn updates_keep_sampling_exact(
            weights in proptest::collection::vec(0_u64..1_000, 1..64),
            changes in proptest::collection::vec((any::<prop::sample::Index>(), 0_u64..1_000), 0..64),
            raw in any::<u64>(),
        ) {
            let _deadline = deadline("updates_keep_sampling_exact", UNIT_TEST_DEADLINE);
            let mut model = weights.clone();
            let mut sel = Selector::new(&weights, weights.len());
            for (index, w) in changes {
                let i = index.index(model.len());
                model[i] = w;
                sel.set(i, w);
            }
            let total: u64 = model.iter().sum();
            prop_assert_eq!(sel.total(), total);
            prop_assume!(total > 0);
            let value = raw % total;
            prop_assert_eq!(sel.sample(value), linear(&model, value));
        }
    }

    #[test]
    fn zero_weight_positions_are_skipped() {
        let _deadline = deadline("zero_weight_positions_are_skipped", UNIT_TEST_DEADLINE);
        let sel = Selector::new(&[0, 5, 0, 0, 3], 5);
        assert_eq!(sel.sample(0), 1);
        assert_eq!(sel.sample(4), 1);
        assert_eq!(sel.sample(5), 4);
        assert_eq!(sel.sample(7), 4);
    }
}
