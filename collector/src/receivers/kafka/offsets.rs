//! Which offsets may be committed: per partition, the messages read and not yet delivered.
//!
//! Messages finish out of order (exporters deliver batches concurrently), but a Kafka commit
//! means "everything before this offset is done", so the committable position only advances
//! over a contiguous run of finished messages from the oldest one in flight.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One message in flight: where it came from, and which assignment of its partition it
/// belongs to (a partition revoked and assigned again starts a new generation, and news about
/// messages of the old one is ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// Topic of the message.
    pub topic: Arc<str>,
    /// Partition of the message.
    pub partition: i32,
    /// Offset of the message.
    pub offset: i64,
    generation: u64,
}

#[derive(Debug)]
struct Partition {
    generation: u64,
    /// Offset → finished.
    pending: BTreeMap<i64, bool>,
}

/// In-flight messages of every assigned partition.
#[derive(Debug, Default)]
pub struct Offsets {
    partitions: HashMap<(Arc<str>, i32), Partition>,
    next_generation: u64,
}

impl Offsets {
    /// Records a message just read.
    pub fn begin(&mut self, topic: &Arc<str>, partition: i32, offset: i64) -> Ticket {
        let next_generation = &mut self.next_generation;
        let p = self
            .partitions
            .entry((topic.clone(), partition))
            .or_insert_with(|| {
                *next_generation += 1;
                Partition {
                    generation: *next_generation,
                    pending: BTreeMap::new(),
                }
            });
        p.pending.insert(offset, false);
        Ticket {
            topic: topic.clone(),
            partition,
            offset,
            generation: p.generation,
        }
    }

    /// True while the ticket's message is still awaited (its partition was not revoked).
    pub fn is_current(&self, t: &Ticket) -> bool {
        self.partitions
            .get(&(t.topic.clone(), t.partition))
            .is_some_and(|p| {
                p.generation == t.generation && p.pending.get(&t.offset) == Some(&false)
            })
    }

    /// Marks a message finished; returns the offset to commit (the next one to read) when the
    /// committable position moved.
    pub fn complete(&mut self, t: &Ticket) -> Option<i64> {
        let p = self.partitions.get_mut(&(t.topic.clone(), t.partition))?;
        if p.generation != t.generation {
            return None;
        }
        *p.pending.get_mut(&t.offset)? = true;
        let mut commit = None;
        while let Some(entry) = p.pending.first_entry() {
            if !*entry.get() {
                break;
            }
            commit = Some(*entry.key() + 1);
            entry.remove();
        }
        commit
    }

    /// Forgets a partition that was taken away from this consumer.
    pub fn revoke(&mut self, topic: &str, partition: i32) {
        self.partitions
            .retain(|(t, p), _| !(&**t == topic && *p == partition));
    }

    /// Messages read and not yet finished, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.partitions
            .values()
            .map(|p| p.pending.values().filter(|done| !**done).count())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_a_contiguous_finished_prefix() {
        let topic: Arc<str> = Arc::from("t");
        let mut o = Offsets::default();
        let a = o.begin(&topic, 0, 10);
        let b = o.begin(&topic, 0, 11);
        let c = o.begin(&topic, 0, 13); // offsets may have gaps
        assert_eq!(o.in_flight(), 3);
        assert_eq!(o.complete(&b), None, "10 is still in flight");
        assert_eq!(o.complete(&c), None);
        assert_eq!(o.complete(&a), Some(14));
        assert_eq!(o.in_flight(), 0);
    }

    #[test]
    fn partitions_are_independent() {
        let topic: Arc<str> = Arc::from("t");
        let mut o = Offsets::default();
        let a = o.begin(&topic, 0, 5);
        let b = o.begin(&topic, 1, 7);
        assert_eq!(o.complete(&b), Some(8));
        assert_eq!(o.complete(&a), Some(6));
    }

    #[test]
    fn news_from_a_revoked_assignment_is_ignored() {
        let topic: Arc<str> = Arc::from("t");
        let mut o = Offsets::default();
        let old = o.begin(&topic, 0, 5);
        o.revoke("t", 0);
        assert!(!o.is_current(&old));
        let new = o.begin(&topic, 0, 5);
        assert!(o.is_current(&new));
        assert_eq!(o.complete(&old), None);
        assert!(o.is_current(&new));
        assert_eq!(o.complete(&new), Some(6));
    }
}
