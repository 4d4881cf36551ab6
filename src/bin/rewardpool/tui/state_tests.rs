//! The state's transitions: readings into rates and series, resets, bounds, keys.

use super::*;

/// Cumulative counts over bounds 1, 2, 4, 8 (+ unbounded) from per-bucket counts.
pub(super) fn hist(counts: [u64; 5], sum: u64) -> Histogram {
    let mut total = 0;
    let cumulative: Vec<u64> = counts
        .iter()
        .map(|n| {
            total += n;
            total
        })
        .collect();
    let count = cumulative.last().copied().unwrap_or(0);
    Histogram { le: vec![1, 2, 4, 8, u64::MAX], cumulative, count, sum }
}

/// A reading of pool `pool` with these counters.
pub(super) fn metrics(pool: &str, draws: u64, groups: u64, latency: Histogram) -> PoolMetrics {
    PoolMetrics {
        pool: pool.to_owned(),
        state: "running".to_owned(),
        draws_committed: draws,
        groups_committed: groups,
        commit_latency_ns: Some(latency),
        group_size: Some(hist([0, 0, 0, 0, 0], 0)),
        ..PoolMetrics::default()
    }
}

fn watch(unix_ms: u64, pools: Vec<PoolMetrics>) -> WatchResponse {
    WatchResponse { unix_ms, pools }
}

fn item(id: &str, quantity: i32) -> RewardItem {
    RewardItem { item_id: id.to_owned(), quantity, probability: 10, odds: 0.5 }
}

#[test]
fn watch_deltas_become_rates_and_quantiles() {
    let mut state = State::new("test");
    state.apply_watch(watch(1_000, vec![metrics("a", 100, 10, hist([0, 0, 0, 0, 0], 0))]));
    let pool = state.pool().expect("pool a");
    assert_eq!(pool.draws_per_s.len(), 0, "one reading is no interval");
    // 500 ms later: 1,000 more draws in 4 groups, commit latencies 2, 2, 4, 16+.
    state.apply_watch(watch(1_500, vec![metrics("a", 1_100, 14, hist([0, 2, 1, 0, 1], 28))]));
    let pool = state.pool().expect("pool a");
    assert_eq!(pool.draws_per_s.last(), Some(2_000));
    assert_eq!(pool.interval.groups_per_s, 8);
    assert_eq!(pool.interval.commit_ns, Some([2, 16, 16]));
    assert_eq!(pool.latency_ns.each_ref().map(Series::last), [Some(2), Some(16), Some(16)]);
}

#[test]
fn a_counter_that_goes_back_is_a_reset_not_a_rate() {
    let mut state = State::new("test");
    state.apply_watch(watch(1_000, vec![metrics("a", 5_000, 50, hist([9, 0, 0, 0, 0], 9))]));
    // The server restarted: smaller counters. No sample, but the reading is the new base.
    state.apply_watch(watch(2_000, vec![metrics("a", 10, 1, hist([1, 0, 0, 0, 0], 1))]));
    assert_eq!(state.pool().expect("a").draws_per_s.len(), 0);
    state.apply_watch(watch(3_000, vec![metrics("a", 310, 2, hist([2, 0, 0, 0, 0], 2))]));
    let pool = state.pool().expect("a");
    assert_eq!(pool.draws_per_s.iter().collect::<Vec<_>>(), [300]);
    assert_eq!(pool.interval.commit_ns, Some([1, 1, 1]));
    // A clock that did not move: no interval either.
    state.apply_watch(watch(3_000, vec![metrics("a", 900, 3, hist([3, 0, 0, 0, 0], 3))]));
    assert_eq!(state.pool().expect("a").draws_per_s.len(), 1);
}

#[test]
fn an_idle_interval_has_a_zero_rate_and_no_latency() {
    let mut state = State::new("test");
    let h = hist([1, 0, 0, 0, 0], 1);
    state.apply_watch(watch(0, vec![metrics("a", 7, 1, h.clone())]));
    state.apply_watch(watch(1_000, vec![metrics("a", 7, 1, h)]));
    let pool = state.pool().expect("a");
    assert_eq!(pool.draws_per_s.last(), Some(0));
    assert_eq!(pool.interval.commit_ns, None);
    assert_eq!(pool.latency_ns[0].len(), 0);
}

#[test]
fn series_stay_bounded() {
    let mut state = State::new("test");
    for i in 0..(SERIES_LEN_MAX as u64 + 50) {
        state
            .apply_watch(watch(i * 1_000, vec![metrics("a", i * 10, i, hist([i, 0, 0, 0, 0], i))]));
    }
    let pool = state.pool().expect("a");
    assert_eq!(pool.draws_per_s.len(), SERIES_LEN_MAX);
    assert_eq!(pool.ring_waiting_series.len(), SERIES_LEN_MAX);
    for i in 0..LOG_LEN_MAX + 5 {
        state.log(format!("line {i}"));
    }
    assert_eq!(state.log.len(), LOG_LEN_MAX);
    assert_eq!(state.log.back().map(String::as_str), Some(&*format!("line {}", LOG_LEN_MAX + 4)));
}

#[test]
fn failed_pool_keeps_its_error_and_recovery_clears_it() {
    let mut state = State::new("test");
    let mut m = metrics("a", 1, 1, hist([0; 5], 0));
    m.state = "failed".to_owned();
    m.error = "the journal failed: no space left on device".to_owned();
    state.apply_watch(watch(1, vec![m]));
    let pool = state.pool().expect("a");
    assert_eq!(pool.run, RunState::Failed);
    assert_eq!(pool.error.as_deref(), Some("the journal failed: no space left on device"));
    state.apply_watch(watch(2, vec![metrics("a", 1, 1, hist([0; 5], 0))]));
    assert_eq!(state.pool().expect("a").error, None);
    assert_eq!(RunState::from_word("stopping"), RunState::Stopping);
    assert_eq!(RunState::from_word("paused").as_str(), "paused");
}

#[test]
fn items_keep_their_initial_stock() {
    let mut state = State::new("test");
    state.apply_state(
        "main",
        GetStateResponse {
            items: vec![item("gold", 10), item("coin", -1)],
            last_request_id: 3,
            pool: String::new(),
        },
    );
    state.apply_state(
        "main",
        GetStateResponse {
            items: vec![item("gold", 4), item("coin", -1), item("gem", 2)],
            last_request_id: 9,
            pool: "main".to_owned(),
        },
    );
    let pool = state.pool().expect("main");
    let view: Vec<_> = pool.items.iter().map(|i| (i.id.as_str(), i.current, i.initial)).collect();
    assert_eq!(
        view,
        [
            ("gold", Stock::Finite(4), Stock::Finite(10)),
            ("coin", Stock::Unlimited, Stock::Unlimited),
            ("gem", Stock::Finite(2), Stock::Finite(2)),
        ]
    );
    assert_eq!(pool.last_request_id, 9);
    // A restock past the initial stock raises it; the catalog's value wins.
    state.apply_state(
        "main",
        GetStateResponse {
            items: vec![item("gold", 50), item("gem", 0)],
            last_request_id: 9,
            pool: String::new(),
        },
    );
    state.pool_mut("main").set_initial("gem", Stock::Finite(20));
    let pool = state.pool().expect("main");
    assert_eq!(pool.items[0].initial, Stock::Finite(50));
    assert_eq!(pool.items[1].initial, Stock::Finite(20));
}

#[test]
fn pools_list_and_selection() {
    let mut state = State::new("test");
    state.apply_pools(ListPoolsResponse {
        pools: ["a", "b", "c"]
            .map(|name| crate::service::proto::PoolInfo {
                name: name.to_owned(),
                state: "running".to_owned(),
                ..Default::default()
            })
            .to_vec(),
    });
    assert_eq!(state.pools.len(), 3);
    state.select("c").expect("known pool");
    assert_eq!(state.pool().map(|p| p.name.as_str()), Some("c"));
    state.select_moved(1);
    assert_eq!(state.selected, 0, "wraps forward");
    state.select_moved(-1);
    assert_eq!(state.selected, 2, "wraps back");
    let err = state.select("zz").expect_err("unknown pool");
    assert_eq!(err, "no pool \"zz\" (pools: a, b, c)");
    assert_eq!(state.selected, 2);
    State::new("x").select_moved(1);
}

#[test]
fn focus_help_and_the_command_line() {
    let mut state = State::new("test");
    assert_eq!(state.focus, Pane::Command);
    state.focus_moved(1);
    assert_eq!(state.focus, Pane::Items);
    state.focus_moved(-1);
    state.focus_moved(-1);
    assert_eq!(state.focus, Pane::History);
    state.toggle_help();
    assert!(state.help);
    for c in " d 10\u{7}".chars() {
        state.input_push(c);
    }
    state.input_backspace();
    state.input_push('5');
    assert_eq!(state.input, " d 15");
    assert_eq!(state.take_input(), "d 15");
    assert_eq!(state.input, "");
    assert_eq!(state.take_input(), "", "a blank line is not history");
    assert_eq!(state.history, ["d 15"]);
    for _ in 0..INPUT_LEN_MAX + 10 {
        state.input_push('x');
    }
    assert_eq!(state.input.len(), INPUT_LEN_MAX);
    for i in 0..HISTORY_LEN_MAX + 3 {
        state.input.push_str(&format!("p {i}"));
        state.take_input();
    }
    assert_eq!(state.history.len(), HISTORY_LEN_MAX);
}
