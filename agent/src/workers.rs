//! Threads that keep blocking work off the agent's actor thread, so it keeps answering the
//! master's pings while hundreds of containers start or stop:
//!
//! * [`Workers`]: a fixed pool running container launches and destroys (the libcontainer
//!   launcher answers after the container has started: tens to hundreds of ms each);
//! * [`CheckpointWriter`]: one thread writing and fsyncing the agent's checkpoint. The actor
//!   hands it a record only when it is idle, so many steps share one fsync (group commit).

use crate::checkpoint::{AgentRecord, CheckpointStore};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Most worker threads an agent starts (bounds `--max-parallel-launches`).
pub const MAX_WORKERS: usize = 64;

/// A fixed pool of threads taking jobs from one queue.
pub struct Workers {
    tx: mpsc::Sender<Job>,
}

impl Workers {
    /// Starts `threads` (1..=[`MAX_WORKERS`]) threads named `name-N`.
    pub fn new(threads: usize, name: &str) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.clamp(1, MAX_WORKERS) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || loop {
                    // The lock is held only while taking a job, not while running it.
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return, // the pool was dropped
                    }
                })?;
        }
        Ok(Workers { tx })
    }

    /// Queues `job`; it runs on the first free thread.
    pub fn run(&self, job: impl FnOnce() + Send + 'static) {
        if self.tx.send(Box::new(job)).is_err() {
            tracing::error!("agent worker threads are gone; job dropped");
        }
    }
}

/// Writes checkpoint records on its own thread; `done(seq, result)` is called after each.
pub struct CheckpointWriter {
    tx: mpsc::Sender<(u64, AgentRecord)>,
    thread: std::thread::JoinHandle<()>,
}

impl CheckpointWriter {
    pub fn start(
        mut store: CheckpointStore,
        done: impl Fn(u64, Result<(), String>) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<(u64, AgentRecord)>();
        let thread = std::thread::Builder::new()
            .name("agent-checkpoint".into())
            .spawn(move || {
                while let Ok((seq, record)) = rx.recv() {
                    done(seq, store.save(&record).map_err(|e| e.to_string()));
                }
            })?;
        Ok(CheckpointWriter { tx, thread })
    }

    /// Waits for the queued records to be written, then closes the store.
    pub fn stop(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }

    /// Queues one record; false if the writer thread is gone.
    pub fn write(&self, seq: u64, record: AgentRecord) -> bool {
        self.tx.send((seq, record)).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pool_runs_jobs_in_parallel_up_to_its_size() {
        let pool = Workers::new(3, "t").expect("pool");
        let (tx, rx) = mpsc::channel();
        let gate = Arc::new(std::sync::Barrier::new(3));
        for i in 0..3 {
            let (tx, gate) = (tx.clone(), gate.clone());
            // All three must be running at once to pass the barrier.
            pool.run(move || {
                gate.wait();
                tx.send(i).expect("send");
            });
        }
        let mut got: Vec<i32> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).expect("job ran"))
            .collect();
        got.sort();
        assert_eq!(got, vec![0, 1, 2]);
    }

    #[test]
    fn writer_saves_records_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CheckpointStore::open(dir.path()).expect("open");
        let (tx, rx) = mpsc::channel();
        let writer = CheckpointWriter::start(store, move |seq, r| {
            tx.send((seq, r)).expect("send");
        })
        .expect("writer");
        let mut record = crate::checkpoint::new_record("c", "posix");
        assert!(writer.write(1, record.clone()));
        record.containerizer = "libcontainer".into();
        assert!(writer.write(2, record.clone()));
        for want in [1, 2] {
            let (seq, r) = rx.recv_timeout(Duration::from_secs(10)).expect("done");
            assert_eq!((seq, r), (want, Ok(())));
        }
        writer.stop();
        let mut store = CheckpointStore::open(dir.path()).expect("reopen");
        assert_eq!(store.load("c").expect("load"), Some(record));
    }
}
