//! Sliding replay window over transport counters (RFC 6479 style, as WireGuard): a counter is
//! accepted once, and only if it is newer than `highest - WINDOW`. The window is updated only
//! after the packet authenticated, so forged packets cannot move it.

/// Width of the window in counters.
pub const WINDOW: u64 = 2048;
const WORDS: usize = (WINDOW / 64) as usize;

/// The receive-side replay state of one session.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    highest: u64,
    seen_any: bool,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow { highest: 0, seen_any: false, bits: [0; WORDS] }
    }
}

impl ReplayWindow {
    /// True if `counter` may be accepted (not seen, not too old). Does not record it.
    pub fn check(&self, counter: u64) -> bool {
        if !self.seen_any || counter > self.highest {
            return true;
        }
        if self.highest - counter >= WINDOW {
            return false;
        }
        let (w, b) = Self::slot(counter);
        self.bits[w] & (1 << b) == 0
    }

    /// Records `counter` as seen; call only after the packet authenticated and `check` passed.
    pub fn update(&mut self, counter: u64) {
        if !self.seen_any || counter > self.highest {
            let start = if self.seen_any { self.highest + 1 } else { counter };
            if counter - start >= WINDOW {
                self.bits = [0; WORDS];
            } else {
                for c in start..=counter {
                    let (w, b) = Self::slot(c);
                    self.bits[w] &= !(1 << b);
                }
            }
            self.highest = counter;
            self.seen_any = true;
        }
        let (w, b) = Self::slot(counter);
        self.bits[w] |= 1 << b;
    }

    fn slot(counter: u64) -> (usize, u32) {
        let i = counter % WINDOW;
        ((i / 64) as usize, (i % 64) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_counter_once_and_old_ones_refused() {
        let mut w = ReplayWindow::default();
        for c in [0u64, 1, 5, 3, 2, 4] {
            assert!(w.check(c), "{c}");
            w.update(c);
            assert!(!w.check(c), "{c} replayed");
        }
        w.update(10_000);
        assert!(!w.check(10_000 - WINDOW));
        assert!(w.check(10_000 - WINDOW + 1));
        assert!(!w.check(5));
        w.update(10_000 - 1);
        assert!(!w.check(10_000 - 1));
    }

    #[test]
    fn out_of_order_within_window() {
        let mut w = ReplayWindow::default();
        let order: Vec<u64> = (0..3000).rev().collect();
        let mut accepted = 0;
        for c in order {
            if w.check(c) {
                w.update(c);
                accepted += 1;
            }
        }
        assert_eq!(accepted, 1 + WINDOW as usize - 1);
    }
}
