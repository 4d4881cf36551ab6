//! The core plan: which core each pool's core thread gets and where its journal's helper
//! threads (flusher, preparer) run. A pure function of the pool count and the cores, so it
//! is tested without a machine of each shape.
//!
//! Rules, in order:
//! 1. Core threads take the first cores, one each (wrapping when there are more pools than
//!    cores: then they share).
//! 2. Helpers go to the cores left over, spread round-robin, so they never preempt any
//!    pool's core thread (measured: an unpinned flusher woken by its I/O interrupt took a
//!    third of the core thread's context switches in sync mode).
//! 3. With no core left over, a pool's helpers go to the next pool's core, never their own
//!    (the cheaper preemption: the helpers sleep on I/O most of the time); with a single
//!    core there is nowhere else, and the helpers stay unpinned (`None`).

/// Where one pool's threads run (core ids as the operating system numbers them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The pool's core thread.
    pub core: usize,
    /// Its journal's helper threads; `None` when the only core is the core thread's.
    pub helpers: Option<usize>,
}

/// The placement of `pools` pools on `cores` (the cores this process may use, e.g.
/// `engine::available_cores()`); empty when there are no cores (run unpinned).
#[must_use]
pub fn plan_cores(pools: usize, cores: &[usize]) -> Vec<Placement> {
    if cores.is_empty() {
        return Vec::new();
    }
    let spare = cores.get(pools..).unwrap_or_default();
    (0..pools)
        .map(|i| {
            let core = cores[i % cores.len()];
            let helpers = if spare.is_empty() {
                let next = cores[(i + 1) % cores.len().min(pools)];
                (next != core)
                    .then_some(next)
                    .or_else(|| cores.iter().copied().find(|c| *c != core))
            } else {
                Some(spare[i % spare.len()])
            };
            Placement { core, helpers }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cores(n: usize) -> Vec<usize> {
        (0..n).collect()
    }

    /// Checks the plan's promises for `pools` pools on `n` cores.
    fn check(pools: usize, n: usize) -> Vec<Placement> {
        let plan = plan_cores(pools, &cores(n));
        assert_eq!(plan.len(), pools);
        let core_threads: Vec<usize> = plan.iter().map(|p| p.core).collect();
        for p in &plan {
            assert!(p.core < n, "{p:?}");
            if let Some(h) = p.helpers {
                assert!(h < n, "{p:?}");
                assert_ne!(h, p.core, "helpers on their own core thread: {p:?}");
                if n > pools {
                    assert!(!core_threads.contains(&h), "helpers on a core thread: {plan:?}");
                }
            }
            if n > 1 {
                assert!(p.helpers.is_some(), "{p:?} on {n} cores");
            }
        }
        if pools <= n {
            let mut distinct = core_threads.clone();
            distinct.dedup();
            assert_eq!(distinct.len(), pools, "core threads share a core: {plan:?}");
        }
        plan
    }

    #[test]
    fn every_shape_keeps_its_promises() {
        for pools in [1, 2, 4] {
            for n in [1, 2, 4, 8] {
                check(pools, n);
            }
        }
    }

    #[test]
    fn one_pool_takes_a_core_and_its_helpers_the_next() {
        assert_eq!(check(1, 2), [Placement { core: 0, helpers: Some(1) }]);
        assert_eq!(check(1, 8), [Placement { core: 0, helpers: Some(1) }]);
        assert_eq!(plan_cores(1, &[3]), [Placement { core: 3, helpers: None }]);
    }

    #[test]
    fn spare_cores_take_the_helpers() {
        let plan = check(2, 4);
        assert_eq!(
            plan,
            [Placement { core: 0, helpers: Some(2) }, Placement { core: 1, helpers: Some(3) },]
        );
        let plan = check(4, 8);
        assert_eq!(plan.iter().map(|p| p.helpers).collect::<Vec<_>>(), [4, 5, 6, 7].map(Some));
        // Two pools, three cores: both pools' helpers share the one spare core.
        let plan = plan_cores(2, &cores(3));
        assert_eq!(plan.iter().map(|p| p.helpers).collect::<Vec<_>>(), [Some(2), Some(2)]);
    }

    #[test]
    fn without_spare_cores_helpers_go_to_the_next_pool() {
        let plan = check(2, 2);
        assert_eq!(
            plan,
            [Placement { core: 0, helpers: Some(1) }, Placement { core: 1, helpers: Some(0) },]
        );
        let plan = check(4, 2);
        assert_eq!(plan.iter().map(|p| p.core).collect::<Vec<_>>(), [0, 1, 0, 1]);
        assert_eq!(plan.iter().map(|p| p.helpers).collect::<Vec<_>>(), [1, 0, 1, 0].map(Some));
        assert!(plan_cores(3, &[]).is_empty());
    }
}
