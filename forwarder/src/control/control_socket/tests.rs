//! The server over real Unix sockets: answers, the line limit, displacement, deadlines, modes.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream as StdStream;
use std::path::PathBuf;

use super::*;
use crate::control::api::{self, StatusReport};

/// A directory of its own under the temporary directory, removed at drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("flowpin-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Serves `path` with `limits` on a runtime thread of its own; status answers 7 flows.
fn start(path: &Path, limits: Limits) -> Arc<SurfaceCounters> {
    let listener = bind(path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let counters = Arc::new(SurfaceCounters::default());
    let served = counters.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::UnixListener::from_std(listener).unwrap();
            let handler: Handler = Arc::new(|request| match request {
                Request::Status => Response::Status(Box::new(StatusReport {
                    flows: 7,
                    ..Default::default()
                })),
                _ => Response::Done {
                    message: "ok".into(),
                },
            });
            serve(listener, limits, served, handler).await;
        });
    });
    counters
}

fn read_line(stream: &StdStream) -> String {
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

/// `limits` with a request deadline short enough to wait for, long enough that the test's own
/// steps (40 connects and a status call) fit well within it on a loaded machine.
fn short(limits: Limits) -> Limits {
    Limits {
        request_timeout: Duration::from_secs(3),
        ..limits
    }
}

#[test]
fn status_is_answered_and_a_bad_line_gets_an_error_without_closing() {
    let dir = TempDir::new("api-answers");
    let path = dir.0.join("s.sock");
    start(&path, Limits::DEFAULT);
    match api::call(&path, &Request::Status).unwrap() {
        Response::Status(s) => assert_eq!(s.flows, 7),
        other => panic!("unexpected {other:?}"),
    }
    let mut conn = StdStream::connect(&path).unwrap();
    conn.write_all(b"{\"cmd\":\"nope\"}\n{\"cmd\":\"status\"}\n")
        .unwrap();
    let mut reader = BufReader::new(conn);
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.contains("bad request"), "{first}");
    let mut second = String::new();
    reader.read_line(&mut second).unwrap();
    assert!(second.contains("\"flows\":7"), "{second}");
}

#[test]
fn an_oversized_line_is_refused_with_an_error_line_and_the_connection_closed() {
    let dir = TempDir::new("api-too-long");
    let path = dir.0.join("s.sock");
    let counters = start(&path, Limits::DEFAULT);
    let mut conn = StdStream::connect(&path).unwrap();
    let writer = {
        let mut conn = conn.try_clone().unwrap();
        std::thread::spawn(move || {
            // The daemon stops reading after the limit: the rest of the 8 MB fails to go.
            let junk = vec![b'a'; 8 << 20];
            conn.write_all(&junk).is_err()
        })
    };
    let line = read_line(&conn);
    assert!(
        line.contains("request line longer than 16384 bytes"),
        "{line}"
    );
    assert!(writer.join().unwrap(), "the daemon must not read 8 MB");
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "closed after the refusal");
    assert_eq!(counters.report().api_requests_too_long, 1);
}

#[test]
fn idle_connections_are_displaced_and_timed_out_never_locking_a_client_out() {
    let dir = TempDir::new("api-idle");
    let path = dir.0.join("s.sock");
    let limits = Limits {
        max_connections: 4,
        ..short(Limits::DEFAULT)
    };
    let counters = start(&path, limits);
    let idle: Vec<StdStream> = (0..40)
        .map(|_| StdStream::connect(&path).unwrap())
        .collect();
    match api::call(&path, &Request::Status).unwrap() {
        Response::Status(s) => assert_eq!(s.flows, 7),
        other => panic!("unexpected {other:?}"),
    }
    // The oldest idle connections were told why they were closed.
    let told = read_line(&idle[0]);
    assert!(told.contains("waited longest"), "{told}");
    let report = counters.report();
    assert_eq!(report.api_connections_accepted, 41);
    assert_eq!(report.api_connections_displaced, 41 - 4);
    assert_eq!(report.api_connections_refused, 0);
    // The survivors are closed at the request deadline.
    for survivor in &idle[37..] {
        let told = read_line(survivor);
        assert!(told.contains("no whole request within"), "{told}");
    }
    assert_eq!(
        counters.report().api_timeouts,
        3,
        "the three idle survivors"
    );
    // Each connection's slot goes when its task ends, just after its last line.
    let start = Instant::now();
    while counters.report().api_connections_open != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "slots not released"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_existing_directory_keeps_its_mode_and_the_socket_is_root_only() {
    let dir = TempDir::new("api-modes");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.0.join("x.sock");
    let _listener = bind(&path).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.0), 0o755, "a directory flowpin did not create");
    assert_eq!(mode(&path), 0o600);
    let created = dir.0.join("made-here");
    let _listener = bind(&created.join("s.sock")).unwrap();
    assert_eq!(mode(&created), 0o700, "a directory flowpin created");
}
