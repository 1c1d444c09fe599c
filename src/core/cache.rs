//! A bounded map keyed by SHA-256 digests, with first-in-first-out eviction: O(1) per
//! operation, and a hard bound on memory whatever the traffic. Raw tokens are never keys.

use std::collections::{HashMap, VecDeque};

use sha2::{Digest as _, Sha256};

pub type Digest = [u8; 32];

pub fn sha256(parts: &[&[u8]]) -> Digest {
    let mut h = Sha256::new();
    for p in parts {
        // Length-prefixed, so that ("ab", "c") and ("a", "bc") differ.
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

pub struct BoundedCache<V> {
    capacity: usize,
    entries: HashMap<Digest, V>,
    order: VecDeque<Digest>,
}

impl<V> BoundedCache<V> {
    pub fn new(capacity: usize) -> Self {
        BoundedCache {
            capacity,
            entries: HashMap::with_capacity(capacity.min(1024)),
            order: VecDeque::with_capacity(capacity.min(1024)),
        }
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &Digest) -> Option<&V> {
        self.entries.get(key)
    }

    pub fn remove(&mut self, key: &Digest) {
        // The FIFO slot stays until it reaches the front; it then finds nothing to evict.
        self.entries.remove(key);
    }

    pub fn insert(&mut self, key: Digest, value: V) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.insert(key, value).is_some() {
            return;
        }
        self.order.push_back(key);
        // Stale slots (removed keys) are bounded too: at most one per capacity.
        while self.entries.len() > self.capacity || self.order.len() > 2 * self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> Digest {
        sha256(&[&i.to_be_bytes()])
    }

    #[test]
    fn bounded_with_fifo_eviction() {
        let mut c = BoundedCache::new(3);
        for i in 0..10u64 {
            c.insert(key(i), i);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&key(9)), Some(&9));
        assert_eq!(c.get(&key(6)), None);
    }

    #[test]
    fn removal_and_reinsert_keep_the_bound() {
        let mut c = BoundedCache::new(2);
        for i in 0..100u64 {
            c.insert(key(i), i);
            c.remove(&key(i));
            c.insert(key(i), i);
        }
        assert!(c.len() <= 2);
        assert!(c.order.len() <= 4);
    }

    #[test]
    fn zero_capacity_disables() {
        let mut c = BoundedCache::new(0);
        c.insert(key(1), 1);
        assert!(c.is_empty());
    }

    #[test]
    fn digests_separate_their_parts() {
        assert_ne!(sha256(&[b"ab", b"c"]), sha256(&[b"a", b"bc"]));
        assert_eq!(sha256(&[b"x"]), sha256(&[b"x"]));
    }
}
