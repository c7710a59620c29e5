//! Group commit: writers that need their write on disk share fsyncs.
//!
//! A writer first writes (WAL, no fsync), then takes a ticket. One writer at
//! a time syncs, covering every ticket taken before its sync began; writers
//! whose ticket it covered return without syncing themselves. Under load,
//! one fsync acknowledges a whole group of writes.

use std::sync::{Condvar, Mutex, MutexGuard};

use crate::error::Result;

#[derive(Debug, Default)]
struct Tickets {
    /// The last ticket handed out.
    issued: u64,
    /// Every ticket up to this one is durable.
    synced: u64,
    /// Someone is syncing now.
    syncing: bool,
}

/// Shares fsyncs among concurrent writers.
#[derive(Debug, Default)]
pub struct GroupCommit {
    tickets: Mutex<Tickets>,
    synced: Condvar,
    /// How many fsyncs ran; for tests and metrics.
    syncs: std::sync::atomic::AtomicU64,
}

impl GroupCommit {
    /// Returns once every write that finished before this call is durable,
    /// running `sync` only if no sync in flight or finished covers it.
    pub fn wait_durable(&self, sync: impl Fn() -> Result<()>) -> Result<()> {
        let mut tickets = self.lock();
        tickets.issued += 1;
        let ticket = tickets.issued;
        loop {
            if tickets.synced >= ticket {
                return Ok(());
            }
            if !tickets.syncing {
                tickets.syncing = true;
                let covered = tickets.issued;
                drop(tickets);
                let outcome = sync();
                self.syncs
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tickets = self.lock();
                tickets.syncing = false;
                if outcome.is_ok() {
                    tickets.synced = tickets.synced.max(covered);
                }
                self.synced.notify_all();
                outcome?;
                continue;
            }
            tickets = self.synced.wait(tickets).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// How many fsyncs have run.
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Tickets> {
        self.tickets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn concurrent_writers_share_fsyncs() {
        let group = Arc::new(GroupCommit::default());
        let fsyncs = Arc::new(AtomicU64::new(0));
        let writers: Vec<_> = (0..16)
            .map(|_| {
                let (group, fsyncs) = (group.clone(), fsyncs.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        group
                            .wait_durable(|| {
                                fsyncs.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(2));
                                Ok(())
                            })
                            .expect("sync");
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("writer");
        }
        let fsyncs = fsyncs.load(Ordering::Relaxed);
        assert!(
            fsyncs < 16 * 20,
            "{fsyncs} fsyncs for 320 durable writes: none shared"
        );
        assert_eq!(group.sync_count(), fsyncs);
    }
}
