//! A core's mailbox: a bounded queue of [`CoreMsg`] plus a mio [`Waker`], with coalesced wakes.
//!
//! The sender pushes, then wakes the core only when the wake flag goes from clear to set; the
//! core clears the flag before it drains. So a burst of N messages costs one `eventfd` write,
//! and no message can be left behind without a wake pending.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender};
use mio::Waker;

use crate::engine::CoreMsg;

/// Capacity of a core's mailbox. The engine blocks when a core's mailbox is full (the core drains
/// it every loop turn, so this is backpressure towards publishers, never a deadlock). 16,384
/// entries hold a burst of a few hundred milliseconds; the queue is allocated up front, so a
/// larger one would cost memory on every idle server.
pub const DEFAULT_MAILBOX: usize = 16_384;

/// Messages taken from the mailbox per loop turn before socket events get their turn again.
pub const DEFAULT_MAILBOX_BUDGET: usize = 1024;

/// The engine's handle to one core.
#[derive(Clone, Debug)]
pub struct CorePeer {
    tx: Sender<CoreMsg>,
    waker: Arc<Waker>,
    flag: Arc<AtomicBool>,
}

/// The core's receiving side.
#[derive(Debug)]
pub struct Mailbox {
    rx: Receiver<CoreMsg>,
    flag: Arc<AtomicBool>,
}

/// Builds the two ends of a core's mailbox around the core's waker.
pub fn mailbox(waker: Arc<Waker>) -> (CorePeer, Mailbox) {
    let (tx, rx) = crossbeam_channel::bounded(DEFAULT_MAILBOX);
    let flag = Arc::new(AtomicBool::new(false));
    (
        CorePeer {
            tx,
            waker,
            flag: flag.clone(),
        },
        Mailbox { rx, flag },
    )
}

impl CorePeer {
    /// Queues `msg` (waiting while the mailbox is full: only the engine thread calls this) and
    /// wakes the core if no wake is pending. Returns false when the core has exited.
    pub fn send(&self, msg: CoreMsg) -> bool {
        if self.tx.send(msg).is_err() {
            return false;
        }
        if !self.flag.swap(true, Ordering::AcqRel) {
            // A failed wake means the poll is gone: the core is exiting.
            let _ = self.waker.wake();
        }
        true
    }
}

impl Mailbox {
    /// Clears the wake flag; call before draining, so a message sent during the drain wakes again.
    pub fn arm(&self) {
        self.flag.store(false, Ordering::Release);
    }

    /// The next message, if any.
    pub fn next(&self) -> Option<CoreMsg> {
        self.rx.try_recv().ok()
    }

    /// Whether messages are waiting.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}
