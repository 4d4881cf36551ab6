//! Drawing the dashboard: [`render`] is a pure function of the [`State`], so the tests draw
//! it on ratatui's `TestBackend` and read the buffer back.
//!
//! Layouts by terminal size: a wide one (at least [`WIDE_WIDTH`] x [`WIDE_HEIGHT`]) shows
//! every pane; a narrow one stacks the items, draws/s (when there is room), the log and the
//! command line; anything smaller still draws what fits (ratatui clips), never panics.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Chart, Clear, Dataset, GraphType, Paragraph, Sparkline, Tabs, Wrap,
};
use ratatui::Frame;

use super::command::HELP;
use super::state::{Pane, PoolView, RunState, State, Stock};

/// The narrowest terminal that gets the wide layout.
pub(crate) const WIDE_WIDTH: u16 = 100;
/// The lowest terminal that gets the wide layout.
pub(crate) const WIDE_HEIGHT: u16 = 30;

/// Draws the whole dashboard for `state`.
pub(crate) fn render(state: &State, frame: &mut Frame<'_>) {
    let area = frame.area();
    let selector = u16::from(state.pools.len() > 1);
    let error = state.pool().and_then(|p| p.error.as_deref());
    let error_rows = error.map_or(0, |e| error_rows(e, area.width));
    let [header, tabs, error_line, body, command] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(selector),
        Constraint::Length(error_rows),
        Constraint::Min(0),
        Constraint::Length(3),
    ])
    .areas(area);
    render_header(state, frame, header);
    if selector > 0 {
        render_selector(state, frame, tabs);
    }
    if let Some(error) = error {
        let line = Line::styled(format!("error: {error}"), Style::new().fg(Color::Red));
        frame.render_widget(Paragraph::new(line).wrap(Wrap { trim: true }), error_line);
    }
    if area.width >= WIDE_WIDTH && area.height >= WIDE_HEIGHT {
        render_wide(state, frame, body);
    } else {
        render_narrow(state, frame, body);
    }
    render_command(state, frame, command);
    if state.help {
        render_help(frame, area);
    }
}

/// Every pane: items | charts on top, commit figures, log | history below.
fn render_wide(state: &State, frame: &mut Frame<'_>, body: Rect) {
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(body);
    let [items, charts] =
        Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(top);
    let [throughput, latency, commits] = Layout::vertical([
        Constraint::Percentage(30),
        Constraint::Percentage(45),
        Constraint::Percentage(25),
    ])
    .areas(charts);
    let [log, history] =
        Layout::horizontal([Constraint::Percentage(65), Constraint::Percentage(35)]).areas(bottom);
    render_items(state, frame, items);
    render_throughput(state, frame, throughput);
    render_latency(state, frame, latency);
    render_commits(state, frame, commits);
    render_log(state, frame, log);
    render_history(state, frame, history);
}

/// A narrow terminal: items, draws/s when the height allows, the log; the rest dropped.
fn render_narrow(state: &State, frame: &mut Frame<'_>, body: Rect) {
    let chart = if body.height >= 16 { 5 } else { 0 };
    let [items, throughput, log] = Layout::vertical([
        Constraint::Percentage(50),
        Constraint::Length(chart),
        Constraint::Min(3),
    ])
    .areas(body);
    render_items(state, frame, items);
    if chart > 0 {
        render_throughput(state, frame, throughput);
    }
    render_log(state, frame, log);
}

/// A pane's frame, highlighted when it has the focus.
fn block(state: &State, pane: Pane, title: impl Into<Line<'static>>) -> Block<'static> {
    let style = if state.focus == pane {
        Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
    } else {
        Style::new()
    };
    Block::bordered().title(title).border_style(style)
}

/// The colour of a run state.
fn run_style(run: &RunState) -> Style {
    match run {
        RunState::Running => Style::new().fg(Color::Green),
        RunState::Stopping => Style::new().fg(Color::Yellow),
        RunState::Failed | RunState::Other(_) => Style::new().fg(Color::Red),
    }
}

/// Rows a failed pool's error takes under the header: wrapped to the width, 3 at most.
fn error_rows(error: &str, width: u16) -> u16 {
    let len = "error: ".len() + error.chars().count();
    let rows = len.div_ceil(usize::from(width.max(1)));
    u16::try_from(rows.clamp(1, 3)).unwrap_or(3)
}

/// The top line: source, pool, state, clients (a standby: its lag), last request id, and the start of the
/// commitment to the seed it draws with (the commits pane has it whole when it has room).
fn render_header(state: &State, frame: &mut Frame<'_>, area: Rect) {
    let mut spans = vec![Span::styled("rewardpool ", Style::new().add_modifier(Modifier::BOLD))];
    spans.push(Span::raw(format!("{} ", state.source)));
    match state.pool() {
        None => spans.push(Span::raw("· waiting for the first reading")),
        Some(pool) => {
            spans.push(Span::raw(format!("· {} ", pool.name)));
            spans.push(Span::styled(pool.run.as_str().to_owned(), run_style(&pool.run)));
            match pool.standby {
                // A standby takes no draws: its lag instead of its clients.
                Some(lag) => spans.push(Span::raw(format!(
                    " · standby, behind {} messages, {} draws, {} s · last id {}",
                    lag.messages, lag.draws, lag.seconds, pool.last_request_id
                ))),
                None => spans.push(Span::raw(format!(
                    " · clients {} · last id {}",
                    pool.clients, pool.last_request_id
                ))),
            }
            if let Some((hex, _, _)) = &pool.commitment {
                let short = hex.get(..16).unwrap_or(hex);
                spans.push(Span::raw(format!(" · seed commitment {short}…")));
            }
        }
    }
    spans.push(Span::raw("  (? keys)"));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The pool selector: one tab per pool, failed ones in red.
fn render_selector(state: &State, frame: &mut Frame<'_>, area: Rect) {
    let titles = state.pools.iter().map(|pool| {
        let style = if pool.run == RunState::Running { Style::new() } else { run_style(&pool.run) };
        Line::styled(pool.name.clone(), style)
    });
    let tabs = Tabs::new(titles)
        .select(state.selected)
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    frame.render_widget(tabs, area);
}

/// One bar per item: current stock against initial (unlimited items marked ∞), then the
/// item's effective probability (its chance on the next draw given the stock now).
fn render_items(state: &State, frame: &mut Frame<'_>, area: Rect) {
    let block = block(state, Pane::Items, "items");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(pool) = state.pool() else { return };
    let id_width = pool.items.iter().map(|i| i.id.chars().count()).max().unwrap_or(0).min(16);
    let lines: Vec<Line<'_>> = pool
        .items
        .iter()
        .map(|item| {
            let label = format!("{:id_width$.id_width$} ", item.id);
            let stock = match (item.current, item.initial) {
                (Stock::Unlimited, _) => "∞ unlimited".to_owned(),
                (Stock::Finite(c), Stock::Finite(i)) => format!(" {c}/{i}"),
                (Stock::Finite(c), Stock::Unlimited) => format!(" {c}"),
            };
            let odds = format!(" {}", odds(item.odds));
            let room = usize::from(inner.width).saturating_sub(
                label.chars().count() + stock.chars().count() + odds.chars().count(),
            );
            let colour = match item.current {
                Stock::Finite(0) => Color::Red,
                Stock::Unlimited => Color::Cyan,
                Stock::Finite(_) => Color::Green,
            };
            let bar = match (item.current, item.initial) {
                // No bar: "∞ unlimited" follows the label, blanks keep the odds in line.
                (Stock::Unlimited, _) => {
                    return Line::from(vec![
                        Span::raw(label),
                        Span::raw(stock),
                        Span::raw(" ".repeat(room)),
                        Span::raw(odds),
                    ]);
                }
                (Stock::Finite(c), Stock::Finite(i)) => bar(c, i, room),
                (Stock::Finite(_), Stock::Unlimited) => bar(0, 0, room),
            };
            Line::from(vec![
                Span::raw(label),
                Span::styled(bar, Style::new().fg(colour)),
                Span::raw(stock),
                Span::raw(odds),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

/// A probability as a percentage, always 7 cells wide ("  4.55%", "100.00%"), so the
/// column lines up at the pane's right edge.
fn odds(p: f64) -> String {
    format!("{:>6.2}%", p * 100.0)
}

/// A bar `width` cells wide, filled in proportion `current / initial`.
fn bar(current: u64, initial: u64, width: usize) -> String {
    let filled = if initial == 0 {
        0
    } else {
        let f = u128::from(current.min(initial)) * width as u128 / u128::from(initial);
        usize::try_from(f).unwrap_or(width)
    };
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

/// Draws per second, a sparkline over the last samples.
fn render_throughput(state: &State, frame: &mut Frame<'_>, area: Rect) {
    let pool = state.pool();
    let now = pool.and_then(|p| p.draws_per_s.last()).unwrap_or(0);
    let max = pool.and_then(|p| p.draws_per_s.max()).unwrap_or(0);
    let title = format!("draws/s {} (max {})", si(now), si(max));
    let block = block(state, Pane::Throughput, title);
    let data = pool.map(|p| p.draws_per_s.tail(usize::from(area.width.saturating_sub(2))));
    let spark = Sparkline::default().block(block).data(data.unwrap_or_default());
    frame.render_widget(spark, area);
}

/// Commit latency p50 / p99 / p99.9 over time, a chart (bucket bounds: "at most").
fn render_latency(state: &State, frame: &mut Frame<'_>, area: Rect) {
    let Some(pool) = state.pool() else {
        frame.render_widget(block(state, Pane::Latency, "commit latency"), area);
        return;
    };
    let points: Vec<Vec<(f64, f64)>> = pool.latency_ns.iter().map(points_us).collect();
    let top = pool.latency_ns.iter().filter_map(|s| s.max()).max().unwrap_or(1_000);
    let names = ["p50", "p99", "p99.9"];
    let colours = [Color::Green, Color::Yellow, Color::Red];
    let datasets = points
        .iter()
        .zip(names.iter().zip(colours))
        .map(|(data, (name, colour))| {
            Dataset::default()
                .name(*name)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(colour))
                .data(data)
        })
        .collect();
    let len = pool.latency_ns[0].len().max(2);
    #[expect(clippy::cast_precision_loss, reason = "axis bounds")]
    let (x_max, y_max) = ((len - 1) as f64, top as f64 / 1_000.0);
    let title = match pool.interval.commit_ns {
        Some([p50, p99, p999]) => {
            format!("commit latency ≤ p50 {} p99 {} p99.9 {}", ns(p50), ns(p99), ns(p999))
        }
        None => "commit latency (no commits)".to_owned(),
    };
    let chart = Chart::new(datasets)
        .block(block(state, Pane::Latency, title))
        .x_axis(Axis::default().bounds([0.0, x_max]))
        .y_axis(Axis::default().bounds([0.0, y_max]).labels(["0".to_owned(), ns(top)]));
    frame.render_widget(chart, area);
}

/// A series of nanoseconds as chart points in microseconds.
#[expect(clippy::cast_precision_loss, reason = "chart coordinates")]
fn points_us(series: &super::series::Series) -> Vec<(f64, f64)> {
    series.iter().enumerate().map(|(i, v)| (i as f64, v as f64 / 1_000.0)).collect()
}

/// Commits (groups/s, group sizes) and the rings (backlog, in flight).
fn render_commits(state: &State, frame: &mut Frame<'_>, area: Rect) {
    let block = block(state, Pane::Commits, "commits · rings");
    let lines = match state.pool() {
        None => Vec::new(),
        Some(pool) => commit_lines(pool),
    };
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The commit pane's text.
fn commit_lines(pool: &PoolView) -> Vec<Line<'static>> {
    let i = pool.interval;
    let sizes = match i.group_size {
        Some((mean, p99)) => format!("group size mean {mean} p99 ≤ {p99}"),
        None => "group size -".to_owned(),
    };
    let latency = match i.commit_ns {
        Some([p50, p99, _]) => format!("commit p50 ≤ {} p99 ≤ {}", ns(p50), ns(p99)),
        None => "commit -".to_owned(),
    };
    // The commitment to publish: the hex on a line of its own (64 characters).
    let (seed, hex) = match &pool.commitment {
        Some((hex, segment, first)) => {
            (format!("seed commitment (segment {segment}, from request {first}):"), hex.clone())
        }
        None => ("seed commitment: - (the pool keeps no log)".to_owned(), String::new()),
    };
    vec![
        Line::raw(format!("groups/s {} · {sizes}", si(i.groups_per_s))),
        Line::raw(latency),
        Line::raw(format!("ring waiting {} · in flight {}", pool.ring_waiting, pool.in_flight)),
        Line::raw(seed),
        Line::raw(hex),
    ]
}

/// The log pane: the newest lines that fit.
fn render_log(state: &State, frame: &mut Frame<'_>, area: Rect) {
    let block = block(state, Pane::Log, "log");
    let rows = usize::from(block.inner(area).height);
    let skip = state.log.len().saturating_sub(rows);
    let lines: Vec<Line<'_>> = state.log.iter().skip(skip).map(|l| Line::raw(l.as_str())).collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The command history: the newest commands that fit.
fn render_history(state: &State, frame: &mut Frame<'_>, area: Rect) {
    let block = block(state, Pane::History, "history");
    let rows = usize::from(block.inner(area).height);
    let skip = state.history.len().saturating_sub(rows);
    let lines: Vec<Line<'_>> =
        state.history.iter().skip(skip).map(|l| Line::raw(format!("> {l}"))).collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The command line being typed, with a cursor mark.
fn render_command(state: &State, frame: &mut Frame<'_>, area: Rect) {
    let block = block(state, Pane::Command, "command (h help)");
    let line = Line::from(vec![
        Span::raw("> "),
        Span::raw(state.input.as_str()),
        Span::styled("_", Style::new().add_modifier(Modifier::SLOW_BLINK)),
    ]);
    frame.render_widget(Paragraph::new(line).block(block), area);
}

/// The key map and commands over the middle of the screen.
fn render_help(frame: &mut Frame<'_>, area: Rect) {
    let keys: [(&str, &str); 6] = [
        ("Tab / → ↓", "next pane"),
        ("Shift+Tab / ← ↑", "previous pane"),
        ("[ ]", "previous / next pool (empty line)"),
        ("Enter / Esc", "run / clear the command line"),
        ("?", "show / hide this key map (empty line)"),
        ("Ctrl+C", "quit"),
    ];
    let lines: Vec<Line<'_>> =
        keys.iter().chain(HELP).map(|(k, what)| Line::raw(format!("{k:<24} {what}"))).collect();
    let height = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX).min(area.height);
    let width = 80.min(area.width);
    let [_, middle, _] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(height), Constraint::Fill(1)])
            .areas(area);
    let [_, popup, _] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(width), Constraint::Fill(1)])
            .areas(middle);
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title("keys")), popup);
}

/// A rate with an SI suffix: 950, 12.3k, 1.20M.
#[expect(clippy::cast_precision_loss, reason = "display")]
fn si(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.2}M", n as f64 / 1e6),
    }
}

/// Nanoseconds in a readable unit: 512ns, 64µs, 1.0ms, 4.3s.
#[expect(clippy::cast_precision_loss, reason = "display")]
fn ns(n: u64) -> String {
    match n {
        0..1_000 => format!("{n}ns"),
        1_000..1_000_000 => format!("{}µs", n / 1_000),
        1_000_000..1_000_000_000 => format!("{:.1}ms", n as f64 / 1e6),
        _ => format!("{:.1}s", n as f64 / 1e9),
    }
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
