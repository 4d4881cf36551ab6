//! The `rewardpool` command line.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
