//! Every command in README.md's `console` blocks works as written.
//!
//! Each `$ ` line is run in README order in one fresh directory (so `draw` then `state` see
//! the same `./data`), with `cargo run --release --` and `rewardpool` standing for the built
//! binary (`cargo run` picks it through `default-run`, checked below). A `yaml` block whose
//! first line is `# NAME` is written to NAME first (the README's `bad.yaml`). Output lines
//! (stdout, then stderr) must equal the README's once numbers and the built-in item names are
//! blanked (draws are random, throughput varies) and runs of spaces are collapsed; the exit
//! code is 0, or non-zero when the README shows an `error:` line. A command shown without
//! output (the hiccup tool's) is checked by its exit code only.
//!
//! A block preceded by `<!-- readme-test: illustrative (why) -->` shows output that needs a
//! log the README does not build (a damaged one, a million draws): its commands run in an
//! empty directory and must be accepted (no usage error, no panic). Commands that are not
//! the binary ([`NOT_RUN`]: `cargo test` is this very run, the perf scripts take minutes)
//! must name files that exist and are executable. `rewardpool-hiccup` runs as written with
//! `--seconds 0.3` added (its default is 10 s). A command ending in ` &` (the service) is
//! started in the background, its first output lines compared as they appear, and `kill %1`
//! stops it with SIGTERM (exit 0 required); `curl ...` lines run in `sh -c`.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::Run;

const BIN: &str = env!("CARGO_BIN_EXE_rewardpool");
const HICCUP: &str = env!("CARGO_BIN_EXE_rewardpool-hiccup");
/// The default bench (10^7 draws, memory) takes 1 s in a release build and 5–40 s in the
/// unoptimized test build, depending on how busy the machine is.
const DEADLINE: Duration = Duration::from_secs(300);

/// Commands shown but not run here, by their first word(s), and why.
const NOT_RUN: &[(&str, &str)] = &[
    ("cargo test", "this test is part of it"),
    ("cargo bench", "criterion benchmarks take minutes"),
    ("tools/check.sh", "runs cargo test, which includes this test"),
    ("perf/run_matrix.sh", "a bench matrix of many minutes"),
    ("perf/headline.sh", "the headline sessions take many minutes"),
];

/// The built-in catalog's item ids: draws name them at random.
const ITEMS: [&str; 6] = ["diamond", "gold", "silver", "rock", "mud", "log"];

/// One `$ ` line and the output lines after it.
#[derive(Debug)]
struct Example {
    line: usize,
    command: String,
    output: Vec<String>,
    illustrative: bool,
}

/// Files from `yaml` blocks that start with `# NAME`, and the console examples.
fn parse(readme: &str) -> (Vec<(String, String)>, Vec<Example>) {
    let mut files = Vec::new();
    let mut examples: Vec<Example> = Vec::new();
    let lines: Vec<&str> = readme.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let fence = lines[i].trim_end();
        if fence == "```console" || fence == "```yaml" {
            let illustrative = lines[..i]
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.starts_with("<!-- readme-test: illustrative"));
            let start = i + 1;
            let mut end = start;
            while end < lines.len() && lines[end].trim_end() != "```" {
                end += 1;
            }
            let body = &lines[start..end];
            if fence == "```yaml" {
                if let Some(name) = body.first().and_then(|l| l.strip_prefix("# ")) {
                    let text: String = body.iter().map(|l| format!("{l}\n")).collect();
                    files.push((name.trim().to_owned(), text));
                }
            } else {
                for (k, l) in body.iter().enumerate() {
                    if let Some(cmd) = l.strip_prefix("$ ") {
                        // A shell comment after the command: `cmd   # what it does`.
                        let cmd = cmd.split(" # ").next().unwrap_or(cmd).trim();
                        examples.push(Example {
                            line: start + k + 1,
                            command: cmd.to_owned(),
                            output: Vec::new(),
                            illustrative,
                        });
                    } else if let Some(last) = examples.last_mut() {
                        last.output.push((*l).to_owned());
                    }
                }
            }
            i = end;
        }
        i += 1;
    }
    (files, examples)
}

/// Numbers become `#`, built-in item names `<item>`, runs of spaces one space.
fn normalize(line: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = line.trim_end().chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() {
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || (chars[i] == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)))
            {
                i += 1;
            }
            out.push('#');
        } else if c.is_alphabetic() {
            let start = i;
            while i < chars.len() && chars[i].is_alphanumeric() {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push_str(if ITEMS.contains(&word.as_str()) { "<item>" } else { &word });
        } else if c == ' ' {
            while i < chars.len() && chars[i] == ' ' {
                i += 1;
            }
            out.push(' ');
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Runs `program args` in `cwd` (no stdin: a progress bar or prompt never waits).
fn run(program: &str, args: &[String], cwd: &Path) -> Run {
    let child = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    let shown: Vec<&str> = args.iter().map(String::as_str).collect();
    crate::process::finish(child, &shown, DEADLINE)
}

/// The program and arguments a README command stands for, or `None` when it is not run.
fn resolve(command: &str) -> Option<(&'static str, Vec<String>)> {
    let words = |rest: &str| rest.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    if let Some(rest) = command.strip_prefix("cargo run --release --") {
        return Some((BIN, words(rest)));
    }
    if let Some(rest) = command.strip_prefix("rewardpool ") {
        return Some((BIN, words(rest)));
    }
    // `curl ... | grep ...` (the service's /metrics): a shell pipeline.
    if command.starts_with("curl ") {
        return Some(("sh", vec!["-c".to_owned(), command.to_owned()]));
    }
    if let Some(rest) = command.strip_prefix("target/release/rewardpool-hiccup") {
        let mut args = words(rest);
        args.extend(["--seconds".to_owned(), "0.3".to_owned()]);
        return Some((HICCUP, args));
    }
    None
}

#[test]
fn readme_console_commands_work_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // `cargo run` with two binaries needs `default-run` to know which one is meant.
    let manifest = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(
        manifest.lines().any(|l| l.trim() == "default-run = \"rewardpool\""),
        "Cargo.toml has no default-run = \"rewardpool\": `cargo run -- bench` would fail"
    );
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    let (files, examples) = parse(&readme);
    assert!(examples.len() >= 10, "only {} README commands found", examples.len());
    assert!(files.iter().any(|(name, _)| name == "bad.yaml"), "{files:?}");

    // On disk (not tmpfs): the hiccup tool's disk probe refuses tmpfs.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for (name, text) in &files {
        fs::write(dir.path().join(name), text).unwrap();
    }
    let (mut ran, mut checked) = (0, 0);
    // Commands started with `&` (the service), stopped by a later `kill %1`.
    let mut background: Vec<Background> = Vec::new();
    for ex in &examples {
        let at = format!("README.md line {}: `{}`", ex.line, ex.command);
        if let Some(command) = ex.command.strip_suffix(" &") {
            let (program, args) =
                resolve(command).unwrap_or_else(|| panic!("{at}: not a command this test runs"));
            background.push(Background::start(program, &args, dir.path(), &ex.output, &at));
            ran += 1;
            continue;
        }
        if ex.command == "kill %1" {
            assert!(!background.is_empty(), "{at}: nothing runs in the background");
            let run = background.remove(0).stop();
            assert_eq!(run.code, Some(0), "{at}: the background command did not exit 0: {run:?}");
            ran += 1;
            continue;
        }
        let Some((program, args)) = resolve(&ex.command) else {
            let (_, why) = NOT_RUN
                .iter()
                .find(|(prefix, _)| ex.command.starts_with(prefix))
                .unwrap_or_else(|| panic!("{at}: neither run by this test nor listed in NOT_RUN"));
            let first = ex.command.split_whitespace().next().unwrap();
            if first.contains('/') {
                let meta = fs::metadata(root.join(first))
                    .unwrap_or_else(|e| panic!("{at}: {first} does not exist: {e}"));
                assert!(meta.permissions().mode() & 0o111 != 0, "{at}: {first} is not executable");
            }
            eprintln!("not run ({why}): {}", ex.command);
            checked += 1;
            continue;
        };
        if ex.illustrative {
            let empty = tempfile::tempdir().unwrap();
            let r = run(program, &args, empty.path());
            assert!(
                !r.stderr.contains("Usage:") && !r.stderr.contains("panicked"),
                "{at}: not accepted: {r:?}"
            );
            checked += 1;
            continue;
        }
        let r = run(program, &args, dir.path());
        ran += 1;
        let fails = ex.output.iter().any(|l| l.starts_with("error:"));
        if fails {
            assert!(matches!(r.code, Some(c) if c != 0), "{at}: the README shows an error: {r:?}");
        } else {
            assert_eq!(r.code, Some(0), "{at}: {r:?}");
        }
        if ex.output.is_empty() {
            // The README shows no output for it (the hiccup tool's report): exit code only.
            continue;
        }
        let want: Vec<String> = ex.output.iter().map(|l| normalize(l)).collect();
        let got: Vec<String> = r.stdout.lines().chain(r.stderr.lines()).map(normalize).collect();
        assert_eq!(got, want, "{at}: the output differs from the README's\n{r:?}");
    }
    assert!(background.is_empty(), "the README leaves a background command running");
    assert!(ran >= 5, "only {ran} commands ran");
    eprintln!("{ran} README commands run (output compared where shown), {checked} checked only");
}

#[test]
fn normalize_blanks_numbers_items_and_padding() {
    assert_eq!(normalize("throughput  18.95 M draws/s  (0.528 s)"), "throughput # M draws/s (# s)");
    assert_eq!(normalize("1 gold"), normalize("3 mud"));
    assert_ne!(normalize("1 gold"), normalize("1 gold extra"));
    assert_ne!(normalize("ok: 1 segment"), normalize("error: 1 segment"));
    assert_eq!(normalize("p99.9 226.6 µs"), "p99.# # µs");
}

/// A README command run with `&` (the service): started, its first output lines compared
/// with the README's as they appear, stopped with SIGTERM by `kill %1`. Dropped unstopped
/// (a failed test), it is killed.
struct Background {
    child: Option<std::process::Child>,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Background {
    fn start(program: &str, args: &[String], cwd: &Path, shown: &[String], at: &str) -> Background {
        use std::io::{BufRead as _, Read as _};
        let mut child = Command::new(program)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{at}: spawn {program}: {e}"));
        let (lines_tx, lines_rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().expect("piped");
        let stdout = std::thread::spawn(move || {
            let mut all = Vec::new();
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line.clone());
                all.push(line);
            }
            all.join("\n")
        });
        let mut err = child.stderr.take().expect("piped");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let background =
            Background { child: Some(child), stdout: Some(stdout), stderr: Some(stderr) };
        let deadline = std::time::Instant::now() + DEADLINE;
        let mut got = Vec::new();
        while got.len() < shown.len() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(line) => got.push(normalize(&line)),
                Err(_) => {
                    let run = background.stop();
                    panic!("{at}: printed {got:?} and no more: {run:?}");
                }
            }
        }
        let want: Vec<String> = shown.iter().map(|l| normalize(l)).collect();
        assert_eq!(got, want, "{at}: the output differs from the README's");
        background
    }

    /// SIGTERM, then its exit (bounded by [`DEADLINE`]) and output.
    fn stop(mut self) -> Run {
        let Some(mut child) = self.child.take() else {
            return Run { code: None, stdout: String::new(), stderr: String::new() };
        };
        // SAFETY: kill(2) on our own child's pid, which we have not reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let start = std::time::Instant::now();
        let code = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status.code();
            }
            if start.elapsed() > DEADLINE {
                let _ = child.kill();
                break child.wait().ok().and_then(|s| s.code());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stdout = self.stdout.take().and_then(|t| t.join().ok()).unwrap_or_default();
        let stderr = self.stderr.take().and_then(|t| t.join().ok()).unwrap_or_default();
        Run { code, stdout, stderr }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
