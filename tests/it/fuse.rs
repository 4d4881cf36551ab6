//! The engine on a FUSE file system whose `fallocate` fails with `EOPNOTSUPP` (bindfs):
//! segments are preallocated by writing zeros, said once on stderr, and the log works.
//!
//! Needs root, `/dev/fuse` and the `bindfs` program; skipped with a printed reason otherwise.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::io::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cli::rewardpool;

/// What the engine prints (once per process) when it falls back to writing zeros.
const NOTICE: &str = "fallocate is not supported";

/// A bindfs mount of a temporary directory, unmounted when dropped.
struct BindFs {
    source: tempfile::TempDir,
    mount: PathBuf,
    _mount_dir: tempfile::TempDir,
}

impl BindFs {
    /// Mounts, or says why it cannot.
    fn mount() -> Result<BindFs, String> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        #[allow(unsafe_code)]
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root: cannot mount a FUSE file system".into());
        }
        if !Path::new("/dev/fuse").exists() {
            return Err("/dev/fuse does not exist".into());
        }
        let source = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
        let mount_dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
        let mount = mount_dir.path().join("mnt");
        fs::create_dir(&mount).map_err(|e| format!("creating {}: {e}", mount.display()))?;
        let status = Command::new("bindfs")
            .arg(source.path())
            .arg(&mount)
            .status()
            .map_err(|e| format!("cannot run bindfs (apt-get install bindfs): {e}"))?;
        if !status.success() {
            return Err(format!(
                "bindfs {} {} failed: {status}",
                source.path().display(),
                mount.display()
            ));
        }
        Ok(BindFs { source, mount, _mount_dir: mount_dir })
    }
}

impl Drop for BindFs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.mount).status().is_ok_and(|s| s.success())
            || Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mount)
                .status()
                .is_ok_and(|s| s.success())
            || Command::new("fusermount")
                .arg("-u")
                .arg(&self.mount)
                .status()
                .is_ok_and(|s| s.success());
        if !unmounted {
            eprintln!("could not unmount {}", self.mount.display());
        }
    }
}

/// The `fallocate` error on `dir`'s file system, if any.
fn fallocate_error(dir: &Path) -> Option<std::io::Error> {
    let path = dir.join("probe");
    let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path).unwrap();
    // SAFETY: fallocate only reads its integer arguments; `file` owns the descriptor.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, 4096) };
    let error = (rc != 0).then(std::io::Error::last_os_error);
    drop(file);
    fs::remove_file(&path).unwrap();
    error
}

#[test]
fn draws_on_a_file_system_without_fallocate() {
    let fuse = match BindFs::mount() {
        Ok(fuse) => fuse,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };
    match fallocate_error(&fuse.mount) {
        Some(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
        other => {
            eprintln!("skipped: fallocate on this bindfs mount gives {other:?}, not EOPNOTSUPP");
            return;
        }
    }
    let data = fuse.mount.join("data");
    let data_arg = data.to_str().unwrap();
    let cwd = fuse.source.path();

    let first = rewardpool(cwd, &["--data-dir", data_arg, "draw", "--count", "3"]);
    assert_eq!(first.code, Some(0), "{first:?}");
    assert_eq!(first.stdout.lines().count(), 3, "{first:?}");
    assert_eq!(first.stderr.matches(NOTICE).count(), 1, "said once: {first:?}");

    // A second process recovers the log and goes on (if it creates a segment, it says so
    // once).
    let second = rewardpool(cwd, &["--data-dir", data_arg, "draw", "--count", "2"]);
    assert_eq!(second.code, Some(0), "{second:?}");
    assert_eq!(second.stdout.lines().next().unwrap().split(' ').next(), Some("4"), "{second:?}");
    assert!(second.stderr.matches(NOTICE).count() <= 1, "{second:?}");

    let verify = rewardpool(cwd, &["--data-dir", data_arg, "wal", "verify"]);
    assert_eq!(verify.code, Some(0), "{verify:?}");
    assert!(verify.stdout.contains("last request id 5"), "{verify:?}");

    // Every segment is allocated in full (zeros written, not a sparse file).
    let mut segments = 0;
    for entry in fs::read_dir(fuse.source.path().join("data")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name.starts_with("wal.") {
            let meta = entry.metadata().unwrap();
            assert!(meta.len() > 0, "{name}");
            assert!(meta.blocks() * 512 >= meta.len(), "{name} is sparse: {meta:?}");
            segments += 1;
        }
    }
    assert!(segments >= 1, "no segment found");
}
