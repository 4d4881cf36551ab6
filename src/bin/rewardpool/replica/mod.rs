//! Replication through NATS JetStream, the network side (issue 12): `serve`'s shipper (one
//! per replicated pool, `ship`), `rewardpool follow` (`follow`), `rewardpool promote`
//! (`promote`), and the message format they
//! share (`wire`). What they need from the engine is the library's `rewardpool::replicate`
//! (the log tail, the replica's log); no NATS code is in the library.

pub(crate) mod follow;
pub(crate) mod promote;
pub(crate) mod ship;
mod wire;

/// Writes `text` and a newline to `dir/name` so that a crash leaves the old file or the new
/// one, whole: through `name.tmp`, synced, renamed over `name`, the directory synced.
pub(crate) fn write_durably(dir: &std::path::Path, name: &str, text: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::io::Write as _;
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().with_context(|| format!("writing {}", path.display()))
}
