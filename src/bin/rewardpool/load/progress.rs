//! The progress bar on stderr: elapsed against the run's length, with the last interval's
//! rates and p99. Off when stderr is not a terminal, and with `--json`.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::timeline::Timeline;
use super::worker::Run;

/// The bar, when there is one.
#[derive(Debug)]
pub(crate) struct Progress(Option<ProgressBar>);

impl Progress {
    pub(crate) fn new(run: &Run) -> Progress {
        if run.plan.json || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let total = u64::try_from(run.plan.ramp.total().as_millis()).unwrap_or(u64::MAX);
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("load {bar:30} {elapsed}/{duration}  {msg}")
        {
            bar.set_style(style);
        }
        Progress(Some(bar))
    }

    pub(crate) fn update(&mut self, elapsed: Duration, timeline: &Timeline) {
        let Some(bar) = &self.0 else { return };
        bar.set_position(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
        if let Some(p) = timeline.points.last() {
            bar.set_message(format!(
                "{:.0} req/s  {:.0} draws/s  p99 {:.2} ms",
                p.requests_per_sec,
                p.draws_per_sec,
                p.p99 as f64 / 1e6
            ));
        }
    }

    pub(crate) fn finish(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}
