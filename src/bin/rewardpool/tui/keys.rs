//! Key presses and typed lines into state changes, pure: what the terminal loop calls for
//! each crossterm key event and each line the user enters. What only the dashboard itself
//! can do (help, the pool's state, switching pools) happens here; what needs the server or
//! the data directory comes back as an [`Action`] for the loop to carry out.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::command::{parse, Command, HELP};
use super::state::{State, Stock};

/// What the terminal loop must do after a key or a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Nothing more: the state changed (or not) and the next frame shows it.
    None,
    /// Carry out this command against the server (draws, pulls, updates, reload).
    Run(Command),
    /// Leave the dashboard (`q`, Ctrl+C).
    Quit,
}

/// Applies one key event: typing, Enter, the focus (Tab / arrows), the pools (`[` `]` on
/// an empty command line), the key map (`?` on an empty line, Esc hides it).
pub(crate) fn apply_key(state: &mut State, key: KeyEvent) -> Action {
    if key.kind == KeyEventKind::Release {
        return Action::None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        KeyCode::Char('c' | 'd') if ctrl => return Action::Quit,
        KeyCode::Enter => {
            let line = state.take_input();
            return apply_line(state, &line);
        }
        KeyCode::Esc if state.help => state.help = false,
        KeyCode::Esc => state.input.clear(),
        KeyCode::Tab | KeyCode::Right | KeyCode::Down => state.focus_moved(1),
        KeyCode::BackTab | KeyCode::Left | KeyCode::Up => state.focus_moved(-1),
        KeyCode::Backspace => state.input_backspace(),
        KeyCode::Char('?') if state.input.is_empty() => state.toggle_help(),
        KeyCode::Char(']') if state.input.is_empty() => state.select_moved(1),
        KeyCode::Char('[') if state.input.is_empty() => state.select_moved(-1),
        KeyCode::Char(c) if !ctrl => state.input_push(c),
        _ => {}
    }
    Action::None
}

/// Applies one entered line: a bad one is a log line, a local command is done here, the
/// rest is the loop's.
pub(crate) fn apply_line(state: &mut State, line: &str) -> Action {
    if line.is_empty() {
        return Action::None;
    }
    match parse(line) {
        Err(e) => state.log(format!("error: {e}")),
        Ok(Command::Help) => {
            for (usage, what) in HELP {
                state.log(format!("{usage:<24} {what}"));
            }
        }
        Ok(Command::State) => log_items(state),
        Ok(Command::Pool { name }) => match state.select(&name) {
            Ok(()) => state.log(format!("pool {name}")),
            Err(e) => state.log(format!("error: {e}")),
        },
        Ok(Command::Quit) => return Action::Quit,
        Ok(command) => return Action::Run(command),
    }
    Action::None
}

/// `s`: the selected pool's items into the log, one line each.
fn log_items(state: &mut State) {
    let Some(pool) = state.pool() else {
        state.log("no pool yet");
        return;
    };
    let mut lines = vec![format!(
        "pool {} {} · last id {} · {} items",
        pool.name,
        pool.run.as_str(),
        pool.last_request_id,
        pool.items.len()
    )];
    for item in &pool.items {
        let stock = match (item.current, item.initial) {
            (Stock::Unlimited, _) => "unlimited".to_owned(),
            (Stock::Finite(c), Stock::Finite(i)) => format!("{c}/{i}"),
            (Stock::Finite(c), Stock::Unlimited) => c.to_string(),
        };
        lines.push(format!("  {} {stock} weight {} odds {:.4}", item.id, item.weight, item.odds));
    }
    for line in lines {
        state.log(line);
    }
}

#[cfg(test)]
mod tests {
    use crossterm::event::KeyEventState;

    use super::*;
    use crate::service::proto::{GetStateResponse, RewardItem};
    use crate::tui::state::Pane;

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn type_line(state: &mut State, line: &str) -> Action {
        for c in line.chars() {
            assert_eq!(apply_key(state, press(KeyCode::Char(c))), Action::None);
        }
        apply_key(state, press(KeyCode::Enter))
    }

    fn with_pools() -> State {
        let mut state = State::new("test");
        let items = vec![
            RewardItem { item_id: "gold".into(), quantity: 3, probability: 10, odds: 0.25 },
            RewardItem { item_id: "coin".into(), quantity: -1, probability: 30, odds: 0.75 },
        ];
        state.apply_state("a", GetStateResponse { items, last_request_id: 4, pool: String::new() });
        state.pool_mut("b");
        state
    }

    #[test]
    fn typed_lines_run_or_log() {
        let mut state = with_pools();
        assert_eq!(type_line(&mut state, "d 10"), Action::Run(Command::Draw { count: 10 }));
        assert_eq!(type_line(&mut state, "p 3"), Action::Run(Command::Pull { count: 3 }));
        assert_eq!(type_line(&mut state, "r"), Action::Run(Command::Reload));
        assert_eq!(type_line(&mut state, "d x"), Action::None);
        assert_eq!(
            state.log.back().map(String::as_str),
            Some("error: d [n]: \"x\" is not a count from 1 to 10000")
        );
        assert_eq!(type_line(&mut state, "pool b"), Action::None);
        assert_eq!(state.pool().map(|p| p.name.as_str()), Some("b"));
        type_line(&mut state, "pool zz");
        assert_eq!(
            state.log.back().map(String::as_str),
            Some("error: no pool \"zz\" (pools: a, b)")
        );
        assert_eq!(type_line(&mut state, "q"), Action::Quit);
        assert_eq!(state.history, ["d 10", "p 3", "r", "d x", "pool b", "pool zz", "q"]);
        assert_eq!(apply_key(&mut state, press(KeyCode::Enter)), Action::None, "empty line");
    }

    #[test]
    fn help_and_state_go_to_the_log() {
        let mut state = with_pools();
        type_line(&mut state, "h");
        assert_eq!(state.log.len(), HELP.len());
        type_line(&mut state, "s");
        let tail: Vec<&str> = state.log.iter().skip(HELP.len()).map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "pool a running · last id 4 · 2 items",
                "  gold 3/3 weight 10 odds 0.2500",
                "  coin unlimited weight 30 odds 0.7500",
            ]
        );
        let mut empty = State::new("x");
        type_line(&mut empty, "s");
        assert_eq!(empty.log, ["no pool yet"]);
    }

    #[test]
    fn keys_move_focus_pools_and_help() {
        let mut state = with_pools();
        apply_key(&mut state, press(KeyCode::Tab));
        assert_eq!(state.focus, Pane::Items);
        apply_key(&mut state, press(KeyCode::Left));
        assert_eq!(state.focus, Pane::Command);
        apply_key(&mut state, press(KeyCode::Char(']')));
        assert_eq!(state.selected, 1);
        apply_key(&mut state, press(KeyCode::Char('[')));
        assert_eq!(state.selected, 0);
        apply_key(&mut state, press(KeyCode::Char('?')));
        assert!(state.help);
        apply_key(&mut state, press(KeyCode::Esc));
        assert!(!state.help);
        // Within a line, `?` and `]` are typed; Esc clears the line.
        for c in "u ?]".chars() {
            apply_key(&mut state, press(KeyCode::Char(c)));
        }
        assert_eq!((state.input.as_str(), state.help, state.selected), ("u ?]", false, 0));
        apply_key(&mut state, press(KeyCode::Esc));
        assert_eq!(state.input, "");
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(apply_key(&mut state, ctrl_c), Action::Quit);
        let release = KeyEvent::new_with_kind_and_state(
            KeyCode::Char('x'),
            KeyModifiers::NONE,
            KeyEventKind::Release,
            KeyEventState::NONE,
        );
        apply_key(&mut state, release);
        assert_eq!(state.input, "", "a release types nothing");
    }
}
