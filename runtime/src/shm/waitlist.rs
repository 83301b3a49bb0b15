//! Who a condition variable's `notify` may wake: Python's semantics with fixed-size state,
//! so that it can live in shared memory.
//!
//! Python keeps a list of waiters and `notify(n)` wakes the first `n` on it: a notify wakes
//! only waiters already waiting, and a waiter never consumes a notify issued before it began
//! waiting. A list of processes does not fit in a fixed segment, so waiters are counted in
//! *groups* instead: a waiter joins the newest group; a notify hands out wake tokens to the
//! oldest groups first (never more tokens than a group has waiters) and *closes* every group
//! it gives tokens to, so that later waiters start a new group and cannot take them. A woken
//! waiter takes a token of its own group. Groups between which no notify happened are one
//! group; groups whose waiters have all gone are dropped.
//!
//! Every operation runs with the condition's lock held (waiting, waking and timing out all
//! re-take it), so the list needs no atomics. It is plain data behind that lock: the process
//! `Condition` keeps it in its segment, the thread version in its mutex.

/// At most this many groups are tracked. More can only pile up if waiters that were given
/// tokens never come back for them (processes killed while waiting); then the two oldest
/// groups are merged, which may let a later waiter of the pair take an earlier one's token.
pub(crate) const MAX_GROUPS: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
struct Group {
    /// Waiters that joined this group stamp themselves with the group's `gen`.
    gen: u64,
    /// Waiters of the group still waiting (tokens taken are no longer counted).
    waiting: u32,
    /// Tokens handed to the group and not yet taken.
    tokens: u32,
    /// A notify gave the group tokens: new waiters go to a new group.
    closed: u32,
    _pad: u32,
}

/// The waiters of one condition variable.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Waitlist {
    next_gen: u64,
    len: u32,
    _pad: u32,
    groups: [Group; MAX_GROUPS],
}

impl Default for Waitlist {
    fn default() -> Self {
        Waitlist {
            next_gen: 1,
            len: 0,
            _pad: 0,
            groups: [Group::default(); MAX_GROUPS],
        }
    }
}

/// A waiter's place in the list, from [`Waitlist::join`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

impl Waitlist {
    fn groups(&mut self) -> &mut [Group] {
        // Only a holder that died mid-update could leave `len` out of range.
        let len = (self.len as usize).min(MAX_GROUPS);
        self.len = len as u32;
        &mut self.groups[..len]
    }

    /// A new waiter: joins the newest group if no notify has closed it yet.
    pub(crate) fn join(&mut self) -> Ticket {
        if let Some(last) = self.groups().last_mut() {
            if last.closed == 0 {
                last.waiting += 1;
                return Ticket(last.gen);
            }
        }
        if self.groups().len() == MAX_GROUPS {
            self.merge_oldest();
        }
        let gen = self.next_gen;
        self.next_gen += 1;
        let len = self.groups().len();
        self.groups[len] = Group {
            gen,
            waiting: 1,
            ..Group::default()
        };
        self.len += 1;
        Ticket(gen)
    }

    fn merge_oldest(&mut self) {
        let g = self.groups();
        if g.len() < 2 {
            return;
        }
        g[0].waiting += g[1].waiting;
        g[0].tokens += g[1].tokens;
        g[0].closed |= g[1].closed;
        g.copy_within(2.., 1);
        self.len -= 1;
    }

    /// Hands out up to `n` wake tokens, oldest waiters first; returns how many.
    pub(crate) fn notify(&mut self, n: u32) -> u32 {
        let mut left = n;
        for g in self.groups() {
            if left == 0 {
                break;
            }
            let give = (g.waiting - g.tokens.min(g.waiting)).min(left);
            if give > 0 {
                g.tokens += give;
                g.closed = 1;
                left -= give;
            }
        }
        n - left
    }

    /// Index of the group a ticket belongs to: the newest with `gen <= ticket` (merged
    /// groups keep the older `gen`).
    fn find(&mut self, t: Ticket) -> Option<usize> {
        self.groups().iter().rposition(|g| g.gen <= t.0)
    }

    /// A waiter takes a token of its group if there is one: it was notified. It then no
    /// longer waits.
    pub(crate) fn take(&mut self, t: Ticket) -> bool {
        let Some(i) = self.find(t) else {
            return false;
        };
        let g = &mut self.groups()[i];
        if g.tokens == 0 {
            return false;
        }
        g.tokens -= 1;
        g.waiting = g.waiting.saturating_sub(1);
        self.drop_if_empty(i);
        true
    }

    /// A waiter gives up (timed out, failed): first taking a token if one is there, since
    /// a notify that reached its group is its to take (returns true then).
    pub(crate) fn leave(&mut self, t: Ticket) -> bool {
        if self.take(t) {
            return true;
        }
        let Some(i) = self.find(t) else {
            return false;
        };
        let g = &mut self.groups()[i];
        g.waiting = g.waiting.saturating_sub(1);
        g.tokens = g.tokens.min(g.waiting);
        self.drop_if_empty(i);
        false
    }

    fn drop_if_empty(&mut self, i: usize) {
        let g = self.groups();
        if g[i].waiting == 0 {
            g.copy_within(i + 1.., i);
            self.len -= 1;
        }
    }

    /// Waiters counted as waiting (including those handed a token not yet taken).
    #[cfg(test)]
    fn waiting(&mut self) -> u32 {
        self.groups().iter().map(|g| g.waiting).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notify_wakes_only_those_already_waiting() {
        let mut w = Waitlist::default();
        assert_eq!(w.notify(1), 0, "nobody waits: the notify is lost");
        let a = w.join();
        assert_eq!(w.notify(1), 1);
        // The notifier starts waiting: the token is a's, not its.
        let b = w.join();
        assert!(!w.take(b));
        assert!(w.take(a));
        assert!(!w.take(a), "one token, taken once");
        assert!(!w.leave(b));
        assert_eq!(w.waiting(), 0);
        assert_eq!(w.len, 0);
    }

    #[test]
    fn notify_n_wakes_at_most_n_oldest_first() {
        let mut w = Waitlist::default();
        let t: Vec<Ticket> = (0..3).map(|_| w.join()).collect();
        assert_eq!(w.notify(2), 2);
        let later = w.join();
        assert_ne!(later, t[0]);
        // Two of the three early waiters can wake, no more, and never the later one.
        assert!(!w.take(later));
        let woken = t.iter().filter(|&&x| w.take(x)).count();
        assert_eq!(woken, 2);
        assert_eq!(
            w.notify(10),
            2,
            "one early waiter and the later one are left"
        );
        assert!(w.take(t[0]));
        assert!(w.take(later));
        assert_eq!(w.waiting(), 0);
    }

    #[test]
    fn a_waiter_that_times_out_takes_a_token_that_reached_it() {
        let mut w = Waitlist::default();
        let a = w.join();
        let b = w.join();
        w.notify(1);
        // a gives up: the token of its group is there, so it counts as notified.
        assert!(w.leave(a));
        assert!(!w.take(b));
        assert!(!w.leave(b));
        assert_eq!(w.waiting(), 0);
        // Without a token, leaving frees the place: the next notify goes to a live waiter.
        let c = w.join();
        let d = w.join();
        assert!(!w.leave(c));
        assert_eq!(w.notify(1), 1);
        assert!(w.take(d));
    }

    #[test]
    fn ping_pong_never_loses_or_steals() {
        let mut w = Waitlist::default();
        // Two parties: notify, then wait. Every wake goes to the other party.
        let mut waiting = [None, None];
        for i in 0..10_000 {
            let me = i % 2;
            let other = 1 - me;
            w.notify(1);
            if let Some(t) = waiting[other] {
                assert!(w.take(t), "round {i}");
                waiting[other] = None;
            }
            waiting[me] = Some(w.join());
            assert!(
                !w.take(waiting[me].unwrap()),
                "round {i}: took its own notify"
            );
        }
        assert!(w.len <= 2);
    }

    #[test]
    fn waiters_that_never_come_back_cannot_overflow_the_list() {
        let mut w = Waitlist::default();
        let first = w.join();
        for _ in 0..10 * MAX_GROUPS {
            w.join(); // never takes its token (a killed process)
            w.notify(1);
        }
        assert!(w.len as usize <= MAX_GROUPS);
        assert!(
            w.take(first),
            "the first waiter's token survived the merges"
        );
        let live = w.join();
        w.notify(u32::MAX);
        assert!(w.take(live));
    }
}
