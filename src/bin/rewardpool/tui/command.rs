//! The command line's commands: the Go TUI's, with the same letters (`h`, `s`, `d [n]`,
//! `u <item> <qty> <weight>`, `r`, `q`), and ours (`p <n>`, `pool <name>`,
//! `key <hex> <n>`). Parsing is pure; a bad line is a [`CommandError`] whose message the
//! log pane shows, never a panic.

use std::fmt;

/// The most draws one `d` asks for (each draw is its own request).
pub(crate) const DRAWS_MAX: u32 = 10_000;

/// The most draws one pull (`p`, `key`) asks for: the server's own limit per request
/// (`PoolInfo.max_count` may be lower; the server then refuses it).
pub(crate) const PULL_MAX: u32 = 1_000;

/// The key map and commands, as `h` and `?` show them.
pub(crate) const HELP: &[(&str, &str)] = &[
    ("h", "this help"),
    ("s", "the pool's state (items, stock, odds) into the log"),
    ("d [n]", "n draws, one request each (default 1)"),
    ("p <n>", "one pull of n draws (all or nothing)"),
    ("key <hex> <n>", "a keyed pull of n: 32 hex digits; a retry replays"),
    ("u <item> <qty> <weight>", "set an item's stock (-1 unlimited) and weight"),
    ("pool <name>", "follow another pool"),
    ("r", "reload: reconnect / recover"),
    ("q", "quit"),
];

/// One command, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// `h`: the help into the log pane.
    Help,
    /// `s`: the pool's state into the log pane.
    State,
    /// `d [n]`: n draws, one request each.
    Draw {
        /// Draws, 1 to [`DRAWS_MAX`].
        count: u32,
    },
    /// `p <n>`: one request of n draws.
    Pull {
        /// Draws, 1 to [`PULL_MAX`].
        count: u32,
    },
    /// `key <hex> <n>`: one request of n draws under an idempotency key.
    KeyedPull {
        /// The key's 16 bytes.
        key: [u8; 16],
        /// Draws, 1 to [`PULL_MAX`].
        count: u32,
    },
    /// `u <item> <qty> <weight>`: sets an item's stock and weight (adds it when new).
    Update {
        /// The item's id.
        item: String,
        /// The stock, the wire's encoding: -1 = unlimited.
        quantity: i32,
        /// The weight.
        weight: u32,
    },
    /// `pool <name>`: the panes follow this pool.
    Pool {
        /// The pool's name.
        name: String,
    },
    /// `r`: reconnect (or recover the data directory).
    Reload,
    /// `q`: quit.
    Quit,
}

/// Why a line is not a command; its `Display` is the sentence the log pane shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CommandError {
    /// A blank line.
    Empty,
    /// The first word is no command.
    Unknown(String),
    /// An argument is missing.
    Missing {
        /// The command's usage.
        usage: &'static str,
        /// What is missing.
        what: &'static str,
    },
    /// More arguments than the command takes.
    Extra {
        /// The command's usage.
        usage: &'static str,
        /// The first extra argument.
        word: String,
    },
    /// An argument that does not read as what it must be.
    Invalid {
        /// The command's usage.
        usage: &'static str,
        /// The argument as typed.
        word: String,
        /// What it must be.
        expected: &'static str,
    },
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Empty => f.write_str("no command (h for help)"),
            CommandError::Unknown(word) => write!(f, "unknown command {word:?} (h for help)"),
            CommandError::Missing { usage, what } => write!(f, "{usage}: missing {what}"),
            CommandError::Extra { usage, word } => write!(f, "{usage}: unexpected {word:?}"),
            CommandError::Invalid { usage, word, expected } => {
                write!(f, "{usage}: {word:?} is not {expected}")
            }
        }
    }
}

impl std::error::Error for CommandError {}

/// The words of one command after its name, checked one by one.
struct Args<'a> {
    usage: &'static str,
    words: std::str::SplitWhitespace<'a>,
}

impl<'a> Args<'a> {
    /// The next word, or `what` is missing.
    fn word(&mut self, what: &'static str) -> Result<&'a str, CommandError> {
        self.words.next().ok_or(CommandError::Missing { usage: self.usage, what })
    }

    /// The next word as a count from 1 to `max`, `what` when missing.
    fn count(&mut self, what: &'static str, max: u32) -> Result<u32, CommandError> {
        let word = self.word(what)?;
        self.count_of(word, max)
    }

    /// `word` as a count from 1 to `max`.
    fn count_of(&self, word: &str, max: u32) -> Result<u32, CommandError> {
        let expected = match max {
            DRAWS_MAX => "a count from 1 to 10000",
            _ => "a count from 1 to 1000",
        };
        word.parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| self.invalid(word, expected))
    }

    fn invalid(&self, word: &str, expected: &'static str) -> CommandError {
        CommandError::Invalid { usage: self.usage, word: word.to_owned(), expected }
    }

    /// Nothing may follow.
    fn end(mut self) -> Result<(), CommandError> {
        match self.words.next() {
            None => Ok(()),
            Some(word) => Err(CommandError::Extra { usage: self.usage, word: word.to_owned() }),
        }
    }
}

/// Parses one command line.
pub(crate) fn parse(line: &str) -> Result<Command, CommandError> {
    let mut words = line.split_whitespace();
    let name = words.next().ok_or(CommandError::Empty)?;
    let usage = match name {
        "h" | "help" => "h",
        "s" => "s",
        "d" => "d [n]",
        "p" => "p <n>",
        "key" => "key <hex> <n>",
        "u" => "u <item> <qty> <weight>",
        "pool" => "pool <name>",
        "r" => "r",
        "q" | "quit" => "q",
        other => return Err(CommandError::Unknown(other.to_owned())),
    };
    let mut args = Args { usage, words };
    let command = match name {
        "h" | "help" => Command::Help,
        "s" => Command::State,
        "d" => match args.words.next() {
            None => Command::Draw { count: 1 },
            Some(word) => Command::Draw { count: args.count_of(word, DRAWS_MAX)? },
        },
        "p" => Command::Pull { count: args.count("the count", PULL_MAX)? },
        "key" => {
            let hex = args.word("the key (32 hex digits)")?;
            let key = parse_key(hex).ok_or_else(|| args.invalid(hex, "32 hex digits"))?;
            Command::KeyedPull { key, count: args.count("the count", PULL_MAX)? }
        }
        "u" => update(&mut args)?,
        "pool" => Command::Pool { name: args.word("the pool's name")?.to_owned() },
        "r" => Command::Reload,
        _ => Command::Quit,
    };
    args.end()?;
    Ok(command)
}

/// `u <item> <qty> <weight>`'s arguments.
fn update(args: &mut Args<'_>) -> Result<Command, CommandError> {
    let item = args.word("the item")?.to_owned();
    let qty = args.word("the quantity")?;
    let quantity = match qty {
        "-1" | "unlimited" => -1,
        word => word.parse::<i32>().ok().filter(|q| *q >= 0).ok_or_else(|| {
            args.invalid(word, "a quantity from 0 to 2147483647, or -1 (unlimited)")
        })?,
    };
    let word = args.word("the weight")?;
    let weight =
        word.parse::<u32>().map_err(|_| args.invalid(word, "a weight from 0 to 4294967295"))?;
    Ok(Command::Update { item, quantity, weight })
}

/// 32 hex digits as 16 bytes.
fn parse_key(hex: &str) -> Option<[u8; 16]> {
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut key = [0u8; 16];
    for (byte, pair) in key.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(key)
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
