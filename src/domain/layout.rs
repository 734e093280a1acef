//! Which stored layout a value is being read from.
//!
//! Stored values are bincode, which is not self-describing: a reader must know exactly which
//! fields follow each other. When a type gains a field, the values written before still have
//! the old sequence. The store's codec knows the layout from a value's format byte and
//! announces it here for the duration of one (synchronous) decode; the few types whose layout
//! changed between formats ask [`being_read`] which one to read. Every other type reads the
//! same in every layout and never asks.
//!
//! Today [`SecurityContext`](super::values::SecurityContext),
//! [`Limits`](super::tenant::Limits) and the store's `OutboxMessage` ask.

use std::cell::Cell;

/// A stored layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Format 1: `SecurityContext` is `(key_id, role, at)`.
    V1,
    /// Format 2: `SecurityContext` is `(key_id, role, at, request_id)`.
    V2,
    /// Format 3: as format 2, and tenant `Limits` gained `max_storage_bytes`.
    V3,
    /// Format 4: as format 3, and an outbox message gained its `delivery` state.
    V4,
    /// Format 5 (and its headed values): as format 4 for every type.
    V5,
    /// Format 7: as format 5 for every type of the domain (only the store's events changed).
    V7,
}

impl Layout {
    /// The layout values are written in, and read in outside [`reading`].
    pub const CURRENT: Layout = Layout::V7;
}

thread_local! {
    static BEING_READ: Cell<Layout> = const { Cell::new(Layout::CURRENT) };
}

/// Runs `read`, one decode that does not yield, with `layout` announced to the types it reads.
/// The layout announced before is back when `read` returns or panics.
pub fn reading<R>(layout: Layout, read: impl FnOnce() -> R) -> R {
    struct Restore(Layout);
    impl Drop for Restore {
        fn drop(&mut self) {
            BEING_READ.with(|cell| cell.set(self.0));
        }
    }
    let _restore = Restore(BEING_READ.with(|cell| cell.replace(layout)));
    read()
}

/// The layout being read: the one [`reading`] announced, else [`Layout::CURRENT`].
pub fn being_read() -> Layout {
    BEING_READ.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announced_layout_holds_only_inside_reading() {
        assert_eq!(being_read(), Layout::CURRENT);
        let seen = reading(Layout::V1, || {
            let inner = reading(Layout::V2, being_read);
            (being_read(), inner)
        });
        assert_eq!(seen, (Layout::V1, Layout::V2));
        assert_eq!(being_read(), Layout::CURRENT);
    }

    #[test]
    fn a_panicking_read_does_not_leave_its_layout_behind() {
        let result = std::panic::catch_unwind(|| reading(Layout::V1, || panic!("corrupt")));
        assert!(result.is_err());
        assert_eq!(being_read(), Layout::CURRENT);
    }

    #[test]
    fn each_thread_has_its_own_announcement() {
        reading(Layout::V1, || {
            let other = std::thread::spawn(being_read).join().unwrap();
            assert_eq!(other, Layout::CURRENT);
        });
    }
}
