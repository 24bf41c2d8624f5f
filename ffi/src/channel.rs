//! A small queue from a worker thread to an async consumer, so Rust futures handed to Kotlin
//! coroutines and Swift tasks can wait for a background thread without an async runtime.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Mutex, MutexGuard};
use std::task::{Poll, Waker};

/// Items pushed by one or more threads, popped by async consumers; `close` ends it.
#[derive(Debug)]
pub(crate) struct Queue<T> {
    state: Mutex<State<T>>,
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    /// Consumers waiting for an item or the end.
    wakers: Vec<Waker>,
}

impl<T> Queue<T> {
    /// An empty, open queue.
    pub(crate) fn new() -> Self {
        Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
                wakers: Vec::new(),
            }),
        }
    }

    /// Appends `item` and wakes waiting consumers. Items pushed after `close` are dropped.
    pub(crate) fn push(&self, item: T) {
        let wakers = {
            let mut s = self.lock();
            if s.closed {
                return;
            }
            s.items.push_back(item);
            std::mem::take(&mut s.wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Ends the queue: once the items already in it are popped, `pop` returns `None`.
    pub(crate) fn close(&self) {
        let wakers = {
            let mut s = self.lock();
            s.closed = true;
            std::mem::take(&mut s.wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// The next item, or `None` once the queue is closed and empty.
    pub(crate) async fn pop(&self) -> Option<T> {
        poll_fn(|cx| {
            let mut s = self.lock();
            if let Some(item) = s.items.pop_front() {
                return Poll::Ready(Some(item));
            }
            if s.closed {
                return Poll::Ready(None);
            }
            if !s.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                s.wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // The state stays consistent even if a holder panicked: every update is one push, pop
        // or flag store.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::sync::Arc;
    use std::task::{Context, Wake};
    use std::thread::{self, Thread};

    /// Runs a future to completion on this thread, parking between polls.
    pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
        struct Unpark(Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut f = pin!(f);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            thread::park();
        }
    }

    #[test]
    fn items_arrive_in_order_then_none() {
        let q = Arc::new(Queue::new());
        let producer = {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                for i in 0..100 {
                    q.push(i);
                }
                q.close();
                q.push(100);
            })
        };
        let got: Vec<i32> = block_on(async {
            let mut v = Vec::new();
            while let Some(i) = q.pop().await {
                v.push(i);
            }
            v
        });
        producer.join().unwrap();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }
}
