//! `midi-rdv serve --tls-cert/--tls-key`: HTTPS in process with a
//! self-signed certificate made here, a renewed certificate picked up
//! without a restart, and the TLS handshake under the header deadline.
//! Real binary, loopback only.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_midi-rdv");

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh directory for this test's certificate files.
fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("midi-rdv-tls-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes a new self-signed certificate for 127.0.0.1 and returns its PEM.
fn write_cert(dir: &Path) -> String {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = ck.cert.pem();
    // Key first, then the certificate: the server reloads once both are in.
    std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), &cert).unwrap();
    cert
}

fn trusting(cert_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_certificate_reloaded_on_change() {
    let dir = temp_dir("reload");
    let first = write_cert(&dir);
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MIDI_RDV_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(["serve", "--bind", "127.0.0.1", "--port", "0"])
        .args(["--header-timeout-secs", "1", "--tls-reload-secs", "1"])
        .arg("--tls-cert")
        .arg(dir.join("cert.pem"))
        .arg("--tls-key")
        .arg(dir.join("key.pem"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
    });
    let child = Killed(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    let hostport = line
        .trim()
        .strip_prefix("midi-rdv listening on https://")
        .unwrap_or_else(|| panic!("startup line {line:?}"));
    let addr: SocketAddr = hostport.parse().unwrap();
    let base = format!("https://{addr}");

    let r = trusting(&first)
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h: serde_json::Value = r.json().await.unwrap();
    assert_eq!(h["service"], "midi-rdv");

    // A TCP client that never starts the handshake is closed by the header
    // deadline (1 s).
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("a silent TLS client was never closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(t.elapsed() < Duration::from_secs(3));

    // Renewal: new files, same server. A client trusting only the new
    // certificate gets through once the server has looked (every second).
    // Filesystems with coarse timestamps need the new files to differ in
    // mtime, hence the pause before writing.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = write_cert(&dir);
    let renewed = trusting(&second);
    let started = Instant::now();
    loop {
        match renewed.get(format!("{base}/health")).send().await {
            Ok(r) if r.status() == 200 => break,
            _ if started.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => panic!("renewed certificate never served: {other:?}"),
        }
    }
    // ...and the old one is no longer presented.
    assert!(trusting(&first)
        .get(format!("{base}/health"))
        .send()
        .await
        .is_err());
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn unusable_tls_files_are_refused_at_startup() {
    let dir = temp_dir("bad");
    std::fs::write(dir.join("cert.pem"), "not a certificate").unwrap();
    std::fs::write(dir.join("key.pem"), "not a key").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1", "--port", "0", "--tls-cert"])
        .arg(dir.join("cert.pem"))
        .arg("--tls-key")
        .arg(dir.join("key.pem"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot use the TLS files"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
    // --tls-cert alone is a usage error.
    let out = Command::new(BIN)
        .args(["serve", "--port", "0", "--tls-cert", "/nonexistent"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let _ = std::fs::remove_dir_all(&dir);
}
