//! Who may use a session or conversation now: one generation or one short call at a time.
//!
//! Cancelling is asynchronous: the app's stream or flow ends at once, while the generation
//! thread stops at its next token (or prompt batch). A UI that stops a reply and asks again
//! ("stop", `collectLatest`, `flatMapLatest`) therefore starts the next generation while the
//! previous one is still winding down. Failing that call with `SessionBusy` would make every
//! such UI racy, so a claim waits for a generation that has been cancelled (and for a short
//! call such as `reset`) to end; it fails with [`TernError::SessionBusy`] only when the holder
//! is a generation nobody cancelled: genuinely concurrent use.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::TernError;
use crate::session::Control;

/// How long a claim waits for the holder to wind down before it gives up with `SessionBusy`.
///
/// A cancelled generation ends within one token or one prompt batch (tens of milliseconds on
/// a phone for small models, about a second for a 7B one); this bound only keeps a claim from
/// waiting for ever on a holder that is stuck (a listener callback that blocks).
pub(crate) const WIND_DOWN_LIMIT: Duration = Duration::from_secs(30);

/// What holds a slot.
#[derive(Debug)]
enum Holder {
    /// A short call (`reset`, `save`, `restore`, ...).
    Call,
    /// A generation, with its control to see whether it was cancelled.
    Generation(Arc<Control>),
}

/// A session's or conversation's claim: free, or held by one generation or call.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    holder: Mutex<Option<Holder>>,
    freed: Condvar,
}

impl Slot {
    /// Claims the slot for the generation `control` drives (see the module docs for when this
    /// waits and when it fails).
    pub(crate) fn claim_generation(&self, control: &Arc<Control>) -> Result<(), TernError> {
        self.claim(Holder::Generation(Arc::clone(control)))
    }

    /// Runs the short call `f` with the slot held, waiting like a generation would.
    pub(crate) fn call<T>(&self, f: impl FnOnce() -> T) -> Result<T, TernError> {
        self.claim(Holder::Call)?;
        /// Frees the slot even if `f` panics.
        struct Release<'a>(&'a Slot);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.release();
            }
        }
        let _release = Release(self);
        Ok(f())
    }

    /// Frees the slot and wakes the claims waiting for it.
    pub(crate) fn release(&self) {
        *self.lock() = None;
        self.freed.notify_all();
    }

    /// Whether a generation or call holds the slot.
    pub(crate) fn is_busy(&self) -> bool {
        self.lock().is_some()
    }

    fn claim(&self, holder: Holder) -> Result<(), TernError> {
        let deadline = Instant::now() + WIND_DOWN_LIMIT;
        let mut current = self.lock();
        loop {
            match &*current {
                None => {
                    *current = Some(holder);
                    return Ok(());
                }
                Some(Holder::Generation(control)) if !control.is_cancelled() => {
                    return Err(TernError::SessionBusy)
                }
                // A short call or a cancelled generation: it ends soon.
                Some(_) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(TernError::SessionBusy);
                    }
                    current = self
                        .freed
                        .wait_timeout(current, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Holder>> {
        // The holder is replaced whole: a panic cannot leave it half-written.
        self.holder.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn a_running_generation_refuses_a_cancelled_one_waits() {
        let slot = Arc::new(Slot::default());
        let running = Arc::new(Control::default());
        slot.claim_generation(&running).unwrap();
        // Genuinely concurrent: refused at once.
        let second = Arc::new(Control::default());
        assert_eq!(slot.claim_generation(&second), Err(TernError::SessionBusy));
        assert_eq!(slot.call(|| ()), Err(TernError::SessionBusy));
        // Cancelled: the next claim waits for the release.
        running.cancel();
        let releaser = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(50));
                slot.release();
            })
        };
        let start = Instant::now();
        slot.claim_generation(&second).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(40));
        releaser.join().unwrap();
        assert!(slot.is_busy());
        slot.release();
        assert!(!slot.is_busy());
    }

    #[test]
    fn a_call_frees_the_slot_even_when_it_panics() {
        let slot = Slot::default();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            slot.call(|| panic!("inside"))
        }));
        assert!(r.is_err());
        assert!(!slot.is_busy());
        assert_eq!(slot.call(|| 7), Ok(7));
    }
}
