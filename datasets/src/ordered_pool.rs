//! An ordered worker pool: jobs `first..jobs` are computed on worker threads, at most `window`
//! of them ahead of the consumer, and handed out in job order. The batch loader and the label
//! packer both use it; results do not depend on the number of workers or their scheduling.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

/// Computes `make(job)` for every job on `workers` threads (0: on the consumer's thread, when
/// it asks) and yields the results in job order. Dropping it stops and joins the workers.
pub struct OrderedPool<T: Send + 'static> {
    make: Arc<dyn Fn(usize) -> T + Send + Sync>,
    next_out: usize,
    jobs: usize,
    pending: BTreeMap<usize, T>,
    workers: Vec<JoinHandle<()>>,
    tokens: Option<crossbeam_channel::Sender<()>>,
    results: Option<crossbeam_channel::Receiver<(usize, T)>>,
}

impl<T: Send + 'static> OrderedPool<T> {
    /// Jobs `first..jobs`; up to `workers + ahead` results (at least one per worker plus one)
    /// exist at any time.
    pub fn new(
        first: usize,
        jobs: usize,
        workers: usize,
        ahead: usize,
        make: impl Fn(usize) -> T + Send + Sync + 'static,
    ) -> Self {
        let make: Arc<dyn Fn(usize) -> T + Send + Sync> = Arc::new(make);
        let mut pool = Self {
            make: make.clone(),
            next_out: first,
            jobs,
            pending: BTreeMap::new(),
            workers: Vec::new(),
            tokens: None,
            results: None,
        };
        if workers == 0 || first >= jobs {
            return pool;
        }
        let window = workers + ahead.max(1);
        let (token_tx, token_rx) = crossbeam_channel::bounded::<()>(window);
        let (result_tx, result_rx) = crossbeam_channel::unbounded();
        for _ in 0..window {
            // The channel holds exactly `window` tokens.
            let _ = token_tx.try_send(());
        }
        let next = Arc::new(AtomicUsize::new(first));
        for _ in 0..workers {
            let (make, next, tokens, results) = (make.clone(), next.clone(), token_rx.clone(), result_tx.clone());
            pool.workers.push(std::thread::spawn(move || {
                while tokens.recv().is_ok() {
                    let job = next.fetch_add(1, Ordering::Relaxed);
                    if job >= jobs || results.send((job, make(job))).is_err() {
                        break;
                    }
                }
            }));
        }
        pool.tokens = Some(token_tx);
        pool.results = Some(result_rx);
        pool
    }

    /// Jobs not yet handed out.
    pub fn remaining(&self) -> usize {
        self.jobs.saturating_sub(self.next_out)
    }
}

/// A worker thread ended without delivering its job (it panicked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerLost;

impl<T: Send + 'static> Iterator for OrderedPool<T> {
    type Item = Result<T, WorkerLost>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next_out >= self.jobs {
            return None;
        }
        let job = self.next_out;
        self.next_out += 1;
        let Some(results) = &self.results else {
            return Some(Ok((self.make)(job)));
        };
        while !self.pending.contains_key(&job) {
            match results.recv() {
                Ok((index, value)) => {
                    self.pending.insert(index, value);
                }
                Err(_) => return Some(Err(WorkerLost)),
            }
        }
        if let Some(tokens) = &self.tokens {
            let _ = tokens.try_send(());
        }
        self.pending.remove(&job).map(Ok)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining(), Some(self.remaining()))
    }
}

impl<T: Send + 'static> Drop for OrderedPool<T> {
    fn drop(&mut self) {
        self.tokens = None;
        self.results = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Results come out in job order whatever the worker count, even when later jobs finish
    /// first (job j sleeps longer the smaller j is).
    #[test]
    fn results_in_job_order() {
        for workers in [0, 1, 3] {
            let pool = OrderedPool::new(2, 12, workers, 2, |j| {
                std::thread::sleep(std::time::Duration::from_millis((12 - j as u64) * 2));
                j * j
            });
            let got: Vec<usize> = pool.map(|r| r.unwrap()).collect();
            assert_eq!(got, (2..12).map(|j| j * j).collect::<Vec<_>>(), "{workers} workers");
        }
    }

    #[test]
    fn dropping_early_stops_the_workers() {
        let mut pool = OrderedPool::new(0, 1000, 2, 1, |j| j);
        assert_eq!(pool.next(), Some(Ok(0)));
        drop(pool); // must not hang
    }
}
