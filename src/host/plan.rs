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
    plan_cores_fixed(&vec![None; pools], cores)
}

/// [`plan_cores`] where some pools' core threads have a core fixed by the configuration
/// (`fixed[i]`, a pool's `core:`): those keep it, the others take the cores no fixed pool
/// holds (in order, wrapping; all the cores when the fixed ones hold every core), and the
/// helpers follow rules 2 and 3 over the result. A fixed core outside `cores` is kept (the
/// engine refuses it when it starts). Empty when there are no cores.
#[must_use]
pub fn plan_cores_fixed(fixed: &[Option<usize>], cores: &[usize]) -> Vec<Placement> {
    if cores.is_empty() {
        return Vec::new();
    }
    let free: Vec<usize> = cores.iter().copied().filter(|c| !fixed.contains(&Some(*c))).collect();
    let free = if free.is_empty() { cores } else { free.as_slice() };
    let mut next_free = 0;
    let core_threads: Vec<usize> = fixed
        .iter()
        .map(|f| {
            f.unwrap_or_else(|| {
                let c = free[next_free % free.len()];
                next_free += 1;
                c
            })
        })
        .collect();
    let spare: Vec<usize> = cores.iter().copied().filter(|c| !core_threads.contains(c)).collect();
    (0..core_threads.len())
        .map(|i| {
            let core = core_threads[i];
            let helpers = if spare.is_empty() {
                let next = core_threads[(i + 1) % core_threads.len()];
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

    #[test]
    fn fixed_cores_are_kept_and_the_others_fill_around_them() {
        // Pool 0 asks for core 1: pool 1 takes core 0, both helpers go to the spares.
        let plan = plan_cores_fixed(&[Some(1), None], &cores(4));
        assert_eq!(
            plan,
            [Placement { core: 1, helpers: Some(2) }, Placement { core: 0, helpers: Some(3) }]
        );
        // Two cores, both pools fixed to core 0: they share it, helpers go to core 1.
        let plan = plan_cores_fixed(&[Some(0), Some(0)], &cores(2));
        assert_eq!(
            plan.iter().map(|p| (p.core, p.helpers)).collect::<Vec<_>>(),
            [(0, Some(1)), (0, Some(1))]
        );
        // Fixed on both of two cores: the unfixed third starts over at the first core.
        let plan = plan_cores_fixed(&[Some(1), Some(0), None], &cores(2));
        assert_eq!(plan.iter().map(|p| p.core).collect::<Vec<_>>(), [1, 0, 0]);
        for p in &plan {
            assert_ne!(p.helpers, Some(p.core), "{plan:?}");
        }
    }
}
