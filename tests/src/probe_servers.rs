//! Servers that health probes check, in the lab's internet namespace, whose answers a test
//! switches per client (so one uplink's view of a service breaks while the other's works): an HTTP
//! and an HTTPS server (certificate from a CA the test makes with `openssl`) answering the status in
//! `http-status`, and a DNS server answering the response code in `dns-rcode`. A setting is read at
//! every request from `<dir>/<name>-<client address>`, else `<dir>/<name>`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flowpin_lab::Lab;

/// The server address (one of the lab's servers on inet's `lo`).
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 13);
/// HTTP port.
pub const HTTP_PORT: u16 = 8081;
/// HTTPS port.
pub const HTTPS_PORT: u16 = 8443;
/// DNS port (UDP).
pub const DNS_PORT: u16 = 5354;
/// The name the HTTPS certificate is for (the probe's URL host, checked by SNI).
pub const TLS_NAME: &str = "probe.lab.test";
/// The body of a 2xx answer.
pub const OK_BODY: &str = "flowpin probe ok";

const SERVER_PY: &str = r#"
import http.server, os, socket, socketserver, ssl, struct, sys, threading
addr, http_port, https_port, dns_port, control, cert, key = sys.argv[1:8]

def setting(name, client, default):
    for path in (os.path.join(control, name + "-" + client), os.path.join(control, name)):
        try:
            with open(path) as f:
                return f.read().strip()
        except FileNotFoundError:
            pass
    return default

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        status = int(setting("http-status", self.client_address[0], "200"))
        body = b"flowpin probe ok\n" if status < 400 else b"unavailable\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

class TlsServer(Server):
    def get_request(self):
        conn, peer = self.socket.accept()
        conn.settimeout(2)
        return context.wrap_socket(conn, server_side=True), peer

context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
for server in (Server((addr, int(http_port)), Handler), TlsServer((addr, int(https_port)), Handler)):
    threading.Thread(target=server.serve_forever, daemon=True).start()

dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dns.bind((addr, int(dns_port)))
while True:
    query, peer = dns.recvfrom(2048)
    if len(query) < 12:
        continue
    rcode = int(setting("dns-rcode", peer[0], "0"))
    answers = 1 if rcode == 0 else 0
    header = query[:2] + bytes([0x80 | (query[2] & 0x01), 0x80 | rcode]) + query[4:6]
    header += struct.pack("!HHH", answers, 0, 0)
    answer = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + bytes([192, 0, 2, 200]) if answers else b""
    dns.sendto(header + query[12:] + answer, peer)
"#;

const OPENSSL_CNF: &str = "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = flowpin lab CA\n\
[ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
subjectKeyIdentifier = hash\n\
[server]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
extendedKeyUsage = serverAuth\nsubjectAltName = DNS:probe.lab.test\n";

/// The running servers and the directory of their settings.
#[derive(Debug)]
pub struct ProbeServers {
    dir: PathBuf,
    /// The CA that signed the HTTPS certificate.
    pub ca: PathBuf,
    /// Another CA, which signed nothing the servers present.
    pub other_ca: PathBuf,
}

impl ProbeServers {
    /// Makes the CAs and the certificate, starts the servers in the lab's internet namespace (the
    /// lab kills them at teardown) and waits until they listen.
    pub fn start(lab: &Lab) -> Self {
        let dir = lab.dir().join("probe-servers");
        std::fs::create_dir_all(&dir).expect("the probe servers' directory");
        let cnf = dir.join("openssl.cnf");
        std::fs::write(&cnf, OPENSSL_CNF).expect("writing openssl.cnf");
        let ca = make_ca(&dir, &cnf, "ca", "/CN=flowpin lab CA");
        let other_ca = make_ca(&dir, &cnf, "other-ca", "/CN=another lab CA");
        let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
        let csr = dir.join("server.csr");
        openssl(&[
            "req",
            "-new",
            "-config",
            &s(&cnf),
            "-subj",
            "/CN=probe.lab.test",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &s(&key),
            "-out",
            &s(&csr),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &s(&csr),
            "-CA",
            &s(&ca),
            "-CAkey",
            &s(&dir.join("ca.key")),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &s(&cnf),
            "-extensions",
            "server",
            "-out",
            &s(&cert),
        ]);
        let control = dir.join("control");
        std::fs::create_dir_all(&control).expect("the settings directory");
        let argv = [
            "python3".to_owned(),
            "-c".to_owned(),
            SERVER_PY.to_owned(),
            ADDRESS.to_string(),
            HTTP_PORT.to_string(),
            HTTPS_PORT.to_string(),
            DNS_PORT.to_string(),
            s(&control),
            s(&cert),
            s(&key),
        ];
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        lab.spawn(&lab.inet().ns, &argv)
            .expect("starting the probe servers");
        wait_listening(lab);
        Self {
            dir: control,
            ca,
            other_ca,
        }
    }

    /// Sets `name` (`http-status`, `dns-rcode`) to `value` for `client` (`None`: every client
    /// without its own).
    pub fn set(&self, name: &str, client: Option<Ipv4Addr>, value: &str) {
        let file = match client {
            Some(client) => format!("{name}-{client}"),
            None => name.to_owned(),
        };
        std::fs::write(self.dir.join(file), value).expect("writing a probe server setting");
    }
}

fn s(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn openssl(args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running openssl (Debian package openssl): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed CA `<name>.pem` / `<name>.key` in `dir`, its subject `subject` (distinct CAs
/// have distinct subjects, as real ones do).
fn make_ca(dir: &Path, cnf: &Path, name: &str, subject: &str) -> PathBuf {
    let (pem, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    openssl(&[
        "req",
        "-x509",
        "-config",
        &s(cnf),
        "-subj",
        subject,
        "-extensions",
        "ca",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &s(&key),
        "-out",
        &s(&pem),
        "-days",
        "2",
    ]);
    pem
}

fn wait_listening(lab: &Lab) {
    let wanted = [
        format!("{ADDRESS}:{HTTP_PORT}"),
        format!("{ADDRESS}:{HTTPS_PORT}"),
        format!("{ADDRESS}:{DNS_PORT}"),
    ];
    let start = Instant::now();
    loop {
        let ss = lab
            .exec_ok(&lab.inet().ns, &["ss", "-Hlntu"])
            .unwrap_or_default();
        if wanted.iter().all(|w| ss.contains(w.as_str())) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the probe servers do not listen on {wanted:?}: {ss}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
