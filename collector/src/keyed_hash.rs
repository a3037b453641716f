//! The hash of maps keyed by what clients choose: trace ids (the trace buffer's and the
//! decision caches' maps) and span and service names (`trace_analysis`'s sums).
//!
//! Trace ids are chosen by clients, so a hash a client could predict would let it send ids
//! that all fall into a few buckets and make every lookup of those maps walk them (HashDoS).
//! std's SipHash, keyed per map at random, rules that out, at a cost paid for every buffered
//! span (looked up twice) and several times per trace (taken, finished, remembered in a
//! cache).
//!
//! [`KeyedHash`] is foldhash (its quality variant) with every key drawn from the operating
//! system's randomness (through `rand`) rather than from foldhash's default seed (addresses
//! and the clock): a 64-bit key shared by the process, expanded by foldhash, and a 64-bit key
//! per map. A trace id is hashed as `fold(fold(lo ^ k1, hi ^ k2), c)` (`fold`: a
//! 64×64→128-bit multiply whose halves are XORed) with `k1`, `k2` unknown to a client. The
//! second multiply matters: with the first alone (foldhash's fast variant), ids whose low half
//! is fixed and whose high half counts up fall into a few dozen of a thousand buckets for
//! about one key in 40 (a test tries 100 keys). The hash never leaves the process:
//! nothing is sent, logged or ordered by it (the buffer and caches keep their own arrival
//! queues), so a client learns about the keys only through the timing of its own requests,
//! and the maps are bounded (`num_traces`, the caches' sizes), which bounds what a collision
//! costs anyway. foldhash calls itself minimally DoS-resistant and is not a cryptographic
//! hash; the argument above is why that is enough here: ids a client cannot aim at a bucket
//! spread like random ones. Names (`trace_analysis` sums a run of traces by service and span
//! name) are hashed with the same keys, in maps that hold one run's names and are dropped
//! after it.

use std::hash::BuildHasher;
use std::sync::OnceLock;

use foldhash::SharedSeed;
use foldhash::quality::{FoldHasher, SeedableRandomState};

/// The key shared by every map of the process, drawn once.
fn shared_seed() -> &'static SharedSeed {
    static SEED: OnceLock<SharedSeed> = OnceLock::new();
    SEED.get_or_init(|| SharedSeed::from_u64(rand::random()))
}

/// A randomly keyed hasher for maps keyed by what clients choose (see the module).
#[derive(Clone, Debug)]
pub struct KeyedHash(SeedableRandomState);

impl Default for KeyedHash {
    /// A new per-map key from the operating system's randomness.
    fn default() -> Self {
        Self(SeedableRandomState::with_seed(
            rand::random(),
            shared_seed(),
        ))
    }
}

impl BuildHasher for KeyedHash {
    type Hasher = FoldHasher<'static>;

    #[inline]
    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_are_keyed_apart() {
        let (a, b) = (KeyedHash::default(), KeyedHash::default());
        let ids = [
            0u128,
            1,
            u128::MAX,
            0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10,
        ];
        let differ = ids.iter().filter(|&&id| a.hash_one(id) != b.hash_one(id));
        assert!(differ.count() >= 3, "two maps hash trace ids alike");
        for id in ids {
            assert_eq!(a.hash_one(id), a.clone().hash_one(id));
        }
    }

    #[test]
    fn close_ids_spread_over_buckets() {
        // Ids differing in one bit or counting up in either half (the other half fixed) land
        // in as many buckets as random ones, whatever the keys: tried with 100 of them (a
        // single folded multiply, foldhash's fast variant, crowds the ids counting up in the
        // high half into a few buckets for about one key in 40).
        let buckets = 1024u64;
        let sets: Vec<(&str, Vec<u128>)> = vec![
            ("counting", (0..4096u128).collect()),
            ("one bit", (0..128).map(|b| 1u128 << b).collect()),
            (
                "high half counting",
                (0..4096u128).map(|i| i << 64).collect(),
            ),
            (
                "high half counting, low fixed",
                (0..4096u128).map(|i| (i << 64) | 0xdead_beef).collect(),
            ),
            (
                "top bits counting",
                (0..4096u128).map(|i| i << 116).collect(),
            ),
            ("steps of 1024", (0..4096u128).map(|i| i << 10).collect()),
        ];
        for key in 0..100 {
            let h = KeyedHash::default();
            for (name, ids) in &sets {
                let mut used = std::collections::HashSet::new();
                for &id in ids {
                    used.insert(h.hash_one(id) % buckets);
                }
                let expected =
                    buckets as f64 * (1.0 - (-(ids.len() as f64) / buckets as f64).exp());
                assert!(
                    used.len() as f64 > expected * 0.8,
                    "key {key}, ids {name}: {} of {buckets} buckets used by {} ids (about \
                     {expected:.0} expected)",
                    used.len(),
                    ids.len()
                );
            }
        }
    }
}
