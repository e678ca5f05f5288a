//! One core's subscriptions: which local connections listen on which channel.
//!
//! Pure data, no IO. The reactor asks it who gets a delivered message; connections add and remove
//! themselves when they subscribe and close. Removal is O(1) (swap-remove in an index set), so a
//! channel with 10,000 subscribers loses one without a scan.

use ahash::{AHashMap, RandomState};
use indexmap::IndexSet;

use crate::message::Channel;

/// Local subscribers of one channel, by slab slot.
type Slots = IndexSet<u32, RandomState>;

/// The per-core subscription registry.
#[derive(Debug, Default)]
pub struct Hub {
    channels: AHashMap<Channel, Slots>,
}

/// Whether a subscription change made a channel appear on or vanish from this core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The core's set of channels changed.
    Changed,
    /// Only counts changed.
    Same,
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `slot` on every channel of `channels`.
    pub fn subscribe(&mut self, slot: u32, channels: &[Channel]) -> Change {
        let mut change = Change::Same;
        for channel in channels {
            let slots = self.channels.entry(*channel).or_insert_with(|| {
                change = Change::Changed;
                Slots::default()
            });
            slots.insert(slot);
        }
        change
    }

    /// Removes `slot` from every channel of `channels`; channels left empty are dropped.
    pub fn unsubscribe(&mut self, slot: u32, channels: &[Channel]) -> Change {
        let mut change = Change::Same;
        for channel in channels {
            if let Some(slots) = self.channels.get_mut(channel) {
                slots.swap_remove(&slot);
                if slots.is_empty() {
                    self.channels.remove(channel);
                    change = Change::Changed;
                }
            }
        }
        change
    }

    /// Local subscribers of `channel`.
    pub fn subscribers(&self, channel: &Channel) -> impl Iterator<Item = u32> + '_ {
        self.channels
            .get(channel)
            .into_iter()
            .flat_map(|s| s.iter().copied())
    }

    /// Number of local subscribers of `channel`.
    pub fn count(&self, channel: &Channel) -> usize {
        self.channels.get(channel).map_or(0, IndexSet::len)
    }

    /// Number of channels with local subscribers.
    pub fn channels(&self) -> usize {
        self.channels.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ChannelId;

    fn ch(n: u8) -> Channel {
        Channel::private(ChannelId([n; 16]))
    }

    #[test]
    fn subscribe_and_remove() {
        let mut hub = Hub::new();
        assert_eq!(hub.subscribe(1, &[ch(1), ch(2)]), Change::Changed);
        assert_eq!(hub.subscribe(2, &[ch(1)]), Change::Same);
        assert_eq!(hub.count(&ch(1)), 2);
        let mut subs: Vec<u32> = hub.subscribers(&ch(1)).collect();
        subs.sort_unstable();
        assert_eq!(subs, vec![1, 2]);
        assert_eq!(hub.unsubscribe(1, &[ch(1), ch(2)]), Change::Changed);
        assert_eq!(hub.count(&ch(2)), 0);
        assert_eq!(hub.channels(), 1);
        assert_eq!(hub.unsubscribe(2, &[ch(1)]), Change::Changed);
        assert_eq!(hub.channels(), 0);
        assert_eq!(hub.subscribers(&ch(1)).count(), 0);
    }

    #[test]
    fn many_subscribers_remove_in_any_order() {
        let mut hub = Hub::new();
        for slot in 0..10_000 {
            hub.subscribe(slot, &[ch(7)]);
        }
        for slot in (0..10_000).filter(|s| s % 3 == 0) {
            hub.unsubscribe(slot, &[ch(7)]);
        }
        assert_eq!(hub.count(&ch(7)), 10_000 - 3334);
        assert!(hub.subscribers(&ch(7)).all(|s| s % 3 != 0));
    }
}
