//! The `rewardpool` command line: parse, run, exit code. Everything else is in `cli`.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> std::process::ExitCode {
    rewardpool::cli::main()
}
