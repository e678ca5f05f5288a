//! Per-subscriber delivery bookkeeping: which messages arrived, duplicates, order, loss.
//!
//! Message `seq` is published to channel index `seq % C` as that channel's `seq / C`-th message
//! (round robin), so a subscriber keeps one bit per message of its channel.

/// A growable set of small integers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BitSet {
    words: Vec<u64>,
    len: u64,
}

impl BitSet {
    /// Inserts `i`; returns `false` when it was already there.
    pub fn insert(&mut self, i: u64) -> bool {
        let w = usize::try_from(i / 64).unwrap_or(usize::MAX);
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        let bit = 1u64 << (i % 64);
        let fresh = self.words[w] & bit == 0;
        self.words[w] |= bit;
        self.len += u64::from(fresh);
        fresh
    }

    /// Whether `i` is in the set.
    pub fn contains(&self, i: u64) -> bool {
        usize::try_from(i / 64)
            .ok()
            .and_then(|w| self.words.get(w))
            .is_some_and(|word| word & (1u64 << (i % 64)) != 0)
    }

    /// Number of members.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps only the members also in `other`.
    pub fn intersect_with(&mut self, other: &BitSet) {
        self.words.truncate(other.words.len());
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= b;
        }
        self.len = self.words.iter().map(|w| u64::from(w.count_ones())).sum();
    }

    /// The members, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().enumerate().flat_map(|(w, &word)| {
            (0..64u64)
                .filter(move |b| word & (1u64 << b) != 0)
                .map(move |b| w as u64 * 64 + b)
        })
    }

    /// Size of the intersection with `other`.
    pub fn intersection_len(&self, other: &BitSet) -> u64 {
        self.words
            .iter()
            .zip(&other.words)
            .map(|(a, b)| u64::from((a & b).count_ones()))
            .sum()
    }
}

/// The messages the server accepted (answered 200), per channel index.
#[derive(Debug, Clone, Default)]
pub struct AcceptedSet {
    per_channel: Vec<BitSet>,
}

impl AcceptedSet {
    /// Builds the set from accepted sequence numbers over `channels` channels.
    pub fn new(channels: u64, accepted: impl IntoIterator<Item = u64>) -> Self {
        let mut per_channel = vec![BitSet::default(); usize::try_from(channels).unwrap_or(0)];
        if channels > 0 {
            for seq in accepted {
                if let Some(set) = usize::try_from(seq % channels)
                    .ok()
                    .and_then(|c| per_channel.get_mut(c))
                {
                    set.insert(seq / channels);
                }
            }
        }
        Self { per_channel }
    }

    /// The accepted messages of channel index `ch` (as per-channel indices).
    pub fn channel(&self, ch: u64) -> Option<&BitSet> {
        usize::try_from(ch)
            .ok()
            .and_then(|c| self.per_channel.get(c))
    }

    /// Number of accepted messages on channel index `ch`.
    pub fn count(&self, ch: u64) -> u64 {
        self.channel(ch).map_or(0, BitSet::len)
    }

    /// Total accepted messages.
    pub fn total(&self) -> u64 {
        self.per_channel.iter().map(BitSet::len).sum()
    }
}

/// What a delivery meant to its subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// First arrival, in order.
    New,
    /// First arrival, after a later message of the same channel.
    OutOfOrder,
    /// Seen before.
    Duplicate,
    /// Published to another channel.
    Misrouted,
    /// A sequence number never published.
    Bogus,
}

/// One subscriber's record of its channel's messages.
#[derive(Debug, Clone, Default)]
pub struct SubTally {
    /// Channel index of the subscriber.
    pub channel: u64,
    /// Per-channel indices received at least once.
    pub received: BitSet,
    /// Deliveries that repeated an earlier one.
    pub duplicates: u64,
    /// First deliveries that came after a later message of the channel.
    pub out_of_order: u64,
    /// Deliveries of another channel's messages.
    pub misrouted: u64,
    /// Deliveries whose sequence number was never published.
    pub bogus: u64,
    max_index: Option<u64>,
}

impl SubTally {
    /// An empty tally for channel index `channel`.
    pub fn new(channel: u64) -> Self {
        Self {
            channel,
            ..Self::default()
        }
    }

    /// Records delivery of `seq` published to channel index `ch`, given `channels` channels and the
    /// highest sequence number issued so far.
    pub fn record(&mut self, seq: u64, ch: u64, channels: u64, max_issued: Option<u64>) -> Arrival {
        if max_issued.is_none_or(|m| seq > m) || channels == 0 {
            self.bogus += 1;
            return Arrival::Bogus;
        }
        if ch != self.channel || seq % channels != self.channel {
            self.misrouted += 1;
            return Arrival::Misrouted;
        }
        let index = seq / channels;
        if !self.received.insert(index) {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        match self.max_index {
            Some(m) if index < m => {
                self.out_of_order += 1;
                Arrival::OutOfOrder
            }
            _ => {
                self.max_index = Some(index);
                Arrival::New
            }
        }
    }

    /// Whether every accepted message of the channel has arrived.
    pub fn is_complete(&self, accepted: &AcceptedSet) -> bool {
        let want = accepted.count(self.channel);
        self.received.len() >= want
            && accepted
                .channel(self.channel)
                .is_none_or(|a| self.received.intersection_len(a) == want)
    }

    /// (expected, received-of-expected, extra) against `accepted`: extra are arrivals the server
    /// delivered although their publish was not answered 200.
    pub fn score(&self, accepted: &AcceptedSet) -> (u64, u64, u64) {
        let expected = accepted.count(self.channel);
        let got = accepted
            .channel(self.channel)
            .map_or(0, |a| self.received.intersection_len(a));
        (expected, got, self.received.len() - got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitset_basics() {
        let mut s = BitSet::default();
        assert!(s.is_empty());
        assert!(s.insert(3));
        assert!(!s.insert(3));
        assert!(s.insert(200));
        assert!(s.contains(200) && s.contains(3) && !s.contains(4) && !s.contains(1 << 40));
        assert_eq!(s.len(), 2);
        let mut t = BitSet::default();
        t.insert(200);
        t.insert(5);
        assert_eq!(s.intersection_len(&t), 1);
        assert_eq!(t.intersection_len(&s), 1);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![3, 200]);
        let mut u = s.clone();
        u.intersect_with(&t);
        assert_eq!((u.iter().collect::<Vec<_>>(), u.len()), (vec![200], 1));
        u.intersect_with(&BitSet::default());
        assert!(u.is_empty() && u.iter().next().is_none());
    }

    #[test]
    fn tally_classifies_arrivals() {
        // 3 channels; subscriber on channel 1 gets seq 1, 4, 7, 10 …
        let accepted = AcceptedSet::new(3, [0, 1, 2, 4, 5, 7]);
        assert_eq!(accepted.count(1), 3);
        assert_eq!(accepted.total(), 6);
        let mut t = SubTally::new(1);
        assert_eq!(t.record(4, 1, 3, Some(10)), Arrival::New);
        assert_eq!(t.record(1, 1, 3, Some(10)), Arrival::OutOfOrder);
        assert_eq!(t.record(4, 1, 3, Some(10)), Arrival::Duplicate);
        assert_eq!(t.record(5, 2, 3, Some(10)), Arrival::Misrouted);
        assert_eq!(t.record(7, 2, 3, Some(10)), Arrival::Misrouted);
        assert_eq!(t.record(13, 1, 3, Some(10)), Arrival::Bogus);
        assert_eq!(t.record(1, 1, 3, None), Arrival::Bogus);
        assert!(!t.is_complete(&accepted));
        assert_eq!(t.score(&accepted), (3, 2, 0));
        assert_eq!(t.record(7, 1, 3, Some(10)), Arrival::New);
        assert!(t.is_complete(&accepted));
        // seq 10 was delivered though its publish was not counted as accepted here.
        let accepted = AcceptedSet::new(3, [1, 4, 7]);
        assert_eq!(t.record(10, 1, 3, Some(10)), Arrival::New);
        assert!(t.is_complete(&accepted));
        assert_eq!(t.score(&accepted), (3, 3, 1));
        assert_eq!(
            (t.duplicates, t.out_of_order, t.misrouted, t.bogus),
            (1, 1, 2, 2)
        );
    }

    #[test]
    fn empty_channel_is_complete() {
        let accepted = AcceptedSet::new(4, [0, 1]);
        assert!(SubTally::new(3).is_complete(&accepted));
        assert!(SubTally::new(9).is_complete(&accepted));
    }
}
