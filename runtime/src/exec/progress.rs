//! Progress bars for long calls (`Opts::progress`, the `progress` feature): a count of the
//! items completed across every worker, with rate and ETA, drawn by indicatif on stderr and
//! hidden when stderr is not a terminal. The count is kept in the parent, as each chunk's
//! results arrive, so it costs the workers nothing.

/// What a call was asked to show.
#[derive(Clone, Default)]
pub(crate) struct Progress {
    #[cfg(feature = "progress")]
    spec: Option<Spec>,
}

#[cfg(feature = "progress")]
#[derive(Clone)]
enum Spec {
    /// A bar of ours.
    Default,
    /// The caller's bar.
    With(indicatif::ProgressBar),
}

impl Progress {
    #[cfg(feature = "progress")]
    pub(crate) fn default_bar() -> Progress {
        Progress {
            spec: Some(Spec::Default),
        }
    }

    #[cfg(feature = "progress")]
    pub(crate) fn with(bar: indicatif::ProgressBar) -> Progress {
        Progress {
            spec: Some(Spec::With(bar)),
        }
    }

    pub(crate) fn is_on(&self) -> bool {
        #[cfg(feature = "progress")]
        return self.spec.is_some();
        #[cfg(not(feature = "progress"))]
        false
    }

    /// The counter of a call of `total` items (`None`: not known in advance), if asked for.
    pub(crate) fn start(&self, total: Option<usize>) -> Option<Counter> {
        #[cfg(feature = "progress")]
        {
            let bar = match self.spec.as_ref()? {
                Spec::Default => {
                    let bar = match total {
                        Some(n) => indicatif::ProgressBar::new(n as u64),
                        None => indicatif::ProgressBar::no_length(),
                    };
                    let template = if total.is_some() {
                        "{bar:40} {pos}/{len} items, {per_sec:0}, ETA {eta}"
                    } else {
                        "{spinner} {pos} items, {per_sec:0}"
                    };
                    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                        bar.set_style(style);
                    }
                    bar
                }
                Spec::With(bar) => {
                    if let (Some(n), None) = (total, bar.length()) {
                        bar.set_length(n as u64);
                    }
                    bar.clone()
                }
            };
            Some(Counter { bar })
        }
        #[cfg(not(feature = "progress"))]
        {
            let _ = total;
            None
        }
    }
}

/// Counts one call's completed items; the bar is finished when the call's sink goes.
pub(crate) struct Counter {
    #[cfg(feature = "progress")]
    bar: indicatif::ProgressBar,
}

impl Counter {
    pub(crate) fn add(&self, items: usize) {
        #[cfg(feature = "progress")]
        self.bar.inc(items as u64);
        #[cfg(not(feature = "progress"))]
        let _ = items;
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        #[cfg(feature = "progress")]
        self.bar.finish();
    }
}
