//! Buffers for message payloads, used again once the pipeline is done with them.
//!
//! A message cannot outlive librdkafka's borrow of it, so each payload is copied out before it
//! goes down the pipeline. A fresh allocation per message costs more than the copy: a gateway
//! reads hundreds of messages of up to a megabyte a second, the allocator hands such blocks
//! back to the system when they are freed, and every page of the next one is faulted in and
//! zeroed again (a fifth of the copy's cost and more, as profiled). So large payloads are
//! copied into buffers kept here: when the last [`Bytes`] of a payload is dropped (its data
//! delivered, or given up on), the buffer comes back, up to [`POOL_BYTES`] of them.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Payloads smaller than this are copied into fresh allocations (the allocator keeps small
/// blocks at hand anyway).
pub const MIN_POOLED: usize = 64 * 1024;

/// The most the pool keeps, in buffer capacity: enough for the messages of a few inserts.
pub const POOL_BYTES: usize = 8 * 1024 * 1024;

/// Idle payload buffers.
#[derive(Default)]
pub struct Payloads {
    free: Mutex<Free>,
}

#[derive(Default)]
struct Free {
    buffers: Vec<Vec<u8>>,
    /// The capacity of `buffers`, summed.
    bytes: usize,
}

impl Payloads {
    /// `payload` as shared bytes: in a buffer of the pool when large, which goes back to the
    /// pool once the last clone of the bytes is dropped.
    pub fn copy(self: &Arc<Self>, payload: &[u8]) -> Bytes {
        if payload.len() < MIN_POOLED {
            return Bytes::copy_from_slice(payload);
        }
        let mut buf = self.take(payload.len());
        buf.extend_from_slice(payload);
        Bytes::from_owner(Pooled {
            buf,
            pool: self.clone(),
        })
    }

    /// An empty buffer with room for `len` bytes: an idle one when one is large enough.
    fn take(&self, len: usize) -> Vec<u8> {
        let mut free = self.free.lock().expect("payload pool lock");
        match free.buffers.iter().rposition(|b| b.capacity() >= len) {
            Some(i) => {
                let buf = free.buffers.swap_remove(i);
                free.bytes -= buf.capacity();
                buf
            }
            None => {
                drop(free);
                // Rounded up, so that a buffer fits the next messages of about the same size
                // (a topic's messages are often all just under the producer's limit).
                Vec::with_capacity(len.next_power_of_two())
            }
        }
    }

    fn give_back(&self, mut buf: Vec<u8>) {
        let mut free = self.free.lock().expect("payload pool lock");
        if free.bytes + buf.capacity() <= POOL_BYTES {
            buf.clear();
            free.bytes += buf.capacity();
            free.buffers.push(buf);
        }
    }

    /// Idle buffers and their capacity (for tests).
    #[cfg(test)]
    pub fn idle(&self) -> (usize, usize) {
        let free = self.free.lock().expect("payload pool lock");
        (free.buffers.len(), free.bytes)
    }
}

/// A payload in a buffer of the pool; the buffer goes back when this is dropped.
struct Pooled {
    buf: Vec<u8>,
    pool: Arc<Payloads>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_payloads_are_not_pooled() {
        let pool = Arc::new(Payloads::default());
        let b = pool.copy(b"span");
        assert_eq!(&b[..], b"span");
        drop(b);
        assert_eq!(pool.idle(), (0, 0));
    }

    #[test]
    fn a_buffer_comes_back_when_the_last_clone_is_dropped_and_is_used_again() {
        let pool = Arc::new(Payloads::default());
        let first: Vec<u8> = (0..MIN_POOLED + 10).map(|i| i as u8).collect();
        let a = pool.copy(&first);
        let a2 = a.slice(5..);
        assert_eq!(&a[..], &first[..]);
        drop(a);
        assert_eq!(pool.idle().0, 0, "a clone still holds it");
        assert_eq!(&a2[..], &first[5..]);
        drop(a2);
        let (n, bytes) = pool.idle();
        assert_eq!(n, 1);
        assert!(bytes >= first.len());

        // Reused for a payload that fits, which sees none of the old bytes.
        let second = vec![7u8; MIN_POOLED];
        let b = pool.copy(&second);
        assert_eq!(pool.idle(), (0, 0));
        assert_eq!(&b[..], &second[..]);
        // Too large for the idle buffer: a new one.
        drop(b);
        let third = vec![9u8; 3 * MIN_POOLED];
        let c = pool.copy(&third);
        assert_eq!(pool.idle().0, 1);
        assert_eq!(&c[..], &third[..]);
    }

    #[test]
    fn the_pool_keeps_at_most_its_bound() {
        let pool = Arc::new(Payloads::default());
        let payload = vec![1u8; 1024 * 1024];
        let held: Vec<Bytes> = (0..2 * POOL_BYTES / payload.len())
            .map(|_| pool.copy(&payload))
            .collect();
        drop(held);
        let (_, bytes) = pool.idle();
        assert!(bytes <= POOL_BYTES, "{bytes} bytes kept");
        assert!(bytes > POOL_BYTES / 2, "{bytes} bytes kept");
    }
}
