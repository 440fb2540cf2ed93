//! A real SMTP server for the tests: `tests/peers/smtp_peer.py` (Python's aiosmtpd) as a
//! child process on a free port, one per test, storing what it accepts in a tempdir;
//! plus DKIM verification with dkimpy (`tests/peers/dkim_verify.py`). The Python comes
//! from the venv `scripts/python-env.sh` makes (`./scripts/test.sh` runs it and exports
//! `TAYORI_TEST_PYTHON`).
//!
//! The peer answers by the recipient's local part (case-insensitive prefix):
//! `unknown*` 550 5.1.1 and `disabled*` 550 5.2.1 and `busy*` 452 4.2.2 at RCPT;
//! `tempfail*` 451 4.3.0 at DATA the first time per exact address (then 250);
//! `reject*` 554 5.7.1 at DATA; anything else 250.

#![allow(dead_code)]

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::free_port;

/// TEST-ONLY ed25519 DKIM key, generated once with PyNaCl and published here: never use it
/// for real mail. Base64 of the raw 32-byte seed, the format of lettre's
/// `DkimSigningKey::new(key, DkimSigningAlgorithm::Ed25519)`.
pub const TEST_DKIM_ED25519_PRIVATE_B64: &str = "XorSnH4Y0/Y5cY26gBOFRkdLvPoVp7XrC89FOCSdhFE=";
/// Its public half: base64 of the raw 32-byte key, the `p=` of a `k=ed25519` record (RFC 8463).
pub const TEST_DKIM_ED25519_PUBLIC_B64: &str = "f7b13+x1Y5w/BYX4CuL1Fhhk/nBd0O8glT40Nx501+Y=";

/// TEST-ONLY 2048-bit RSA DKIM key (PKCS#1 PEM), generated once with
/// `openssl genrsa -traditional 2048` and published here: never use it for real mail.
pub const TEST_DKIM_RSA_PRIVATE_PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEogIBAAKCAQEAqKMHNtIG23O5ZFWDyuOTGaKWCExMUBoNpZxiJyWzXbD9liWg\nlV9gcSAvAeARil444HOYmR0AE0tZ5GUeiYg5Z6sXgpf2hRQzjtUFJyCnrFsmyPO0\nfoARj30oLUJtPcFiIWtAafXPyFc0FKWH5u1xhspGzkbSPXec2wUlOdhhRU4oW08r\npuhPvPJCn6gxSdWS+37Uoz9qTcjFCJ/waursnUiHW4Q4Yn6CXKyhK4vMrFNLADOq\nt77iLrJOg73/nGLl5DscsB1xW0Ky0sqD+uSRxxGrCjTwltmzAmI7+JbK6KZl5PBM\nn2Z9oX+8BmufdAY4yLyQOuEWWUxkHJdHKSlpkwIDAQABAoIBAAHnIQg103z7b86Z\nhmyuJ7VE1+ONFNlcieXh/1uIud7nRd1BXHADDQAJyG4BfMEucf7aXxDvOlZ9ZazF\nlVQg9ODeFdxT4aS7xx8n+TBpVmsD9kqTMWiyAkC3vVHRa5EkUvqkjqwDaY5NqZlI\nCuIIsNzAAI+ITgwCgwMXqkVeUy6of+OWa/yuP/n9v7f7wVQ/Heq8D2yx6ajGrK9H\n1u6kuMWZMnQXfwweLFCTIqOU6orkjg5D7ZBpUTY061MytdpWnyphJSJkQ9E4+nN8\nDaSKo5ga+BtuTDCqwjO19TDEo7c1cquqoj7DnMV2zIBKDzreXFcFv8boqvxH17LB\nOobQgEUCgYEA6vmkXZBsF+HbX0OMJkfQkAqEa0xQGpjumGBq4RR87oZ1LvgYQjHA\nBroqx5kcznH5mXFy4mcQfBfFArjVUev09iICIa0TBIoHvtJAtxJ0L9o4SQEtEVgr\niOn7UcVsqoDSDlJSa7a5464YVXuh3mGEyJNlgW6MQlCyWm3WS5+camcCgYEAt7nV\n4OtNxpJQSASI+0GP8jP4zG6IBvF9wgyXTSL3+Xpc7wy4l6TPpGXxaz0UxSykfHsz\nFLQTcNAWewFrhE3G50bgAew6THQtvPjruamCgo35VL3xVBfAuvtw0K1sxZX84wsn\nsE5Ty0FFJAuLyAVRxDKKMFKrEEllmVBFpSaIo/UCgYAPpYf4YwGPpY6CDXFrqySM\nMucWbgJ3gu+AXgs/6alYCMQM2KBk6AMtb4AhwmRUquo/+Xn48Xv7h2mrALvTtK6f\nJSyXKXs2tipF3qJIjoYGGbXdxqJFoWVkvI/rpgXSZLmYEotCeOxv6MveBVmGAWBi\nKs57i+zzDYSS2PWIG5zCyQKBgD+iWwTTGxYa2TmIcJVtyNifzZ2o7u5QuDj8uW7b\nHL5I9mVJp6nGSLDtKif1ePsuEi6XUULreAxL1m12OXISqkCymKWx1yNh3fGk2aht\noKltWR1TyIFS1MsuiY2Nc64f2/4bf/ydtIIisjrg0OJPjVmCE8DW8S7r7Qej+OtR\npGP9AoGAQvBGUZH1ngiMKz0K0CVpy8LMV0qZfoCLrNkDpsTARXad4j47TSeSAk7c\nsQn4TQFI4h/2CxjBLT1EbCzn14/AIn5zh8vtrfHEJQ24ZP734Y0kEHSWEPyAMvL5\n5jTJE/fK2MzFlQm85M1zUQMAwLBAU5zOaiBuVPhfxrC4l+wWKMo=\n-----END RSA PRIVATE KEY-----";
/// Its public half: base64 DER SubjectPublicKeyInfo, the `p=` of a `k=rsa` record.
pub const TEST_DKIM_RSA_PUBLIC_B64: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAqKMHNtIG23O5ZFWDyuOTGaKWCExMUBoNpZxiJyWzXbD9liWglV9gcSAvAeARil444HOYmR0AE0tZ5GUeiYg5Z6sXgpf2hRQzjtUFJyCnrFsmyPO0foARj30oLUJtPcFiIWtAafXPyFc0FKWH5u1xhspGzkbSPXec2wUlOdhhRU4oW08rpuhPvPJCn6gxSdWS+37Uoz9qTcjFCJ/waursnUiHW4Q4Yn6CXKyhK4vMrFNLADOqt77iLrJOg73/nGLl5DscsB1xW0Ky0sqD+uSRxxGrCjTwltmzAmI7+JbK6KZl5PBMn2Z9oX+8BmufdAY4yLyQOuEWWUxkHJdHKSlpkwIDAQAB";

/// (private seed base64, public key base64) of the fixed test-only ed25519 key.
pub fn ed25519_test_key() -> (String, String) {
    (
        TEST_DKIM_ED25519_PRIVATE_B64.to_owned(),
        TEST_DKIM_ED25519_PUBLIC_B64.to_owned(),
    )
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn peer_script(name: &str) -> PathBuf {
    repo().join("tests/peers").join(name)
}

/// The venv's Python: `$TAYORI_TEST_PYTHON`, else `target/test-python/bin/python`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("TAYORI_TEST_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = repo().join("target/test-python/bin/python");
    if venv.exists() {
        return venv;
    }
    panic!(
        "no Python for the SMTP test peer: run ./scripts/test.sh (or ./scripts/python-env.sh, \
         which makes target/test-python), or set TAYORI_TEST_PYTHON to a python with \
         tests/peers/requirements.txt installed"
    );
}

/// A message the peer accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The RCPT commands' arguments as written (`TO:<"taro..yamada"@docomo.ne.jp>`):
    /// `rcpt_tos` holds the addresses as aiosmtpd parsed them, quotes removed.
    pub rcpt_args: Vec<String>,
    /// The DATA bytes exactly as received (CRLF line endings, dot-unstuffed).
    pub raw: Vec<u8>,
    pub auth_user: Option<String>,
    pub helo: Option<String>,
    /// Whether the message came over TLS (STARTTLS or implicit).
    pub tls: bool,
}

/// A running `smtp_peer.py`; killed on drop.
pub struct SmtpPeer {
    pub port: u16,
    /// Where the peer writes `NNNNNN.eml` + `NNNNNN.json` and `connections`.
    pub dir: PathBuf,
    auth: Option<(String, String)>,
    /// `starttls` or `implicit`.
    tls: Option<&'static str>,
    /// More of the script's flags (`--no-pipelining`, `--close-idle-after 1`).
    flags: Vec<String>,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
}

impl SmtpPeer {
    pub fn start() -> SmtpPeer {
        Self::new(None, None)
    }

    /// AUTH PLAIN/LOGIN (over plaintext) required before MAIL.
    pub fn start_with_auth(user: &str, pass: &str) -> SmtpPeer {
        Self::new(Some((user.to_owned(), pass.to_owned())), None)
    }

    /// TLS with a throwaway CA (see `ca_pem`): `"starttls"` (required before MAIL)
    /// or `"implicit"` (TLS from the first byte).
    pub fn start_with_tls(mode: &'static str) -> SmtpPeer {
        Self::new(None, Some(mode))
    }

    /// AUTH (`user`, `pass`), TLS (`starttls` | `implicit`) and more of the script's
    /// flags together: `--no-pipelining`, `--close-idle-after SECONDS`.
    pub fn start_custom(
        auth: Option<(&str, &str)>,
        tls: Option<&'static str>,
        flags: &[&str],
    ) -> SmtpPeer {
        let auth = auth.map(|(u, p)| (u.to_owned(), p.to_owned()));
        Self::with_flags(auth, tls, flags.iter().map(|f| f.to_string()).collect())
    }

    /// The CA that signed a TLS peer's certificate (for 127.0.0.1 and localhost).
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.join(".ca.pem")
    }

    fn new(auth: Option<(String, String)>, tls: Option<&'static str>) -> SmtpPeer {
        Self::with_flags(auth, tls, Vec::new())
    }

    fn with_flags(
        auth: Option<(String, String)>,
        tls: Option<&'static str>,
        flags: Vec<String>,
    ) -> SmtpPeer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut peer = SmtpPeer {
            port: 0,
            dir: tmp.path().to_path_buf(),
            auth,
            tls,
            flags,
            child: None,
            _tmp: tmp,
        };
        // free_port() releases the port before the peer binds it: on the rare race with
        // another test, take another port.
        let mut last = String::new();
        for _ in 0..5 {
            peer.port = free_port();
            match peer.spawn() {
                Ok(()) => return peer,
                Err(e) if e.to_lowercase().contains("address already in use") => last = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{last}");
    }

    fn stderr_log(&self) -> PathBuf {
        self.dir.join(".peer-stderr.log")
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(self.stderr_log()).unwrap_or_default()
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_log())
            .expect("open the peer's stderr log");
        let mut cmd = Command::new(python());
        cmd.arg(peer_script("smtp_peer.py"))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if let Some((user, pass)) = &self.auth {
            cmd.arg("--auth").arg(format!("{user}:{pass}"));
        }
        if let Some(mode) = self.tls {
            cmd.args(["--tls", mode]);
        }
        cmd.args(&self.flags);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python().display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // The first line is READY; keep draining so the peer never blocks on a full pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.trim() == "READY" => {
                self.child = Some(child);
                Ok(())
            }
            other => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "the SMTP test peer did not get ready on port {} ({other:?}); its stderr:\n{}",
                    self.port,
                    self.stderr_text()
                ))
            }
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s): connections are refused
    /// until [`SmtpPeer::restart`]. Messages and counters stay in `dir`.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the server again on the same port and `dir` (after [`SmtpPeer::stop`]).
    /// Numbering, the connection count and which `tempfail*` addresses already
    /// failed carry on.
    pub fn restart(&mut self) {
        self.stop();
        let mut last = String::new();
        for _ in 0..10 {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("{last}");
    }

    /// Every accepted message so far, in the order they were accepted.
    pub fn messages(&self) -> Vec<Received> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .expect("read the peer's dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.strip_suffix(".eml")
                    .is_some_and(|s| s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect();
        names.sort();
        names
            .iter()
            .map(|name| {
                let eml = self.dir.join(name);
                let meta = std::fs::read(eml.with_extension("json")).expect("the message's .json");
                let meta: serde_json::Value =
                    serde_json::from_slice(&meta).expect("the peer's .json");
                let text = |k: &str| meta[k].as_str().map(str::to_owned);
                let texts = |k: &str| -> Vec<String> {
                    meta[k]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                Received {
                    mail_from: text("mail_from").unwrap_or_default(),
                    rcpt_tos: texts("rcpt_tos"),
                    rcpt_args: texts("rcpt_args"),
                    raw: std::fs::read(&eml).expect("the message's .eml"),
                    auth_user: text("auth_user"),
                    helo: text("helo"),
                    tls: meta["tls"].as_bool().unwrap_or(false),
                }
            })
            .collect()
    }

    /// Waits until at least `n` messages were accepted, returning all of them; panics
    /// after `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let msgs = self.messages();
            if msgs.len() >= n {
                return msgs;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {n} message(s) at the SMTP peer: \
                     got {} in {} connection(s); peer stderr:\n{}",
                    msgs.len(),
                    self.connections(),
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SMTP connections accepted so far (all runs on this `dir`).
    pub fn connections(&self) -> u64 {
        self.counter("connections")
    }

    /// SMTP connections that ended so far (either side closing).
    pub fn closed(&self) -> u64 {
        self.counter("closed")
    }

    /// MAIL commands that came in one write with the commands after them (pipelined).
    pub fn pipelined(&self) -> u64 {
        self.counter("pipelined")
    }

    fn counter(&self, name: &str) -> u64 {
        std::fs::read_to_string(self.dir.join(name))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for SmtpPeer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Verifies the first DKIM-Signature of `raw` with dkimpy against the ed25519 key
/// `public_key_b64` published (only) at `selector._domainkey.domain`. `Ok` holds the
/// signed header fields (`h=`, colon-separated, e.g. `from:to:subject:list-unsubscribe`),
/// `Err` the reason.
pub fn dkim_verify(
    raw: &[u8],
    selector: &str,
    domain: &str,
    public_key_b64: &str,
) -> Result<String, String> {
    run_dkim_verify(raw, "ed25519", selector, domain, public_key_b64)
}

/// [`dkim_verify`] for an RSA key (`public_key_b64`: base64 DER SubjectPublicKeyInfo,
/// the PEM body).
pub fn dkim_verify_rsa(
    raw: &[u8],
    selector: &str,
    domain: &str,
    public_key_b64: &str,
) -> Result<String, String> {
    run_dkim_verify(raw, "rsa", selector, domain, public_key_b64)
}

fn run_dkim_verify(
    raw: &[u8],
    key_type: &str,
    selector: &str,
    domain: &str,
    public_key_b64: &str,
) -> Result<String, String> {
    let mut child = Command::new(python())
        .arg(peer_script("dkim_verify.py"))
        .args(["--selector", selector, "--domain", domain])
        .args(["--public-key-b64", public_key_b64, "--key-type", key_type])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python().display()));
    // The script reads all of stdin before writing anything.
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(raw)
        .expect("write the message to dkim_verify.py");
    let out = child.wait_with_output().expect("dkim_verify.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    let verdict = lines.next().unwrap_or("").trim();
    let signed = lines.next().unwrap_or("").trim().to_owned();
    if out.status.success() && verdict == "pass" {
        Ok(signed)
    } else {
        Err(format!(
            "{verdict} (signed headers: {signed:?}; exit {}){}",
            out.status,
            match String::from_utf8_lossy(&out.stderr).trim() {
                "" => String::new(),
                e => format!("; stderr: {e}"),
            }
        ))
    }
}
