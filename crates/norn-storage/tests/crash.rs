//! Crash test: a child process writes with `Durability::Synced` and reports
//! each acknowledgement on stdout; it is killed with SIGKILL mid-stream.
//! After reopening, every acknowledged write must be there.
//!
//! The child is this test binary itself, re-run with `NORN_CRASH_CHILD_DIR`
//! set so that only `crash_child_writer` does anything.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use norn_ring::Partition;
use norn_storage::{
    Change, DataKey, Datum, Durability, RocksStorage, Storage, Store, StoreOptions,
};

const CHILD_DIR_ENV: &str = "NORN_CRASH_CHILD_DIR";
const WRITERS: u64 = 4;
const ACKS_BEFORE_KILL: usize = 400;

fn key(writer: u64, i: u64) -> DataKey {
    DataKey::new(
        Partition((i % 16) as u16),
        b"crash",
        format!("{writer}-{i}").as_bytes(),
    )
    .expect("key")
}

fn value(writer: u64, i: u64) -> Vec<u8> {
    format!("value-{writer}-{i}").repeat(20).into_bytes()
}

/// The child: writes forever from several threads (so fsyncs are shared),
/// printing `writer i` once each write is acknowledged.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let store = Arc::new(Store::open_rocks(dir.as_ref(), StoreOptions::default()).expect("open"));
    let stdout = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (store, stdout) = (store.clone(), stdout.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    let datum = Datum {
                        n: 3,
                        value: value(writer, i),
                    };
                    store
                        .update(&key(writer, i), Durability::Synced, None, &mut |_| {
                            Change::Put(datum.clone())
                        })
                        .expect("write");
                    let mut out = stdout.lock().expect("stdout");
                    writeln!(out, "ack {writer} {i}").expect("report");
                    out.flush().expect("flush");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("writer");
    }
}

#[test]
fn acknowledged_synced_writes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "crash_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read");
        let mut words = line.split_whitespace();
        if words.next() != Some("ack") {
            continue;
        }
        let writer: u64 = words.next().and_then(|w| w.parse().ok()).expect("writer");
        let i: u64 = words.next().and_then(|w| w.parse().ok()).expect("index");
        acked.push((writer, i));
        if acked.len() == ACKS_BEFORE_KILL {
            child.kill().expect("SIGKILL the child");
            break;
        }
    }
    child.wait().expect("reap child");
    assert_eq!(
        acked.len(),
        ACKS_BEFORE_KILL,
        "the child stopped before being killed"
    );
    let store: RocksStorage =
        Store::open_rocks(dir.path(), StoreOptions::default()).expect("reopen");
    for (writer, i) in acked {
        let datum = store
            .get(&key(writer, i))
            .expect("read")
            .expect("acknowledged write is present");
        assert_eq!(datum.value, value(writer, i));
    }
}
