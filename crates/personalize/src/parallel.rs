//! Bulk training spread over the machine's cores with scoped threads (no pool kept between calls):
//! indices are handed out in small blocks as threads free up, so uneven rows balance themselves, and
//! results come back in index order, so the outcome does not depend on the number of threads.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Indices handed to a thread at a time: small enough to balance uneven rows, large enough that
/// taking the next block costs nothing next to the work in it.
const BLOCK: usize = 32;

/// Threads to use: the cores available, at most one per block of work.
fn threads(n: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    cores.min(n.div_ceil(BLOCK)).max(1)
}

/// `f(scratch, i)` for every `i` in `0..n`, in order, each thread with its own `scratch` made by
/// `scratch()` (reusable buffers, so the work allocates nothing per index).
pub fn map_with<S, T: Send>(
    n: usize,
    scratch: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize) -> T + Sync,
) -> Vec<T> {
    let threads = threads(n);
    if threads == 1 {
        let mut state = scratch();
        return (0..n).map(|i| f(&mut state, i)).collect();
    }
    let next = AtomicUsize::new(0);
    let mut blocks: Vec<(usize, Vec<T>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut state = scratch();
                    let mut done = Vec::new();
                    loop {
                        let start = next.fetch_add(BLOCK, Ordering::Relaxed);
                        if start >= n {
                            return done;
                        }
                        let end = (start + BLOCK).min(n);
                        done.push((start, (start..end).map(|i| f(&mut state, i)).collect::<Vec<T>>()));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    blocks.sort_unstable_by_key(|(start, _)| *start);
    let mut out = Vec::with_capacity(n);
    for (_, block) in blocks {
        out.extend(block);
    }
    out
}

/// `f(i)` for every `i` in `0..n`, in order.
pub fn map<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    map_with(n, || (), |(), i| f(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_index_order_whatever_the_threads() {
        let squares = map(10_000, |i| i * i);
        assert_eq!(squares, (0..10_000).map(|i| i * i).collect::<Vec<_>>());
        let counted = map_with(
            1000,
            || 0usize,
            |seen, i| {
                *seen += 1;
                i
            },
        );
        assert_eq!(counted, (0..1000).collect::<Vec<_>>());
        assert!(map(0, |i| i).is_empty());
    }
}
