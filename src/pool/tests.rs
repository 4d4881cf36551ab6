use super::*;
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
    let mut p = pool(&[(1, 1)], 1);
    let d = |id, item| Draw { request_id: RequestId(id), item: Some(ItemIndex(item)) };
    p.replay_draw(d(1, 0)).unwrap();
    assert_eq!(p.replay_draw(d(2, 0)), Err(PoolError::Overdraw { index: 0 }));
    assert_eq!(p.replay_draw(d(3, 9)), Err(PoolError::UnknownIndex { index: 9 }));
    assert!(matches!(p.replay_draw(d(1, 0)), Err(PoolError::RequestIdNotIncreasing { .. })));
}

#[test]
fn exhausted_pool_draws_empty_and_unlimited_never_exhausts() {
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
