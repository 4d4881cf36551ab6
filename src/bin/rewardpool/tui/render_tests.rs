//! The layouts drawn on a `TestBackend`, checked by the strings they must show (not whole
//! screens, so a cosmetic change does not break them).

use ratatui::backend::TestBackend;
use ratatui::Terminal;

use super::*;
use crate::service::proto::{GetStateResponse, Histogram, PoolMetrics, RewardItem, WatchResponse};

/// Draws `state` on a `width` x `height` screen; returns its rows as text.
fn draw(state: &State, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test backend");
    terminal.draw(|frame| render(state, frame)).expect("draw");
    let buffer = terminal.backend().buffer();
    (0..height).map(|y| (0..width).map(|x| buffer[(x, y)].symbol()).collect::<String>()).collect()
}

fn shows(screen: &[String], text: &str) -> bool {
    screen.iter().any(|row| row.contains(text))
}

#[track_caller]
fn assert_shows(screen: &[String], text: &str) {
    assert!(shows(screen, text), "{text:?} not on screen:\n{}", screen.join("\n"));
}

fn hist(counts: [u64; 5]) -> Histogram {
    let mut total = 0;
    let cumulative: Vec<u64> = counts
        .iter()
        .map(|n| {
            total += n;
            total
        })
        .collect();
    let count = cumulative.last().copied().unwrap_or(0);
    Histogram { le: vec![1_000, 2_000, 4_000, 8_000, u64::MAX], cumulative, count, sum: 0 }
}

fn reading(pool: &str, state: &str, draws: u64, latency: [u64; 5]) -> PoolMetrics {
    PoolMetrics {
        pool: pool.to_owned(),
        state: state.to_owned(),
        draws_committed: draws,
        groups_committed: draws / 10,
        clients: 3,
        ring_waiting: 7,
        in_flight: 2,
        commit_latency_ns: Some(hist(latency)),
        group_size: Some(hist([0; 5])),
        commitment: COMMITMENT.to_owned(),
        commitment_segment: 3,
        commitment_first_request_id: 4097,
        ..PoolMetrics::default()
    }
}

const COMMITMENT: &str = "5e2c0f8a9b1d4e7f60718293a4b5c6d7e8f90112233445566778899aabbccddee";

/// A state with pools `names`, two readings each one second apart and items.
fn sample(names: &[&str]) -> State {
    let mut state = State::new("127.0.0.1:50051");
    for (ms, draws, latency) in [(1_000, 0, [0; 5]), (2_000, 12_345, [0, 50, 40, 9, 1])] {
        let pools = names.iter().map(|n| reading(n, "running", draws, latency)).collect();
        state.apply_watch(WatchResponse { unix_ms: ms, pools });
    }
    for quantity in [100, 40] {
        let items = vec![
            RewardItem { item_id: "gold".into(), quantity, probability: 10, odds: 0.1 },
            RewardItem { item_id: "coin".into(), quantity: -1, probability: 90, odds: 0.9 },
            RewardItem { item_id: "gem".into(), quantity: 0, probability: 50, odds: 0.0 },
        ];
        state.apply_state(
            names[0],
            GetStateResponse { items, last_request_id: 9, pool: String::new() },
        );
    }
    state.log("drew 10: gold x1, coin x9");
    state.history.push_back("d 10".to_owned());
    state.input = "u gold 5".to_owned();
    state
}

#[test]
fn one_pool_wide() {
    let state = sample(&["main"]);
    let screen = draw(&state, 200, 60);
    assert_shows(&screen, "rewardpool 127.0.0.1:50051 · main running · clients 3");
    assert_shows(&screen, "draws/s 12.3k (max 12.3k)");
    assert_shows(&screen, "commit latency ≤ p50 2µs p99 8µs p99.9 16µs");
    assert_shows(&screen, "ring waiting 7 · in flight 2");
    assert_shows(&screen, "groups/s 1.2k");
    // The commitment to the seed it draws with now, whole, to publish.
    assert_shows(&screen, "seed commitment (segment 3, from request 4097):");
    assert_shows(&screen, COMMITMENT);
    assert_shows(&screen, &format!("last id 9 · seed commitment {}…", &COMMITMENT[..16]));
    assert_shows(&screen, " 40/100");
    assert_shows(&screen, "∞ unlimited");
    // Each item's effective probability ends its row, right-aligned: the exhausted gem's
    // is 0 (its weight of 50 counts for nothing).
    // (The items pane is the left one: its row ends at the first "││".)
    let ends = |id: &str, text: &str| {
        let row = screen.iter().find(|r| r.starts_with(&format!("│{id} "))).expect(id);
        let pane = row.split("││").next().unwrap_or(row);
        assert!(pane.ends_with(text), "{id}: {row}");
        pane.chars().count()
    };
    let column = ends("gold", " 10.00%");
    assert_eq!(ends("coin", " 90.00%"), column, "aligned");
    assert_eq!(ends("gem", "  0.00%"), column, "aligned");
    assert_shows(&screen, " 0/0");
    assert_shows(&screen, "drew 10: gold x1, coin x9");
    assert_shows(&screen, "> d 10");
    assert_shows(&screen, "> u gold 5_");
    // Gold's bar is 40 % filled.
    let row = screen.iter().find(|r| r.contains("40/100")).expect("gold's row");
    let (full, empty) = (row.matches('█').count(), row.matches('░').count());
    assert!(full > 0 && empty > 0, "{row}");
    assert_eq!((full * 10 + (full + empty) / 2) / (full + empty), 4, "{row}");
    assert!(!shows(&screen, "show / hide this key map"), "no help overlay");
}

#[test]
fn a_standby_pool_shows_its_lag() {
    let mut state = State::new("127.0.0.1:50051");
    let standby = PoolMetrics {
        pool: "main".into(),
        state: "running".into(),
        role: "standby".into(),
        last_request_id: 700,
        replica_lag_messages: 3,
        replica_lag_draws: 30,
        replica_lag_seconds: 2,
        ..PoolMetrics::default()
    };
    state.apply_watch(WatchResponse { unix_ms: 1_000, pools: vec![standby] });
    let screen = draw(&state, 120, 40);
    assert_shows(
        &screen,
        "· main running · standby, behind 3 messages, 30 draws, 2 s · last id 700",
    );
    assert!(!shows(&screen, "clients"), "a standby has no clients:\n{}", screen.join("\n"));
}

#[test]
fn several_pools_show_a_selector() {
    let mut state = sample(&["eu", "us", "asia"]);
    state.select("us").expect("pool us");
    let screen = draw(&state, 120, 40);
    assert_shows(&screen, "eu");
    assert_shows(&screen, "asia");
    assert_shows(&screen, "· us running");
    // The selector is the second row; the selected tab is reversed.
    assert!(screen[1].contains("eu") && screen[1].contains("us") && screen[1].contains("asia"));
    let one = draw(&sample(&["eu"]), 120, 40);
    assert!(!one[1].contains("eu"), "no selector for one pool: {}", one[1]);
}

#[test]
fn a_failed_pool_shows_its_error() {
    let mut state = sample(&["main", "spare"]);
    let mut failed = reading("spare", "failed", 12_345, [0, 50, 40, 9, 1]);
    failed.error = "journal: no space left on device".to_owned();
    state.apply_watch(WatchResponse { unix_ms: 3_000, pools: vec![failed] });
    state.select("spare").expect("pool spare");
    let screen = draw(&state, 200, 60);
    assert_shows(&screen, "spare failed");
    assert_shows(&screen, "error: journal: no space left on device");
    // On a narrow terminal the error wraps under the header rather than being cut off.
    let narrow = draw(&state, 40, 12).join("\n");
    assert!(narrow.contains("error: journal: no space left on"), "{narrow}");
    assert!(narrow.contains("device"), "{narrow}");
    // The other pool has no error line.
    state.select("main").expect("pool main");
    assert!(!shows(&draw(&state, 200, 60), "error:"));
}

#[test]
fn a_narrow_terminal_stacks_and_drops_panes() {
    let state = sample(&["main", "b"]);
    let screen = draw(&state, 40, 12);
    assert_shows(&screen, "items");
    assert_shows(&screen, "> u gold 5_");
    assert!(!shows(&screen, "history"), "history dropped");
    assert!(!shows(&screen, "commit latency"), "latency dropped");
    let taller = draw(&state, 60, 28);
    assert_shows(&taller, "draws/s");
    assert_shows(&taller, "log");
    // Tiny and empty screens draw without a panic.
    for (w, h) in [(1, 1), (10, 3), (0, 0), (200, 2)] {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test backend");
        terminal.draw(|frame| render(&state, frame)).expect("draw");
        terminal.draw(|frame| render(&State::new("x"), frame)).expect("draw");
    }
}

#[test]
fn the_help_overlay_shows_the_key_map() {
    let mut state = sample(&["main"]);
    state.toggle_help();
    let screen = draw(&state, 120, 40);
    assert_shows(&screen, "keys");
    assert_shows(&screen, "u <item> <qty> <weight>");
    assert_shows(&screen, "key <hex> <n>");
    assert_shows(&screen, "show / hide this key map");
    let small = draw(&state, 40, 12);
    assert_shows(&small, "┌keys");
}

#[test]
fn before_any_reading() {
    let screen = draw(&State::new("127.0.0.1:1"), 200, 60);
    assert_shows(&screen, "waiting for the first reading");
    assert_shows(&screen, "commit latency");
}

#[test]
fn units() {
    assert_eq!([si(999), si(12_345), si(1_234_567)], ["999", "12.3k", "1.23M"]);
    assert_eq!(
        [ns(512), ns(64_000), ns(1_048_576), ns(4_300_000_000)],
        ["512ns", "64µs", "1.0ms", "4.3s"]
    );
    assert_eq!(bar(40, 100, 10), "████░░░░░░");
    assert_eq!(bar(5, 0, 3), "░░░");
    assert_eq!(bar(500, 100, 4), "████");
    assert_eq!(
        [odds(0.0), odds(1.0 / 22.0), odds(0.9), odds(1.0)],
        ["  0.00%", "  4.55%", " 90.00%", "100.00%"]
    );
}
