//! Pinning the core thread to a CPU core (core_affinity).
//!
//! MEASURED.md pitfall: `get_core_ids()` lists only the cores in the calling thread's current
//! mask, so a thread spawned by an already pinned thread sees one core. The list is read once,
//! by the first engine to start, and kept.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Which core the engine's core thread runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CorePin {
    /// The next core in turn, starting from the highest (callers usually run on low cores).
    #[default]
    Auto,
    /// This core id (as the operating system numbers them).
    Core(usize),
    /// Do not pin (e.g. more engines than cores in a test).
    Unpinned,
}

static CORES: OnceLock<Vec<usize>> = OnceLock::new();
static NEXT_AUTO: AtomicUsize = AtomicUsize::new(0);

/// The core ids this process could run on when it first asked.
pub fn available_cores() -> &'static [usize] {
    CORES.get_or_init(|| {
        core_affinity::get_core_ids()
            .map(|ids| ids.into_iter().map(|c| c.id).collect())
            .unwrap_or_default()
    })
}

/// Resolves a choice to a core id (`None` = run unpinned). Called before the thread starts.
pub(crate) fn choose(pin: CorePin) -> Result<Option<usize>, PinError> {
    let cores = available_cores();
    match pin {
        CorePin::Unpinned => Ok(None),
        CorePin::Auto if cores.is_empty() => Ok(None),
        CorePin::Auto => {
            // Relaxed: a counter for spreading engines over cores; no data is published.
            let k = NEXT_AUTO.fetch_add(1, Ordering::Relaxed);
            Ok(Some(cores[cores.len() - 1 - k % cores.len()]))
        }
        CorePin::Core(id) if cores.contains(&id) => Ok(Some(id)),
        CorePin::Core(id) => Err(PinError { core: id, available: cores.to_vec() }),
    }
}

/// Where a journal's helper threads (flusher, preparer) run when the core thread is pinned
/// to `core`: another core this process may use (`None` when there is none).
pub(crate) fn helper_core(core: usize) -> Option<usize> {
    available_cores().iter().copied().find(|c| *c != core)
}

/// Pins the calling thread.
pub(crate) fn pin_current(core: usize) -> Result<(), PinError> {
    if core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        Ok(())
    } else {
        Err(PinError { core, available: available_cores().to_vec() })
    }
}

/// Lets the calling thread run on any of `cores` (and only there): for the threads that
/// serve engines from outside (a service's gateway and async threads), kept off the engines'
/// own cores so a woken one never waits behind a core thread that spins between requests
/// (measured: a request after an idle moment waited ~0.8 ms, the core thread's spin phase,
/// when the woken gateway was queued on the core thread's CPU).
///
/// # Errors
/// `cores` is empty, names a core this process may not use, or the kernel refused.
pub fn restrict_current_to(cores: &[usize]) -> Result<(), PinError> {
    let refused = |core| PinError { core, available: available_cores().to_vec() };
    let Some(&first) = cores.first() else { return Err(refused(usize::MAX)) };
    // SAFETY: `cpu_set_t` is a plain bit array for which all-zero is the empty set.
    #[allow(unsafe_code)]
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &core in cores {
        if core >= libc::CPU_SETSIZE as usize || !available_cores().contains(&core) {
            return Err(refused(core));
        }
        // SAFETY: `core` is below CPU_SETSIZE (checked above), the set's capacity.
        #[allow(unsafe_code)]
        unsafe {
            libc::CPU_SET(core, &mut set);
        }
    }
    // SAFETY: pid 0 is the calling thread; the pointer and size describe `set`, which lives
    // across the call; the kernel only reads it.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(refused(first))
    }
}

/// A requested core cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinError {
    /// The core asked for.
    pub core: usize,
    /// The cores this process may use.
    pub available: Vec<usize>,
}

impl std::fmt::Display for PinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot pin the core thread to core {}: available cores are {:?}",
            self.core, self.available
        )
    }
}

impl std::error::Error for PinError {}
