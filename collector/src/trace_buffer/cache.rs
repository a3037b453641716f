//! Decision caches: what a trace buffer's owner (`tail_sampling`, `trace_analysis`) remembers
//! about traces it has already decided, so that late spans (arriving after their trace was
//! decided and its buffer released) get the same decision instead of starting a new,
//! incomplete trace.
//!
//! - [`ExactCache`] remembers up to a fixed number of trace ids with a small payload, evicting
//!   the oldest inserted first. The non-sampled cache is an `ExactCache<()>`.
//! - [`BloomWindowCache`] remembers sampled trace ids as a ring of time-windowed Bloom filters
//!   (as DeWu's Trace2.0 does with ten-minute shards): a few megabytes cover millions of traces,
//!   at the price of a bounded false-positive rate and no payload.
//! - [`SampledCache`] is the sampled-trace cache as configured: exact, Bloom or disabled, behind
//!   one `insert` / `lookup` pair.
//!
//! Trace ids are `u128`s, the 16-byte trace id read big-endian. Time is always passed in, never
//! read here, so that tests (and the processor's tick) drive it.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use fastbloom::BloomFilter;

use crate::keyed_hash::KeyedHash;

/// The payload the sampled cache keeps per trace: what a late span needs to be treated exactly
/// as its trace's earlier spans were.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kept {
    /// Index of the policy that kept the trace, in the processor's policy list.
    pub policy: u16,
    /// Effective sampling probability the trace was kept with (written to `tracestate`).
    pub probability: f32,
}

/// Map key for a trace id. Two `u64`s rather than a `u128`: a `u128` is 16-byte aligned, which
/// would pad a `(u128, Kept)` map slot from 24 to 32 bytes. Hashed as the `u128` it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key([u64; 2]);

impl std::hash::Hash for Key {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(id_of(*self));
    }
}

fn key(id: u128) -> Key {
    Key([(id >> 64) as u64, id as u64])
}

fn id_of(key: Key) -> u128 {
    (u128::from(key.0[0]) << 64) | u128::from(key.0[1])
}

/// Remembers up to `capacity` trace ids, each with a `Copy` payload, forgetting the oldest
/// inserted first (FIFO, not LRU: a lookup does not extend an entry's life, since a trace's late
/// spans all arrive within a short time of its decision).
///
/// The map is keyed at random ([`KeyedHash`]): trace ids come from clients, and a fixed hash
/// would let a client craft colliding ids. Memory grows with use up to `capacity`; see
/// [`heap_bytes`](Self::heap_bytes).
#[derive(Debug, Clone)]
pub struct ExactCache<V> {
    capacity: usize,
    entries: HashMap<Key, V, KeyedHash>,
    /// Keys in insertion order; holds exactly the keys of `entries`.
    order: VecDeque<Key>,
}

impl<V: Copy> ExactCache<V> {
    /// An empty cache holding at most `capacity` ids; `0` disables it (inserts are ignored).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: HashMap::default(),
            order: VecDeque::new(),
        }
    }

    /// The most ids this cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Remembers `id` with `value`, forgetting the oldest id if the cache is full. An id already
    /// present gets the new value but keeps its place in the eviction order.
    pub fn insert(&mut self, id: u128, value: V) {
        if self.capacity == 0 {
            return;
        }
        let key = key(id);
        if let Some(existing) = self.entries.get_mut(&key) {
            *existing = value;
            return;
        }
        if self.entries.len() >= self.capacity {
            self.evict_oldest();
        }
        self.entries.insert(key, value);
        self.order.push_back(key);
    }

    fn evict_oldest(&mut self) {
        if let Some(oldest) = self.order.pop_front() {
            let removed = self.entries.remove(&oldest);
            debug_assert!(removed.is_some(), "order and entries out of step");
        }
    }

    /// The oldest id, the next to be evicted.
    pub fn oldest(&self) -> Option<u128> {
        self.order.front().copied().map(id_of)
    }

    /// The payload remembered for `id`, if it is still remembered.
    pub fn get(&self, id: u128) -> Option<V> {
        self.entries.get(&key(id)).copied()
    }

    /// Whether `id` is still remembered.
    pub fn contains(&self, id: u128) -> bool {
        self.entries.contains_key(&key(id))
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Approximate heap bytes held: the map's table (slots plus one control byte each, at the
    /// table's allocated size, not its fill) and the order queue. Both grow by doubling, so a
    /// full cache of `n` ids holds between about 40 and 80 bytes per id for an 8-byte payload.
    pub fn heap_bytes(&self) -> usize {
        map_heap_bytes::<Key, V>(self.entries.capacity()) + self.order.capacity() * size_of::<Key>()
    }
}

/// Heap bytes of a std (hashbrown) map table with `capacity` usable slots: a power-of-two number
/// of buckets loaded to at most 7/8, one control byte per bucket plus a 16-byte trailing group.
fn map_heap_bytes<K, V>(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    buckets * (size_of::<(K, V)>() + 1) + 16
}

/// Sizing of a [`BloomWindowCache`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BloomWindowSettings {
    /// Number of Bloom filters in the ring. An id is remembered for between `shards - 1` and
    /// `shards` windows, so 2 keeps it at least one full window.
    pub shards: usize,
    /// How long one filter takes inserts before the ring moves on.
    pub window: Duration,
    /// Inserts one filter is sized for; the ring also moves on once the current filter has
    /// taken this many, so an overload shortens memory instead of raising false positives.
    pub expected_items_per_window: usize,
    /// Target false-positive rate of [`BloomWindowCache::contains`] over all shards, when every
    /// shard is full.
    pub false_positive_rate: f64,
}

impl Default for BloomWindowSettings {
    /// Two ten-minute shards for a million traces per window at 1% false positives: about
    /// 2.6 MiB.
    fn default() -> Self {
        Self {
            shards: 2,
            window: Duration::from_secs(600),
            expected_items_per_window: 1_000_000,
            false_positive_rate: 0.01,
        }
    }
}

/// The Bloom filters' hash seed. Fixed, so runs are reproducible; a client that crafted ids to
/// collide would only get its own late spans kept.
const BLOOM_SEED: u128 = 0x7461_696c_5f73_616d_706c_696e_675f_6366;

/// One filter of the ring and the window it covers.
#[derive(Clone)]
struct Shard {
    filter: BloomFilter,
    /// When this shard became the current one.
    started: Instant,
    /// Ids inserted that the filter did not already report as present.
    inserted: usize,
}

impl Shard {
    fn reset(&mut self, now: Instant) {
        // Clearing touches every word: skip it for a shard that took nothing.
        if self.inserted > 0 {
            self.filter.clear();
        }
        self.inserted = 0;
        self.started = now;
    }
}

impl fmt::Debug for Shard {
    // The filter's own Debug prints every bit; a summary is what a log needs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shard")
            .field("started", &self.started)
            .field("inserted", &self.inserted)
            .field("num_bits", &self.filter.num_bits())
            .field("num_hashes", &self.filter.num_hashes())
            .finish()
    }
}

/// Remembers sampled trace ids in a ring of Bloom filters, each covering one time window.
///
/// Inserts go to the current shard. The ring moves on when the current shard's window has
/// passed or it has taken `expected_items_per_window` inserts; the shard it moves to is the
/// oldest, cleared and reused. [`contains`](Self::contains) checks every shard, so an id stays
/// known for between `shards - 1` and `shards` windows after its insert (less if inserts
/// outrun `expected_items_per_window`), and no longer.
///
/// No false negatives within that time; false positives at about the configured rate once
/// every shard is full, less before. Memory is fixed at construction.
#[derive(Debug, Clone)]
pub struct BloomWindowCache {
    shards: Vec<Shard>,
    current: usize,
    window: Duration,
    items_per_shard: usize,
}

impl BloomWindowCache {
    /// An empty ring whose first window starts at `now`. Out-of-range settings are clamped
    /// rather than rejected (validation is the config's job): at least one shard, a window of at
    /// least one millisecond, at least one item, a rate within `[1e-9, 0.5]`.
    pub fn new(settings: BloomWindowSettings, now: Instant) -> Self {
        let shards = settings.shards.max(1);
        let items_per_shard = settings.expected_items_per_window.max(1);
        let filter =
            BloomFilter::with_false_pos(per_shard_rate(settings.false_positive_rate, shards))
                .seed(&BLOOM_SEED)
                .expected_items(items_per_shard);
        let shard = Shard {
            filter,
            started: now,
            inserted: 0,
        };
        Self {
            shards: vec![shard; shards],
            current: 0,
            window: settings.window.max(Duration::from_millis(1)),
            items_per_shard,
        }
    }

    /// Remembers `id` as sampled at `now`, first moving the ring on if the current window has
    /// passed or the current shard is full. An id the current shard already holds is a no-op,
    /// so repeats neither fill a shard nor rotate a full one.
    pub fn insert(&mut self, id: u128, now: Instant) {
        self.advance(now);
        let hash = self.shards[0].filter.source_hash(&id);
        if self.shards[self.current].filter.contains_hash(hash) {
            return;
        }
        if self.shards[self.current].inserted >= self.items_per_shard {
            self.rotate(now);
        }
        let shard = &mut self.shards[self.current];
        shard.filter.insert_hash(hash);
        shard.inserted += 1;
    }

    /// Whether `id` was inserted in a shard still remembered at `now` (or is a false positive).
    /// Shards whose time has run out count as forgotten even before an insert clears them.
    pub fn contains(&self, id: u128, now: Instant) -> bool {
        // Every shard has the same seed, so one hash serves them all.
        let hash = self.shards[0].filter.source_hash(&id);
        self.shards
            .iter()
            .any(|shard| self.is_live(shard, now) && shard.filter.contains_hash(hash))
    }

    /// Ids held by the shards still remembered at `now` (an id inserted into two shards counts
    /// twice).
    pub fn items(&self, now: Instant) -> usize {
        self.shards
            .iter()
            .filter(|shard| self.is_live(shard, now))
            .map(|shard| shard.inserted)
            .sum()
    }

    /// Heap bytes held: the filters' bit arrays and the ring. Fixed at construction.
    pub fn heap_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| size_of_val(shard.filter.as_slice()))
            .sum::<usize>()
            + self.shards.capacity() * size_of::<Shard>()
    }

    /// Bits per shard and hashes per item, as sized from the settings.
    pub fn filter_shape(&self) -> (usize, u32) {
        let filter = &self.shards[0].filter;
        (filter.num_bits(), filter.num_hashes())
    }

    fn is_live(&self, shard: &Shard, now: Instant) -> bool {
        if shard.inserted == 0 {
            return false;
        }
        // Rotating by time alone, the ring comes back to a shard `shards` windows after it
        // started; `None` (overflow) means never.
        let lifetime = u32::try_from(self.shards.len())
            .ok()
            .and_then(|n| self.window.checked_mul(n));
        match lifetime.and_then(|lifetime| shard.started.checked_add(lifetime)) {
            Some(forgotten_at) => now < forgotten_at,
            None => true,
        }
    }

    /// Moves the ring on once per window that has fully passed since the current shard started,
    /// keeping windows back to back so that retention does not depend on insert timing.
    fn advance(&mut self, now: Instant) {
        let started = self.shards[self.current].started;
        let elapsed = now.saturating_duration_since(started);
        if elapsed < self.window {
            return;
        }
        let windows_passed = elapsed.as_nanos() / self.window.as_nanos();
        if windows_passed >= self.shards.len() as u128 {
            // Everything has aged out: start the ring afresh at `now`.
            for shard in &mut self.shards {
                shard.reset(now);
            }
            return;
        }
        let mut start = started;
        for _ in 0..windows_passed {
            start += self.window;
            self.rotate(start);
        }
    }

    /// Makes the oldest shard, cleared, the current one, starting at `start`.
    fn rotate(&mut self, start: Instant) {
        self.current = (self.current + 1) % self.shards.len();
        self.shards[self.current].reset(start);
    }
}

/// The per-filter rate that gives `overall` for a lookup that checks `shards` full filters:
/// a miss must miss every one, so `1 - overall = (1 - per_shard)^shards`.
fn per_shard_rate(overall: f64, shards: usize) -> f64 {
    let overall = if overall.is_nan() {
        0.01
    } else {
        overall.clamp(1e-9, 0.5)
    };
    let shards = shards as f64;
    1.0 - (1.0 - overall).powf(1.0 / shards)
}

/// What a cache knows about a trace id.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lookup<V> {
    /// Not remembered: never decided, forgotten, or the cache is disabled.
    Miss,
    /// Remembered, with the payload stored at insert (exact cache).
    Hit(V),
    /// Remembered as a member only (Bloom cache): the payload is unknown, and the hit may be a
    /// false positive.
    Member,
}

impl<V: Copy> Lookup<V> {
    /// Whether the id is (probably) remembered.
    pub fn is_hit(&self) -> bool {
        !matches!(self, Self::Miss)
    }

    /// The stored payload, if the cache keeps payloads and remembers the id.
    pub fn payload(&self) -> Option<V> {
        match self {
            Self::Hit(value) => Some(*value),
            Self::Miss | Self::Member => None,
        }
    }
}

/// The sampled-trace decision cache, as configured.
///
/// `Exact` returns the payload stored at insert; `Bloom` only knows membership, so the caller
/// falls back to a default payload (for example the probability of its first policy, or `1.0`)
/// on [`Lookup::Member`]. `Disabled` forgets everything, so late spans are decided afresh.
#[derive(Debug, Clone)]
pub enum SampledCache<V> {
    /// Nothing is remembered.
    Disabled,
    /// Up to a fixed number of ids, with payloads.
    Exact(ExactCache<V>),
    /// Time-windowed Bloom filters, membership only.
    Bloom(BloomWindowCache),
}

impl<V: Copy> SampledCache<V> {
    /// Remembers `id` as sampled at `now`, with `payload` where the cache keeps payloads.
    pub fn insert(&mut self, id: u128, payload: V, now: Instant) {
        match self {
            Self::Disabled => {}
            Self::Exact(cache) => {
                cache.insert(id, payload);
            }
            Self::Bloom(cache) => cache.insert(id, now),
        }
    }

    /// What the cache knows about `id` at `now`.
    pub fn lookup(&self, id: u128, now: Instant) -> Lookup<V> {
        match self {
            Self::Disabled => Lookup::Miss,
            Self::Exact(cache) => cache.get(id).map_or(Lookup::Miss, Lookup::Hit),
            Self::Bloom(cache) => {
                if cache.contains(id, now) {
                    Lookup::Member
                } else {
                    Lookup::Miss
                }
            }
        }
    }

    /// Approximate heap bytes held (see each cache's `heap_bytes`).
    pub fn heap_bytes(&self) -> usize {
        match self {
            Self::Disabled => 0,
            Self::Exact(cache) => cache.heap_bytes(),
            Self::Bloom(cache) => cache.heap_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    /// Distinct, well-spread ids from a counter (splitmix64 on both halves), so sets built from
    /// disjoint counter ranges are disjoint.
    fn id(n: u64) -> u128 {
        fn mix(mut z: u64) -> u64 {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        (u128::from(mix(n)) << 64) | u128::from(n)
    }

    fn kept(policy: u16) -> Kept {
        Kept {
            policy,
            probability: 0.5,
        }
    }

    fn settings(items: usize, rate: f64) -> BloomWindowSettings {
        BloomWindowSettings {
            shards: 2,
            window: Duration::from_secs(600),
            expected_items_per_window: items,
            false_positive_rate: rate,
        }
    }

    fn minutes(n: u64) -> Duration {
        Duration::from_secs(60 * n)
    }

    #[test]
    fn exact_cache_evicts_oldest_inserted_first() {
        let mut cache = ExactCache::new(3);
        cache.insert(1, kept(1));
        cache.insert(2, kept(2));
        cache.insert(3, kept(3));
        // A lookup does not refresh an entry: 1 is still the oldest.
        assert_eq!(cache.get(1), Some(kept(1)));
        assert_eq!(cache.oldest(), Some(1));
        cache.insert(4, kept(4));
        assert_eq!(cache.oldest(), Some(2));
        cache.insert(5, kept(5));
        assert_eq!(cache.oldest(), Some(3));
        assert_eq!(cache.get(1), None);
        assert_eq!(cache.get(2), None);
        assert_eq!(cache.get(3), Some(kept(3)));
        assert_eq!(cache.get(5), Some(kept(5)));
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn exact_cache_reinsert_updates_value_but_not_age() {
        let mut cache = ExactCache::new(2);
        cache.insert(1, kept(1));
        cache.insert(2, kept(2));
        cache.insert(1, kept(9));
        assert_eq!(cache.get(1), Some(kept(9)));
        assert_eq!(cache.len(), 2);
        cache.insert(3, kept(3));
        assert_eq!(cache.get(1), None);
        assert_eq!(cache.get(2), Some(kept(2)));
    }

    #[test]
    fn exact_cache_keeps_full_128_bit_ids_apart() {
        let mut cache = ExactCache::new(4);
        let high = 7u128 << 64;
        cache.insert(high, ());
        cache.insert(7, ());
        assert!(cache.contains(high));
        assert!(cache.contains(7));
        assert!(!cache.contains(high | 7));
        cache.insert(1, ());
        cache.insert(2, ());
        assert_eq!(cache.oldest(), Some(high));
        cache.insert(3, ());
        assert!(!cache.contains(high));
        assert_eq!(cache.oldest(), Some(7));
    }

    #[test]
    fn exact_cache_with_capacity_zero_is_disabled() {
        let mut cache = ExactCache::new(0);
        cache.insert(1, ());
        assert!(!cache.contains(1));
        assert!(cache.is_empty());
        assert_eq!(cache.heap_bytes(), 0);
    }

    #[test]
    fn exact_cache_heap_bytes_track_growth() {
        let mut cache = ExactCache::new(100_000);
        for n in 0..100_000 {
            cache.insert(id(n), kept(0));
        }
        let per_id = cache.heap_bytes() as f64 / 100_000.0;
        // 24-byte slots + control byte at 7/8..7/16 load, plus a 16-byte queue slot.
        assert!((40.0..=90.0).contains(&per_id), "{per_id} bytes per id");
        println!(
            "exact cache: 100k ids with Kept payload = {} bytes ({per_id:.1} bytes/id)",
            cache.heap_bytes()
        );
    }

    #[test]
    fn bloom_has_no_false_negatives_within_the_window() {
        let t0 = Instant::now();
        let mut cache = BloomWindowCache::new(settings(20_000, 0.01), t0);
        for n in 0..20_000 {
            cache.insert(id(n), t0 + Duration::from_millis(n));
        }
        let later = t0 + minutes(9);
        assert!((0..20_000).all(|n| cache.contains(id(n), later)));
        assert_eq!(cache.current, 0, "no rotation expected");
    }

    #[test]
    fn bloom_false_positive_rate_is_near_the_configured_rate() {
        let rate = 0.01;
        let per_window = 50_000;
        let t0 = Instant::now();
        let mut cache = BloomWindowCache::new(settings(per_window, rate), t0);
        // Fill both shards (the second insert batch rotates by count), the worst case.
        for n in 0..2 * per_window as u64 {
            cache.insert(id(n), t0);
        }
        // Ids that were false positives in the current shard are not inserted again.
        assert!(cache.items(t0) > 2 * per_window * 99 / 100);
        let absent = 1_000_000..1_100_000;
        let trials = absent.end - absent.start;
        let hits = absent.filter(|&n| cache.contains(id(n), t0)).count();
        let measured = hits as f64 / trials as f64;
        println!("bloom: measured false-positive rate {measured:.4} (configured {rate})");
        assert!(
            (rate / 2.0..=rate * 2.0).contains(&measured),
            "measured {measured}, configured {rate}"
        );
    }

    #[test]
    fn bloom_rotates_by_time_and_forgets_after_all_shards_pass() {
        let t0 = Instant::now();
        let mut cache = BloomWindowCache::new(settings(1_000, 1e-6), t0);
        cache.insert(id(1), t0 + minutes(9));
        // Second window: id 1 moves to the older shard but is still known.
        cache.insert(id(2), t0 + minutes(10));
        assert_eq!(cache.current, 1);
        assert_eq!(cache.shards[1].started, t0 + minutes(10));
        assert!(cache.contains(id(1), t0 + minutes(19)));
        // Third window: the oldest shard (holding id 1) is cleared and reused.
        cache.insert(id(3), t0 + minutes(25));
        assert_eq!(cache.current, 0);
        // Windows stay back to back however late the insert that rotated them.
        assert_eq!(cache.shards[0].started, t0 + minutes(20));
        assert!(!cache.contains(id(1), t0 + minutes(25)));
        assert!(cache.contains(id(2), t0 + minutes(25)));
        assert!(cache.contains(id(3), t0 + minutes(25)));
    }

    #[test]
    fn bloom_forgets_expired_shards_without_inserts() {
        let t0 = Instant::now();
        let mut cache = BloomWindowCache::new(settings(1_000, 1e-6), t0);
        cache.insert(id(1), t0);
        // Known for `shards` windows from its shard's start, then forgotten even though no
        // insert has rotated the ring.
        assert!(cache.contains(id(1), t0 + minutes(19)));
        assert!(!cache.contains(id(1), t0 + minutes(20)));
        assert_eq!(cache.items(t0 + minutes(20)), 0);
        // An insert after a long idle gap starts the ring afresh.
        cache.insert(id(2), t0 + minutes(95));
        assert_eq!(cache.items(t0 + minutes(95)), 1);
        assert_eq!(cache.shards[cache.current].started, t0 + minutes(95));
        assert!(!cache.contains(id(1), t0 + minutes(95)));
        assert!(cache.contains(id(2), t0 + minutes(104)));
    }

    #[test]
    fn bloom_rotates_by_count() {
        let t0 = Instant::now();
        let per_window = 100;
        let mut cache = BloomWindowCache::new(settings(per_window, 1e-6), t0);
        for n in 0..100 {
            cache.insert(id(n), t0);
        }
        assert_eq!(cache.current, 0);
        // Repeats do not fill the filter.
        cache.insert(id(0), t0);
        assert_eq!(cache.current, 0);
        // The 101st distinct id moves the ring on, long before the window ends.
        cache.insert(id(100), t0 + minutes(1));
        assert_eq!(cache.current, 1);
        assert_eq!(cache.shards[1].started, t0 + minutes(1));
        assert!((0..=100).all(|n| cache.contains(id(n), t0 + minutes(1))));
        // Another full shard later, the first hundred are forgotten.
        for n in 101..=200 {
            cache.insert(id(n), t0 + minutes(2));
        }
        assert_eq!(cache.current, 0);
        let remembered = (0..100)
            .filter(|&n| cache.contains(id(n), t0 + minutes(2)))
            .count();
        assert_eq!(remembered, 0);
        assert!((100..=200).all(|n| cache.contains(id(n), t0 + minutes(2))));
    }

    #[test]
    fn bloom_memory_for_a_million_items_per_window_at_one_percent() {
        let cache = BloomWindowCache::new(BloomWindowSettings::default(), Instant::now());
        let (bits, hashes) = cache.filter_shape();
        // -n ln(p) / ln(2)^2 bits for n = 1e6 and the per-shard rate p = 1 - 0.99^(1/2).
        let per_shard = per_shard_rate(0.01, 2);
        let formula_bits = -1e6 * per_shard.ln() / std::f64::consts::LN_2.powi(2);
        assert!(
            (bits as f64 - formula_bits).abs() < 128.0,
            "{bits} vs {formula_bits}"
        );
        assert_eq!(hashes, 8);
        let bytes = cache.heap_bytes();
        println!(
            "bloom: 2 shards x 1M ids/window at 1% = {bytes} bytes ({:.2} MiB), \
             {bits} bits and {hashes} hashes per shard",
            bytes as f64 / MIB as f64
        );
        assert!(bytes < 3 * MIB, "{bytes} bytes");
        assert!(bytes > 2 * MIB, "{bytes} bytes");
    }

    #[test]
    fn clamps_out_of_range_settings() {
        let t0 = Instant::now();
        let odd = BloomWindowSettings {
            shards: 0,
            window: Duration::ZERO,
            expected_items_per_window: 0,
            false_positive_rate: f64::NAN,
        };
        let mut cache = BloomWindowCache::new(odd, t0);
        cache.insert(id(1), t0);
        assert!(cache.contains(id(1), t0));
        assert!(!cache.contains(id(1), t0 + Duration::from_millis(1)));
    }

    #[test]
    fn sampled_cache_variants() {
        let t0 = Instant::now();
        let mut disabled = SampledCache::<Kept>::Disabled;
        disabled.insert(1, kept(1), t0);
        assert_eq!(disabled.lookup(1, t0), Lookup::Miss);
        assert_eq!(disabled.heap_bytes(), 0);

        let mut exact = SampledCache::Exact(ExactCache::new(10));
        exact.insert(1, kept(3), t0);
        assert_eq!(exact.lookup(1, t0), Lookup::Hit(kept(3)));
        assert_eq!(exact.lookup(1, t0).payload(), Some(kept(3)));
        assert_eq!(exact.lookup(2, t0), Lookup::Miss);

        let mut bloom = SampledCache::Bloom(BloomWindowCache::new(settings(1_000, 1e-6), t0));
        bloom.insert(1, kept(3), t0);
        let hit = bloom.lookup(1, t0);
        assert_eq!(hit, Lookup::Member);
        assert!(hit.is_hit());
        assert_eq!(hit.payload(), None);
        assert!(!bloom.lookup(2, t0).is_hit());
        assert!(bloom.heap_bytes() > 0);
    }
}
