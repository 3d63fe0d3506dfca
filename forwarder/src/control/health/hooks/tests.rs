use std::os::unix::fs::PermissionsExt;

use super::*;

fn hook_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flowpin-hooks-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_hook(dir: &Path, name: &str, body: &str, mode: u32) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn event(dir: &Path, timeout_ms: u64) -> HookEvent {
    HookEvent {
        uplink: "isp1".into(),
        interface: "up1".into(),
        old_state: "up",
        new_state: "down",
        reason: "carrier lost".into(),
        tier: 1,
        tier_in_use: Some(2),
        time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_664_836),
        dir: dir.to_owned(),
        timeout: Duration::from_millis(timeout_ms),
    }
}

/// Waits until `runs` hook runs have ended and none waits. The deadline only keeps a broken runner
/// from hanging the test; a loaded machine may take seconds to spawn the shells.
async fn settle(hooks: &Hooks, runs: u64) -> HookStatus {
    for _ in 0..6_000 {
        let s = hooks.status();
        if s.succeeded + s.failed + s.timed_out >= runs && s.waiting == 0 {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    hooks.status()
}

#[test]
fn times_are_rfc3339_utc() {
    assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339_utc(951_827_696), "2000-02-29T12:34:56Z");
    assert_eq!(rfc3339_utc(1_796_664_836), "2026-12-07T17:33:56Z");
}

#[test]
fn only_visible_executables_run_in_name_order() {
    let dir = hook_dir("list");
    write_hook(&dir, "20-second", "true", 0o755);
    write_hook(&dir, "10-first", "true", 0o700);
    write_hook(&dir, "15-not-executable", "true", 0o644);
    write_hook(&dir, ".hidden", "true", 0o755);
    write_hook(&dir, "10-first~", "true", 0o755);
    std::fs::create_dir(dir.join("30-a-directory")).unwrap();
    let names: Vec<String> = list_hooks(&dir)
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["10-first", "20-second"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn hooks_get_the_documented_environment_and_failures_are_counted() {
    let dir = hook_dir("env");
    let out = dir.join("out");
    write_hook(
        &dir,
        "10-record",
        &format!(
            "env | grep -E '^(FLOWPIN_|PATH=)' | sort > {}",
            out.display()
        ),
        0o755,
    );
    write_hook(&dir, "20-fail", "echo failing >&2; exit 3", 0o755);
    let hooks = Hooks::start();
    hooks.notify(event(&dir, 5000));
    let status = settle(&hooks, 2).await;
    assert_eq!(
        (
            status.events,
            status.succeeded,
            status.failed,
            status.timed_out
        ),
        (1, 1, 1, 0)
    );
    let env = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        env,
        "FLOWPIN_ACTION=disconnected\nFLOWPIN_EVENT_SEQUENCE=1\nFLOWPIN_INTERFACE=up1\n\
         FLOWPIN_NEW_STATE=down\nFLOWPIN_OLD_STATE=up\nFLOWPIN_REASON=carrier lost\n\
         FLOWPIN_TIER=1\nFLOWPIN_TIER_IN_USE=2\nFLOWPIN_TIME=2026-12-07T17:33:56Z\n\
         FLOWPIN_TIMESTAMP=1796664836\nFLOWPIN_UPLINK=isp1\n\
         PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_hanging_hook_is_killed_with_its_children_and_the_next_change_still_runs() {
    let dir = hook_dir("hang");
    let pids = dir.join("pids");
    let log = dir.join("log");
    write_hook(
        &dir,
        "10-hang",
        &format!(
            "sleep 300 & echo $! >> {pids}\necho $$ >> {pids}\nwait",
            pids = pids.display()
        ),
        0o755,
    );
    write_hook(
        &dir,
        "20-log",
        &format!(
            "echo \"$FLOWPIN_EVENT_SEQUENCE $FLOWPIN_NEW_STATE\" >> {}",
            log.display()
        ),
        0o755,
    );
    // Long enough for the logging hook's shell to start and finish on a loaded machine.
    let timeout_ms = 2_000;
    let hooks = Hooks::start();
    hooks.notify(event(&dir, timeout_ms));
    let mut second = event(&dir, timeout_ms);
    (second.old_state, second.new_state) = ("down", "probing");
    hooks.notify(second);
    let status = settle(&hooks, 4).await;
    assert_eq!(
        (status.succeeded, status.timed_out, status.failed),
        (2, 2, 0)
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "1 down\n2 probing\n"
    );
    // SIGKILL takes effect when the process next runs: give each one time to die, no more.
    let alive = |pid: &str| {
        Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    };
    for pid in std::fs::read_to_string(&pids).unwrap().lines() {
        for _ in 0..500 {
            if !alive(pid) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            !alive(pid),
            "process {pid} of the hook's group outlived the timeout"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_drops_and_counts_instead_of_waiting() {
    let dir = hook_dir("full");
    write_hook(&dir, "10-slow", "sleep 0.2", 0o755);
    let hooks = Hooks::start();
    for _ in 0..QUEUE_CAPACITY + 10 {
        hooks.notify(event(&dir, 5000));
    }
    let status = hooks.status();
    assert!(status.dropped >= 9, "{status:?}");
    assert_eq!(status.events, QUEUE_CAPACITY as u64 + 10);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The shipped example hook posts the change as JSON to the webhook (a real listener here) and
/// logs it with `logger`.
#[test]
fn the_example_hook_posts_the_change_as_json() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let n = conn.read(&mut buffer).unwrap();
            request.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&request);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    break;
                }
            }
        }
        conn.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            .unwrap();
        String::from_utf8(request).unwrap()
    });
    let dir = hook_dir("example");
    let url_file = dir.join("webhook-url");
    std::fs::write(&url_file, format!("{url}\n")).unwrap();
    let hook = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/hooks/50-notify");
    let mut event = event(&dir, 5000);
    event.reason = "probes: 0/1 answered; http://a.test/\"x\": HTTP status 503".into();
    let status = std::process::Command::new(&hook)
        .env_clear()
        .env("PATH", HOOK_PATH)
        .envs(environment(&event, 7))
        .env("FLOWPIN_WEBHOOK_FILE", &url_file)
        .status()
        .unwrap();
    assert!(status.success());
    let request = server.join().unwrap();
    assert!(request.starts_with("POST /hook HTTP/1.1\r\n"), "{request}");
    let body = request.split_once("\r\n\r\n").unwrap().1;
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["uplink"], "isp1");
    assert_eq!(json["new_state"], "down");
    assert_eq!(json["reason"], event.reason.as_str());
    assert_eq!(json["time"], "2026-12-07T17:33:56Z");
    assert_eq!(
        (json["tier"].as_u64(), json["tier_in_use"].as_u64()),
        (Some(1), Some(2))
    );
    let text = json["text"].as_str().unwrap();
    assert!(text.ends_with("; new flows on tier 2"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}
