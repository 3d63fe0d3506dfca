//! The Debian package, end to end, as an admin meets it: `scripts/package.sh` builds
//! `target/debian/flowpin_<version>-1_<arch>.deb` from the release build; this test installs it with
//! the real dpkg on this machine, checks what it put where (binary, conffile, unit, man pages,
//! completions, docs), verifies the unit with `systemd-analyze verify`, runs `flowpin check` on the
//! shipped example, then runs the unit's own `ExecStart=` on a lab the way systemd would (its
//! `CapabilityBoundingSet=` and `NoNewPrivileges=` applied by setpriv, `NOTIFY_SOCKET`,
//! `WATCHDOG_USEC` and `JOURNAL_STREAM` set, the socket in `/run/flowpin`), and checks readiness,
//! forwarding, watchdog keep-alives, journal priorities, `ExecReload=` (accepted and refused), the exit
//! status `RestartPreventExitStatus=` names, and a clean stop; finally `dpkg --purge` removes every
//! file. There is no systemd as PID 1 on CI's machine, so the notify socket is the test's own.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use flowpin_lab::flowpin_router::config_for;
use flowpin_lab::{Lab, LabProcess, LabSpec, RouterKind, traffic};
use flowpin_tests::{assert_no_leak_or_wrong_uplink, down_and_assert_clean, lab_up};

const CONFIG: &str = "/etc/flowpin/flowpin.toml";
const RUNTIME_DIR: &str = "/run/flowpin";
const SOCKET: &str = "/run/flowpin/flowpin.sock";

/// Every file the package must install (man pages are compressed by cargo-deb).
const INSTALLED: [&str; 14] = [
    "/usr/bin/flowpin",
    CONFIG,
    "/usr/lib/systemd/system/flowpin.service",
    "/usr/share/man/man8/flowpin.8.gz",
    "/usr/share/man/man8/flowpin-run.8.gz",
    "/usr/share/man/man8/flowpin-reload.8.gz",
    "/usr/share/man/man8/flowpin-uplink-drain.8.gz",
    "/usr/share/bash-completion/completions/flowpin",
    "/usr/share/zsh/vendor-completions/_flowpin",
    "/usr/share/fish/vendor_completions.d/flowpin.fish",
    "/usr/share/doc/flowpin/README.md",
    "/usr/share/doc/flowpin/configuration.md",
    "/usr/share/doc/flowpin/operations.md",
    "/usr/share/doc/flowpin/examples/flowpin.toml",
];

/// The package file `scripts/package.sh` built.
fn package_file() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("debian");
    let prefix = format!("flowpin_{}-", env!("CARGO_PKG_VERSION"));
    let found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        found.len(),
        1,
        "missing prerequisite: exactly one {prefix}*.deb in {} (build it with ./scripts/package.sh after the release build), found {found:?}",
        dir.display()
    );
    found.into_iter().next().unwrap()
}

fn run(argv: &[&str]) -> Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {argv:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs dpkg, waiting while another dpkg or apt holds its lock (another admin task on the machine).
fn dpkg(args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut argv = vec!["dpkg"];
        argv.extend_from_slice(args);
        let out = run(&argv);
        let locked = !out.status.success() && text(&out).contains("lock");
        if !locked || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The installed package; purged when dropped, whatever the test did.
struct Installed;

impl Installed {
    fn install(deb: &Path) -> Self {
        let out = dpkg(&["-i", deb.to_str().unwrap()]);
        assert!(out.status.success(), "dpkg -i: {}", text(&out));
        Installed
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = dpkg(&["--purge", "flowpin"]);
        let _ = std::fs::remove_dir_all(RUNTIME_DIR);
    }
}

/// `Key=` values of the unit, in order (a key may repeat).
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
        .collect()
}

fn unit_value(unit: &str, key: &str) -> String {
    let values = unit_values(unit, key);
    assert_eq!(values.len(), 1, "{key}= once in the unit: {values:?}");
    values[0].clone()
}

/// The notify socket the test listens on, as systemd does.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).expect("binding the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Self { socket, path }
    }

    /// Messages until one contains `needle` (all of them, that one last), or panics after `timeout`.
    fn until(&self, needle: &str, timeout: Duration, process: &LabProcess) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                let found = message.contains(needle);
                seen.push(message);
                if found {
                    return seen;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} from flowpin within {timeout:?}; got {seen:?}; stderr: {}",
                process.stderr().unwrap_or_default()
            );
        }
    }
}

/// The unit's `ExecStart=` inside the router namespace, under the unit's bounding set and
/// no_new_privs, with the environment systemd gives a `Type=notify` service logging to the journal.
fn start_like_systemd(
    lab: &Lab,
    unit: &str,
    notify: &NotifySocket,
    watchdog_usec: u64,
) -> LabProcess {
    let exec_start = unit_value(unit, "ExecStart");
    let bounding: Vec<String> = unit_value(unit, "CapabilityBoundingSet")
        .split_whitespace()
        .map(|cap| format!("+{}", cap.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    assert_eq!(unit_value(unit, "NoNewPrivileges"), "yes");
    // LimitMEMLOCK= is not applied here: raising it needs CAP_SYS_RESOURCE, which CI's root lacks.
    // The unit keeps CAP_IPC_LOCK so AF_XDP's UMEM is not charged to the memlock limit at all, which
    // this run proves under the environment's own (8 MiB here, below one worker's UMEM) limit.
    assert!(unit_value(unit, "CapabilityBoundingSet").contains("CAP_IPC_LOCK"));
    let script = format!(
        "JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) NOTIFY_SOCKET={} WATCHDOG_USEC={watchdog_usec} \
         exec setpriv --bounding-set=-all,{} --no-new-privs -- {exec_start}",
        notify.path.display(),
        bounding.join(",")
    );
    lab.spawn(
        &lab.router().ns,
        &["sh", "-c", &format!("export JOURNAL_STREAM; {script}")],
    )
    .expect("starting the unit's ExecStart")
}

#[test]
fn the_package_installs_runs_its_unit_on_the_lab_reloads_and_purges_cleanly() {
    let deb = package_file();
    let installed = Installed::install(&deb);

    // What went where.
    for path in INSTALLED {
        assert!(Path::new(path).exists(), "{path} not installed");
    }
    let conffiles = run(&["dpkg-query", "-W", "-f=${Conffiles}", "flowpin"]);
    assert!(
        text(&conffiles).contains(CONFIG),
        "{CONFIG} is a conffile: {}",
        text(&conffiles)
    );
    let man = run(&["man", "-w", "8", "flowpin-run"]);
    assert_eq!(
        String::from_utf8_lossy(&man.stdout).trim(),
        "/usr/share/man/man8/flowpin-run.8.gz",
        "man finds flowpin-run(8): {}",
        text(&man)
    );
    let bash = std::fs::read_to_string("/usr/share/bash-completion/completions/flowpin").unwrap();
    assert!(
        bash.contains("flowpin__subcmd__uplink") && bash.contains("set-weight"),
        "{bash}"
    );
    let unit = std::fs::read_to_string("/usr/lib/systemd/system/flowpin.service").unwrap();
    for documented in unit_values(&unit, "Documentation")
        .iter()
        .flat_map(|line| line.split_whitespace())
        .filter_map(|url| url.strip_prefix("file://"))
    {
        assert!(
            Path::new(documented).exists(),
            "Documentation= names {documented}, not installed"
        );
    }
    assert_eq!(unit_value(&unit, "Type"), "notify");
    assert_eq!(unit_value(&unit, "RestartPreventExitStatus"), "6");
    assert_eq!(unit_value(&unit, "ExecStart"), "/usr/bin/flowpin run");
    // Every directive known to this systemd, every command and man page there.
    let verify = run(&[
        "systemd-analyze",
        "verify",
        "/usr/lib/systemd/system/flowpin.service",
    ]);
    assert!(
        verify.status.success() && text(&verify).trim().is_empty(),
        "systemd-analyze verify: {}",
        text(&verify)
    );

    // The shipped example is valid as it is.
    let check = run(&["/usr/bin/flowpin", "check"]);
    assert!(
        check.status.success(),
        "flowpin check of the shipped example: {}",
        text(&check)
    );
    assert!(text(&check).contains("fiber"), "{}", text(&check));
    let missing = run(&[
        "/usr/bin/flowpin",
        "check",
        "-c",
        "/nonexistent/flowpin.toml",
    ]);
    assert_eq!(missing.status.code(), Some(6), "{}", text(&missing));

    // The unit's command line on the lab, its configuration where the unit reads it.
    let lab = lab_up(LabSpec {
        router: RouterKind::None,
        ..LabSpec::with_weights(&[1, 1])
    });
    std::fs::create_dir_all(RUNTIME_DIR).unwrap();
    let notify = NotifySocket::bind(&lab.dir());
    let good = config_for(lab.topology(), Path::new(SOCKET), &[(0, 1), (1, 1)]);

    // A broken file: exit status 6, which the unit does not restart.
    std::fs::write(CONFIG, good.replace("weight = 1", "weight = \"one\"")).unwrap();
    let refused = start_like_systemd(&lab, &unit, &notify, 2_000_000);
    let status = refused
        .wait(Duration::from_secs(20))
        .expect("flowpin exits");
    assert_eq!(
        status.code(),
        Some(6),
        "{}",
        refused.stderr().unwrap_or_default()
    );
    let said = refused.stderr().unwrap();
    assert!(
        said.starts_with("<3>flowpin: ") && said.contains("uplink[0].weight"),
        "{said}"
    );

    std::fs::write(CONFIG, &good).unwrap();
    let flowpin = start_like_systemd(&lab, &unit, &notify, 2_000_000);
    let ready = notify.until("READY=1", Duration::from_secs(30), &flowpin);
    assert!(
        ready
            .last()
            .unwrap()
            .contains("STATUS=forwarding: 2 uplinks"),
        "{ready:?}"
    );
    let http = traffic::http_get(&lab, &lab.lan_hosts()[0], 20).expect("curl runs");
    assert_eq!(
        http.ok, 20,
        "forwarding once ready: {:?}",
        http.failed_codes
    );
    // The CLI finds the daemon at the default socket; --socket is global (before the subcommand).
    let status = run(&["/usr/bin/flowpin", "status", "--json"]);
    assert!(status.status.success(), "{}", text(&status));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        status["uplinks"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
    let elsewhere = run(&[
        "/usr/bin/flowpin",
        "--socket",
        "/nonexistent.sock",
        "status",
    ]);
    assert_eq!(elsewhere.status.code(), Some(1), "{}", text(&elsewhere));
    assert!(
        text(&elsewhere).contains("/nonexistent.sock"),
        "{}",
        text(&elsewhere)
    );
    // Keep-alives at half of WATCHDOG_USEC.
    for _ in 0..2 {
        notify.until("WATCHDOG=1", Duration::from_secs(5), &flowpin);
    }

    // ExecReload=, accepted: RELOADING=1 then READY=1.
    let exec_reload = unit_value(&unit, "ExecReload");
    let reload_argv: Vec<&str> = exec_reload.split_whitespace().collect();
    std::fs::write(CONFIG, good.replace("weight = 1", "weight = 2")).unwrap();
    let out = run(&reload_argv);
    assert!(out.status.success(), "ExecReload: {}", text(&out));
    let reloaded = notify.until("READY=1", Duration::from_secs(10), &flowpin);
    let reloading = reloaded
        .iter()
        .position(|m| m.starts_with("RELOADING=1\nMONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("RELOADING=1 before READY=1: {reloaded:?}"));
    assert!(reloading < reloaded.len() - 1, "{reloaded:?}");
    assert!(
        reloaded.last().unwrap().contains("STATUS=reloaded"),
        "{reloaded:?}"
    );

    // ExecReload=, refused: the command fails naming the field, the running configuration stays.
    std::fs::write(CONFIG, good.replace("weight = 1", "wieght = 1")).unwrap();
    let out = run(&reload_argv);
    assert!(!out.status.success(), "a broken file must fail the reload");
    assert!(text(&out).contains("wieght"), "{}", text(&out));
    let refused = notify.until("READY=1", Duration::from_secs(10), &flowpin);
    assert!(
        refused.last().unwrap().contains("STATUS=reload refused"),
        "{refused:?}"
    );
    let http = traffic::http_get(&lab, &lab.lan_hosts()[0], 10).expect("curl runs");
    assert_eq!(http.ok, 10, "still forwarding: {:?}", http.failed_codes);
    std::fs::write(CONFIG, &good).unwrap();

    // An uplink losing its carrier is a warning in the journal.
    let wan1 = lab.uplinks()[0].router_iface.clone();
    lab.exec_ok(&lab.router().ns, &["ip", "link", "set", &wan1, "down"])
        .unwrap();
    notify.until(
        "STATUS=forwarding: isp1 down, isp2 up",
        Duration::from_secs(10),
        &flowpin,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !flowpin.stderr().unwrap().contains("<4>") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    lab.exec_ok(&lab.router().ns, &["ip", "link", "set", &wan1, "up"])
        .unwrap();

    // SIGTERM, as systemctl stop sends: STOPPING=1 and exit 0.
    flowpin.signal("TERM").unwrap();
    notify.until("STOPPING=1", Duration::from_secs(10), &flowpin);
    let status = flowpin
        .wait(Duration::from_secs(15))
        .expect("flowpin stops");
    assert!(status.success(), "{status:?}");
    let log = flowpin.stderr().unwrap();
    for line in log.lines() {
        assert!(
            ["<3>", "<4>", "<6>", "<7>"]
                .iter()
                .any(|p| line.starts_with(p)),
            "every journal line carries its priority, without colour: {line:?}"
        );
    }
    assert!(
        !log.contains('\u{1b}'),
        "no ANSI colour in the journal: {log}"
    );
    assert!(log.contains("<6>") && log.contains("forwarding"), "{log}");
    assert!(
        log.lines().any(|l| l.starts_with("<4>")
            && l.contains("uplink health changed")
            && l.contains("isp1")),
        "the uplink going down is a warning: {log}"
    );
    assert_no_leak_or_wrong_uplink(&lab, &lab.isp_counters().expect("ISP counters"));
    down_and_assert_clean(lab);

    // Removed cleanly: no file of the package left, the conffile purged.
    drop(installed);
    let status = run(&["dpkg-query", "-W", "-f=${Status}", "flowpin"]);
    assert!(
        !text(&status).contains("installed") || text(&status).contains("not-installed"),
        "{}",
        text(&status)
    );
    for path in INSTALLED {
        assert!(!Path::new(path).exists(), "{path} left after dpkg --purge");
    }
    assert!(
        !Path::new("/etc/flowpin").exists(),
        "/etc/flowpin left after purge"
    );
}
