//! Futex wait queues: `FUTEX_WAIT`/`WAKE` and their bitset forms, the primitives under every
//! libc's mutexes, condition variables and thread joins.
//!
//! The value check and the enqueue happen under the table lock, and wakers take the same lock,
//! so a wake between a waiter's check and its sleep cannot be lost. Waiters sleep on their own
//! condition variable with a bounded slice so a terminating enclave is never held up.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::errno::Errno;

/// Most waiters queued at once (a hostile program cannot grow the table without bound: each
/// waiter is a blocked guest thread, of which there are at most `MAX_THREADS`).
const MAX_WAITERS: usize = 4096;

#[derive(Default)]
struct Waiter {
    woken: Mutex<bool>,
    cv: Condvar,
}

struct Entry {
    bitset: u32,
    waiter: Arc<Waiter>,
}

/// All futex queues of one enclave, keyed by guest address.
#[derive(Default)]
pub struct FutexTable {
    queues: Mutex<HashMap<u64, Vec<Entry>>>,
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitResult {
    /// Woken by `FUTEX_WAKE`.
    Woken,
    /// The timeout passed.
    TimedOut,
    /// The enclave is ending.
    Interrupted,
}

impl FutexTable {
    /// Waits on `addr` if `current()` (read under the lock) equals `expected`.
    pub fn wait(
        &self,
        addr: u64,
        expected: u32,
        bitset: u32,
        current: impl FnOnce() -> Result<u32, Errno>,
        deadline: Option<Instant>,
        stopping: impl Fn() -> bool,
    ) -> Result<WaitResult, Errno> {
        if bitset == 0 {
            return Err(Errno::EINVAL);
        }
        let waiter = Arc::new(Waiter::default());
        {
            let mut q = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
            if current()? != expected {
                return Err(Errno::EAGAIN);
            }
            if q.values().map(Vec::len).sum::<usize>() >= MAX_WAITERS {
                return Err(Errno::ENOMEM);
            }
            q.entry(addr).or_default().push(Entry {
                bitset,
                waiter: waiter.clone(),
            });
        }
        let result = loop {
            let woken = waiter.woken.lock().unwrap_or_else(PoisonError::into_inner);
            if *woken {
                break WaitResult::Woken;
            }
            if stopping() {
                break WaitResult::Interrupted;
            }
            let mut slice = Duration::from_millis(50);
            if let Some(d) = deadline {
                let now = Instant::now();
                if now >= d {
                    break WaitResult::TimedOut;
                }
                slice = slice.min(d - now);
            }
            let _ = waiter
                .cv
                .wait_timeout(woken, slice)
                .unwrap_or_else(PoisonError::into_inner);
        };
        if result != WaitResult::Woken {
            self.remove(addr, &waiter);
            // A wake may have raced with the timeout: report it as woken so it is not lost.
            if *waiter.woken.lock().unwrap_or_else(PoisonError::into_inner) {
                return Ok(WaitResult::Woken);
            }
        }
        Ok(result)
    }

    fn remove(&self, addr: u64, waiter: &Arc<Waiter>) {
        let mut q = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = q.get_mut(&addr) {
            v.retain(|e| !Arc::ptr_eq(&e.waiter, waiter));
            if v.is_empty() {
                q.remove(&addr);
            }
        }
    }

    /// Wakes up to `n` waiters on `addr` whose bitset intersects `bitset`; returns how many.
    pub fn wake(&self, addr: u64, n: u32, bitset: u32) -> Result<u64, Errno> {
        if bitset == 0 {
            return Err(Errno::EINVAL);
        }
        let mut q = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(v) = q.get_mut(&addr) else {
            return Ok(0);
        };
        let mut woken = 0u64;
        let mut i = 0;
        while i < v.len() && woken < u64::from(n) {
            if v[i].bitset & bitset != 0 {
                let e = v.remove(i);
                *e.waiter
                    .woken
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = true;
                e.waiter.cv.notify_one();
                woken += 1;
            } else {
                i += 1;
            }
        }
        if v.is_empty() {
            q.remove(&addr);
        }
        Ok(woken)
    }

    /// Moves up to `n` waiters from `from` to `to` (after waking `wake` of them); returns the
    /// number woken plus requeued.
    pub fn requeue(&self, from: u64, to: u64, wake: u32, n: u32) -> Result<u64, Errno> {
        let woken = self.wake(from, wake, u32::MAX)?;
        let mut q = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(mut v) = q.remove(&from) else {
            return Ok(woken);
        };
        let take = v.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        let moved: Vec<Entry> = v.drain(..take).collect();
        let count = moved.len() as u64;
        if !v.is_empty() {
            q.insert(from, v);
        }
        q.entry(to).or_default().extend(moved);
        Ok(woken + count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn wait_checks_value_and_wake_releases() {
        let t = Arc::new(FutexTable::default());
        let word = Arc::new(AtomicU32::new(0));
        assert_eq!(
            t.wait(8, 1, u32::MAX, || Ok(0), None, || false),
            Err(Errno::EAGAIN)
        );
        let (t2, w2) = (t.clone(), word.clone());
        let h = std::thread::spawn(move || {
            t2.wait(
                8,
                0,
                u32::MAX,
                || Ok(w2.load(Ordering::SeqCst)),
                None,
                || false,
            )
        });
        // Wake until the waiter has queued and been woken.
        let mut woken = 0;
        while woken == 0 {
            woken = t.wake(8, 1, u32::MAX).unwrap();
            std::thread::yield_now();
        }
        assert_eq!(h.join().unwrap(), Ok(WaitResult::Woken));
        assert_eq!(t.wake(8, 1, u32::MAX), Ok(0));
    }

    #[test]
    fn timeouts_bitsets_and_interrupts() {
        let t = FutexTable::default();
        let soon = Some(Instant::now() + Duration::from_millis(20));
        assert_eq!(
            t.wait(16, 0, 1, || Ok(0), soon, || false),
            Ok(WaitResult::TimedOut)
        );
        assert_eq!(
            t.wait(16, 0, 1, || Ok(0), None, || true),
            Ok(WaitResult::Interrupted)
        );
        assert_eq!(
            t.wait(16, 0, 0, || Ok(0), None, || false),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            t.wait(16, 0, 1, || Err(Errno::EFAULT), None, || false),
            Err(Errno::EFAULT)
        );
        assert_eq!(t.wake(16, 1, 0), Err(Errno::EINVAL));
    }
}
