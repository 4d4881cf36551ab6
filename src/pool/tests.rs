use super::*;
use crate::pool::deadline::{deadline, UNIT_TEST_DEADLINE};
use proptest::prelude::{any, prop_assert, prop_assert_eq, prop_oneof, proptest, Just, Strategy};

fn pool(specs: &[(i64, u32)], seed: u64) -> Pool {
    let items: Vec<ItemSpec> = specs
        .iter()
        .enumerate()
        .map(|(i, (q, w))| ItemSpec::new(&format!("item{i}"), *q, *w))
        .collect();
    Pool::new(&items, Rng::from_seed(seed)).unwrap()
}

#[derive(Clone, Debug)]
enum Op {
    Draw,
    Update { index: usize, quantity: Option<i64>, weight: Option<u32> },
    Add { quantity: i64, weight: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => Just(Op::Draw),
        1 => (0_usize..16, proptest::option::of(-1_i64..5), proptest::option::of(0_u32..10))
            .prop_map(|(index, quantity, weight)| Op::Update { index, quantity, weight }),
        1 => (-1_i64..5, 0_u32..10).prop_map(|(quantity, weight)| Op::Add { quantity, weight }),
    ]
}

proptest! {
    /// Pool invariants hold under random draw / update / exhaust sequences, compared with a
    /// simple reference model (a list of quantities and weights).
    #[test]
    fn pool_matches_reference_model(
        specs in proptest::collection::vec((-1_i64..6, 0_u32..10), 1..8),
        ops in proptest::collection::vec(op(), 0..200),
        seed in any::<u64>(),
    ) {
        let _deadline = deadline("pool_matches_reference_model", UNIT_TEST_DEADLINE);
        let mut p = pool(&specs, seed);
        let mut model: Vec<(i64, u32)> = specs.clone();
        let mut last = 0_u64;
        for op in ops {
            match op {
                Op::Draw => {
                    let available = model.iter().any(|(q, w)| *q != 0 && *w > 0);
                    let d = p.draw();
                    last += 1;
                    prop_assert_eq!(d.request_id, RequestId(last));
                    match d.item {
                        None => prop_assert!(!available),
                        Some(ItemIndex(i)) => {
                            let (q, w) = &mut model[i as usize];
                            prop_assert!(*q != 0 && *w > 0, "drew unavailable item {}", i);
                            if *q > 0 { *q -= 1; }
                        }
                    }
                }
                Op::Update { index, quantity, weight } => {
                    let index = index % model.len();
                    let id = format!("item{index}");
                    p.update(&id, quantity.map(|q| Quantity::from_i64(q).unwrap()), weight).unwrap();
                    if let Some(q) = quantity { model[index].0 = q; }
                    if let Some(w) = weight { model[index].1 = w; }
                }
                Op::Add { quantity, weight } => {
                    let id = format!("item{}", model.len());
                    let (index, _) = p.update(&id, Some(Quantity::from_i64(quantity).unwrap()), Some(weight)).unwrap();
                    prop_assert_eq!(index.0 as usize, model.len());
                    model.push((quantity, weight));
                }
            }
            p.assert_invariants();
            // The disclosed odds' denominator is the selector's total.
            prop_assert_eq!(available_weight(&p.items()), p.live_weight());
        }
        let state = p.state();
        for (i, (q, w)) in model.iter().enumerate() {
            prop_assert_eq!(state.items[i].quantity.to_i64(), *q);
            prop_assert_eq!(state.items[i].weight, *w);
        }
    }
}

#[test]
fn replay_applies_recorded_outcomes_without_drawing() {
    let _deadline =
        deadline("replay_applies_recorded_outcomes_without_drawing", UNIT_TEST_DEADLINE);
    let mut live = pool(&[(3, 1), (-1, 5), (2, 2)], 7);
    let draws: Vec<Draw> = (0..20).map(|_| live.draw()).collect();
    let mut replayed = pool(&[(3, 1), (-1, 5), (2, 2)], 999);
    for d in &draws {
        replayed.replay_draw(*d).unwrap();
    }
    assert_eq!(replayed.state(), live.state());
    assert_eq!(replayed.state().hash(), live.state().hash());
}

#[test]
fn replay_refuses_overdraw_unknown_items_and_old_ids() {
    let _deadline =
        deadline("replay_refuses_overdraw_unknown_items_and_old_ids", UNIT_TEST_DEADLINE);
    let mut p = pool(&[(1, 1)], 1);
    let d = |id, item| Draw { request_id: RequestId(id), item: Some(ItemIndex(item)) };
    p.replay_draw(d(1, 0)).unwrap();
    assert_eq!(p.replay_draw(d(2, 0)), Err(PoolError::Overdraw { index: 0 }));
    assert_eq!(p.replay_draw(d(3, 9)), Err(PoolError::UnknownIndex { index: 9 }));
    assert!(matches!(p.replay_draw(d(1, 0)), Err(PoolError::RequestIdNotIncreasing { .. })));
}

#[test]
fn exhausted_pool_draws_empty_and_unlimited_never_exhausts() {
    let _deadline =
        deadline("exhausted_pool_draws_empty_and_unlimited_never_exhausts", UNIT_TEST_DEADLINE);
    let mut p = pool(&[(2, 1), (0, 100)], 3);
    assert!(p.draw().item.is_some());
    assert!(p.draw().item.is_some());
    let d = p.draw();
    assert_eq!(d.item, None);
    assert_eq!(d.request_id, RequestId(3));
    let mut u = pool(&[(-1, 1)], 3);
    for _ in 0..10_000 {
        assert_eq!(u.draw().item, Some(ItemIndex(0)));
    }
}

#[test]
fn catalog_errors_name_the_item() {
    let _deadline = deadline("catalog_errors_name_the_item", UNIT_TEST_DEADLINE);
    let dup = [ItemSpec::new("a", 1, 1), ItemSpec::new("a", 1, 1)];
    let err = Pool::new(&dup, Rng::from_seed(0)).unwrap_err();
    assert_eq!(err.to_string(), "item \"a\": item_id appears twice");
    let empty = [ItemSpec::new("", 1, 1)];
    assert_eq!(
        Pool::new(&empty, Rng::from_seed(0)).unwrap_err(),
        PoolError::EmptyId { position: 0 }
    );
}

/// Fairness: chi-square over 10^6 draws with a fixed seed passes at p = 0.001.
#[test]
fn draws_match_weights_chi_square() {
    let _deadline = deadline("draws_match_weights_chi_square", UNIT_TEST_DEADLINE);
    let weights = [10_u32, 20, 30, 40, 70, 50];
    let mut p = pool(&weights.iter().map(|w| (-1, *w)).collect::<Vec<_>>(), 0x5eed);
    let mut counts = [0_u64; 6];
    let n = 1_000_000_u64;
    for _ in 0..n {
        counts[p.draw().item.unwrap().0 as usize] += 1;
    }
    let total: u32 = weights.iter().sum();
    let chi2: f64 = counts
        .iter()
        .zip(weights)
        .map(|(c, w)| {
            let expected = n as f64 * f64::from(w) / f64::from(total);
            (*c as f64 - expected).powi(2) / expected
        })
        .sum();
    // Critical value of chi-square with 5 degrees of freedom at p = 0.001.
    assert!(chi2 < 20.515, "chi2={chi2} counts={counts:?}");
}

/// Keyed draws on a live pool, then the same through `replay_key` + `replay_draw`: the
/// replayed pool knows the key with the same outcomes, and its state (window included)
/// hashes the same.
#[test]
fn replay_key_rebuilds_a_keys_outcome() {
    let _deadline = deadline("replay_key_rebuilds_a_keys_outcome", UNIT_TEST_DEADLINE);
    let mut live = pool(&[(5, 1), (-1, 3)], 7);
    live.draw();
    assert_eq!(live.key(0xAB, 3, 100), KeyLookup::New);
    let draws: Vec<Draw> = (0..3).map(|_| live.draw()).collect();
    let KeyLookup::Replay { first, at } = live.key(0xAB, 3, 101) else { panic!("not kept") };
    assert_eq!(first, draws[0].request_id);
    for (j, d) in draws.iter().enumerate() {
        assert_eq!(live.key_item(at + j as u64), d.item);
    }
    assert_eq!(live.key(0xAB, 2, 101), KeyLookup::Conflict { count: 3 });

    let mut replayed = pool(&[(5, 1), (-1, 3)], 99);
    replayed.replay_draw(Draw { request_id: RequestId(1), item: None }).unwrap();
    replayed.replay_key(0xAB, first, 3, 100).unwrap();
    for d in &draws {
        replayed.replay_draw(*d).unwrap();
    }
    assert_eq!(replayed.state().keys, live.state().keys);
    assert!(matches!(replayed.key(0xAB, 3, 102), KeyLookup::Replay { first: f, .. } if f == first));
    // Through a snapshot's state: the window comes back with its bounds.
    let mut back = Pool::from_state(&live.state(), Rng::from_seed(1)).unwrap();
    assert_eq!(back.key_window(), KeyWindow::default());
    assert!(matches!(back.key(0xAB, 3, 102), KeyLookup::Replay { first: f, .. } if f == first));
    assert_eq!(back.state().hash(), live.state().hash());
}

#[test]
fn replay_key_refuses_what_does_not_add_up() {
    let _deadline = deadline("replay_key_refuses_what_does_not_add_up", UNIT_TEST_DEADLINE);
    let mut p = pool(&[(5, 1)], 7);
    assert!(matches!(p.replay_key(0, RequestId(1), 1, 0), Err(PoolError::KeyCount { .. })));
    assert!(matches!(p.replay_key(1, RequestId(1), 0, 0), Err(PoolError::KeyCount { .. })));
    p.replay_key(1, RequestId(1), 2, 0).unwrap();
    let e = p.replay_key(2, RequestId(2), 1, 0).unwrap_err();
    assert!(matches!(e, PoolError::KeyDraws { key: 2, expected: 1, got: 0 }), "{e:?}");
    let e = p.replay_draw(Draw { request_id: RequestId(5), item: None }).unwrap_err();
    assert!(e.to_string().contains(&format!("{:032x}", 1)), "{e}");
    assert_eq!(e, PoolError::KeyDraws { key: 1, expected: 1, got: 5 });
}

#[test]
fn a_smaller_window_keeps_the_newest_keys() {
    let _deadline = deadline("a_smaller_window_keeps_the_newest_keys", UNIT_TEST_DEADLINE);
    let mut p = pool(&[(-1, 1)], 7);
    for key in 1..=5 {
        assert_eq!(p.key(key, 1, 10), KeyLookup::New);
        p.draw();
    }
    p.set_key_window(KeyWindow { keys: 2, hours: 1 });
    let keys: Vec<u128> = p.state().keys.records.iter().map(|r| r.key).collect();
    assert_eq!(keys, [4, 5]);
    assert_eq!(p.key(3, 1, 11), KeyLookup::New);
}

fn item(id: &str, quantity: i64, weight: u32) -> ItemState {
    let ItemSpec { id, quantity, weight } = ItemSpec::new(id, quantity, weight);
    ItemState { id, quantity, weight }
}

fn odds(items: Vec<ItemState>) -> Vec<f64> {
    PoolState { items, ..PoolState::default() }.effective_probabilities()
}

#[track_caller]
fn assert_close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-15, "{got:?} vs {want:?}");
    }
}

#[test]
fn effective_probability_counts_only_available_items() {
    let _deadline =
        deadline("effective_probability_counts_only_available_items", UNIT_TEST_DEADLINE);
    // Exhausted (quantity 0) and weightless items get 0 and are left out of the
    // denominator; unlimited (-1) counts as available.
    let got = odds(vec![
        item("gone", 0, 50),
        item("mud", -1, 30),
        item("gold", 5, 10),
        item("ghost", 7, 0),
    ]);
    assert_close(&got, &[0.0, 0.75, 0.25, 0.0]);
    let items = [item("gone", 0, 50), item("mud", -1, 30), item("gold", 5, 10)];
    assert_eq!(available_weight(&items), 40);
    assert!(!items[0].is_available() && items[1].is_available());
    assert_eq!(items[0].effective_probability(40), 0.0);
    assert_eq!(items[2].effective_probability(0), 0.0, "nothing available: 0, never NaN");
}

#[test]
fn effective_probability_is_all_zero_when_nothing_is_available() {
    let _deadline =
        deadline("effective_probability_is_all_zero_when_nothing_is_available", UNIT_TEST_DEADLINE);
    let got = odds(vec![item("a", 0, 1), item("b", 0, 9), item("c", -1, 0)]);
    assert_eq!(got, [0.0, 0.0, 0.0]);
    assert!(odds(Vec::new()).is_empty());
}

#[test]
fn effective_probability_sums_weights_beyond_u32() {
    let _deadline = deadline("effective_probability_sums_weights_beyond_u32", UNIT_TEST_DEADLINE);
    // Three weights of u32::MAX sum past 2^33: exact in u64, each a third.
    let max = u32::MAX;
    let got =
        odds(vec![item("a", -1, max), item("b", 1, max), item("c", 3, max), item("d", 0, max)]);
    assert_close(&got, &[1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 0.0]);
    let items = [item("a", -1, max), item("b", 1, max), item("c", -1, 1)];
    assert_eq!(available_weight(&items), 2 * u64::from(max) + 1);
    let got = odds(items.to_vec());
    assert!((got.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{got:?}");
    assert!(got[2] > 0.0 && got[2] < 1e-9, "{got:?}");
}

#[test]
fn effective_probabilities_follow_draws_to_exhaustion() {
    let _deadline =
        deadline("effective_probabilities_follow_draws_to_exhaustion", UNIT_TEST_DEADLINE);
    // The pool's own state after draws: the finite item's share goes to the others once
    // it runs out.
    let mut p = pool(&[(2, 1_000_000), (-1, 1)], 3);
    let before = p.state().effective_probabilities();
    assert!(before[0] > 0.99 && before[1] > 0.0, "{before:?}");
    for _ in 0..10_000 {
        if p.quantity(ItemIndex(0)) == Some(Quantity::Finite(0)) {
            break;
        }
        p.draw();
    }
    assert_close(&p.state().effective_probabilities(), &[0.0, 1.0]);
}

/// The state hash tells states apart: each field it covers, changed alone, changes it (a
/// hash compared only between states already asserted equal would pass as a constant).
#[test]
fn the_state_hash_differs_for_different_states() {
    let _deadline = deadline("the_state_hash_differs_for_different_states", UNIT_TEST_DEADLINE);
    let mut p = pool(&[(3, 1), (-1, 5), (2, 2)], 7);
    p.draw();
    assert_eq!(p.key(0xAB, 2, 100), KeyLookup::New);
    p.draw();
    p.draw();
    let base = p.state();
    assert_eq!(base.keys.records.len(), 1);
    assert_eq!(base.hash(), base.clone().hash(), "equal states, equal hashes");
    let mut variants: Vec<(&str, PoolState)> = Vec::new();
    let mut edit = |what: &'static str, f: &dyn Fn(&mut PoolState)| {
        let mut s = base.clone();
        f(&mut s);
        assert_ne!(s, base, "{what}: the edit changes the state");
        variants.push((what, s));
    };
    edit("last request id", &|s| s.last_request_id.0 += 1);
    edit("an item's id", &|s| s.items[0].id.push('x'));
    edit("an item's quantity", &|s| s.items[0].quantity = Quantity::Finite(2));
    edit("unlimited vs finite", &|s| s.items[1].quantity = Quantity::Finite(0));
    edit("an item's weight", &|s| s.items[2].weight += 1);
    edit("one item fewer", &|s| {
        s.items.pop();
    });
    edit("items swapped", &|s| s.items.swap(0, 2));
    edit("a key's first id", &|s| s.keys.records[0].first.0 += 1);
    edit("a key", &|s| s.keys.records[0].key += 1);
    edit("a key's outcome", &|s| s.keys.items[0] = None);
    let mut hashes = vec![("base", base.hash())];
    hashes.extend(variants.iter().map(|(what, s)| (*what, s.hash())));
    for (i, (a, ha)) in hashes.iter().enumerate() {
        for (b, hb) in &hashes[i + 1..] {
            assert_ne!(ha, hb, "{a} and {b} hash alike");
        }
    }
}

/// Replaying an update of an existing item gives it exactly the logged state; an update
/// naming an index whose item has another id, or an index past the next free one, is
/// refused (recovery reports it as damage).
#[test]
fn replay_update_sets_an_existing_item_and_refuses_a_mismatch() {
    let _deadline =
        deadline("replay_update_sets_an_existing_item_and_refuses_a_mismatch", UNIT_TEST_DEADLINE);
    let mut p = pool(&[(3, 1), (-1, 5)], 7);
    let gold = ItemState { id: "item0".into(), quantity: Quantity::Finite(7), weight: 3 };
    p.replay_update(ItemIndex(0), &gold).unwrap();
    assert_eq!(p.item(ItemIndex(0)), gold);
    assert_eq!(p.live_weight(), 3 + 5);
    let other = ItemState { id: "other".into(), quantity: Quantity::Finite(1), weight: 1 };
    assert_eq!(p.replay_update(ItemIndex(0), &other), Err(PoolError::UnknownIndex { index: 0 }));
    assert_eq!(p.replay_update(ItemIndex(3), &other), Err(PoolError::UnknownIndex { index: 3 }));
    assert_eq!(p.len(), 2, "nothing added by a refused update");
    // The next free index adds the item.
    p.replay_update(ItemIndex(2), &other).unwrap();
    assert_eq!(p.item(ItemIndex(2)), other);
    assert_eq!(p.state().items[0], gold);
}

/// The item limit at its boundary: exactly `ITEM_COUNT_MAX` items are allowed.
#[test]
fn the_item_count_limit_is_inclusive() {
    let _deadline = deadline("the_item_count_limit_is_inclusive", UNIT_TEST_DEADLINE);
    assert_eq!(check_item_count(ITEM_COUNT_MAX), Ok(()));
    assert_eq!(check_item_count(0), Ok(()));
    assert_eq!(
        check_item_count(ITEM_COUNT_MAX + 1),
        Err(PoolError::TooManyItems { count: ITEM_COUNT_MAX + 1 })
    );
}

/// The lookups: `len`, `is_empty`, `item_id`, `index_of`.
#[test]
fn lookups_by_index_and_id() {
    let _deadline = deadline("lookups_by_index_and_id", UNIT_TEST_DEADLINE);
    let mut p = pool(&[(3, 1), (-1, 5)], 7);
    assert_eq!((p.len(), p.is_empty()), (2, false));
    assert_eq!(p.item_id(ItemIndex(1)), Some("item1"));
    assert_eq!(p.item_id(ItemIndex(2)), None);
    assert_eq!(p.index_of("item1"), Some(ItemIndex(1)));
    assert_eq!(p.index_of("item9"), None);
    p.update("new", Some(Quantity::Finite(1)), Some(1)).unwrap();
    assert_eq!(
        (p.len(), p.index_of("new"), p.item_id(ItemIndex(2))),
        (3, Some(ItemIndex(2)), Some("new"))
    );
    let empty = Pool::new(&[], Rng::from_seed(1)).unwrap();
    assert_eq!((empty.len(), empty.is_empty()), (0, true));
}
