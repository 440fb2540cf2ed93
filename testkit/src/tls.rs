//! TLS fixtures: a private PKI made with rcgen (CAs, server and client
//! certificates as PEM files) and a redis-server that speaks only TLS, with client
//! certificates required or not, and optionally a password or the ACL user
//! docs/security.md documents for Tayori.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::free_port;

/// A certificate and its private key, as PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertKey {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The test PKI: every file lives in `dir`.
#[derive(Clone, Debug)]
pub struct Pki {
    pub dir: PathBuf,
    /// The CA that signs the servers' and the client's certificates.
    pub ca: PathBuf,
    /// An unrelated CA: trusting it instead of `ca` is the "wrong CA" case.
    pub other_ca: PathBuf,
    /// For `localhost` and IP 127.0.0.1, signed by `ca`.
    pub server: CertKey,
    /// Whose only name is `redis.internal` (for `tls_server_name`), signed by `ca`.
    pub internal: CertKey,
    /// For `localhost` and 127.0.0.1, signed by `ca`, valid only during 2020.
    pub expired: CertKey,
    /// A client certificate (mutual TLS), CN `tayori`, signed by `ca`.
    pub client: CertKey,
    /// A client certificate signed by `other_ca` (a server trusting `ca` refuses it).
    pub other_client: CertKey,
}

/// The name of the test CA's certificate subject.
pub const CA_NAME: &str = "Tayori Test CA";

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    p.distinguished_name.push(DnType::CommonName, name);
    p.distinguished_name
        .push(DnType::OrganizationName, "Tayori tests");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("CA key");
    let cert = p.self_signed(&key).expect("self-signed CA");
    (cert.pem(), Issuer::new(p, key))
}

/// A leaf certificate signed by `issuer`: (cert PEM, key PEM).
fn new_leaf(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
    expired: bool,
) -> (String, String) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut p = CertificateParams::new(names).expect("leaf params");
    p.distinguished_name.push(DnType::CommonName, common_name);
    p.distinguished_name
        .push(DnType::OrganizationName, "Tayori tests");
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![usage];
    p.use_authority_key_identifier_extension = true;
    if expired {
        p.not_before = date_time_ymd(2020, 1, 1);
        p.not_after = date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().expect("leaf key");
    let cert = p.signed_by(&key, issuer).expect("sign leaf");
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    /// Generates every certificate and writes the PEM files into `dir` (created if needed).
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).expect("create the PKI dir");
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write a PEM file");
            path
        };
        let pair = |name: &str, (cert, key): (String, String)| CertKey {
            cert: write(&format!("{name}.pem"), &cert),
            key: write(&format!("{name}.key"), &key),
        };
        let (ca_pem, ca) = new_ca(CA_NAME);
        let (other_pem, other) = new_ca("Unrelated Test CA");
        let server_names = ["localhost", "127.0.0.1"];
        let server = ExtendedKeyUsagePurpose::ServerAuth;
        let client = ExtendedKeyUsagePurpose::ClientAuth;
        Pki {
            dir: dir.to_path_buf(),
            ca: write("ca.pem", &ca_pem),
            other_ca: write("other-ca.pem", &other_pem),
            server: pair(
                "server",
                new_leaf(&ca, "localhost", &server_names, server.clone(), false),
            ),
            internal: pair(
                "internal",
                new_leaf(
                    &ca,
                    "redis.internal",
                    &["redis.internal"],
                    server.clone(),
                    false,
                ),
            ),
            expired: pair(
                "expired",
                new_leaf(&ca, "localhost", &server_names, server, true),
            ),
            client: pair(
                "client",
                new_leaf(&ca, "tayori", &["tayori.client"], client.clone(), false),
            ),
            other_client: pair(
                "other-client",
                new_leaf(&other, "tayori", &["tayori.client"], client, false),
            ),
        }
    }

    /// The PEM bytes a test's own TLS connection uses: `ca` as its only root and,
    /// with `with_client_cert` (mutual TLS), `client` as its certificate.
    pub fn certificates(&self, with_client_cert: bool) -> redis::TlsCertificates {
        let read = |p: &Path| std::fs::read(p).expect("read a PEM file");
        redis::TlsCertificates {
            client_tls: with_client_cert.then(|| redis::ClientTlsConfig {
                client_cert: read(&self.client.cert),
                client_key: read(&self.client.key),
            }),
            root_cert: Some(read(&self.ca)),
        }
    }
}

/// How a [`TlsRedis`] is set up. `Default`: TLS only, no client certificates, no password.
#[derive(Clone, Debug, Default)]
pub struct TlsOpts {
    /// `tls-auth-clients yes` (mutual TLS) instead of `no`.
    pub auth_clients: bool,
    /// `requirepass` (the `default` user's password).
    pub requirepass: Option<String>,
    /// Creates the ACL user `tayori` with this password and the rules of
    /// docs/security.md (prefix `t`).
    pub acl_password: Option<String>,
    /// The server's certificate; `None`: `pki.server` (localhost, 127.0.0.1).
    pub server_cert: Option<CertKey>,
    /// Also listen in plain text on `plain_port` (for the test's own connection when
    /// the certificate cannot be checked against 127.0.0.1). Always on for a
    /// `server_cert` other than `pki.server`.
    pub plain_port: bool,
}

/// A redis-server of the test's own speaking TLS (no plaintext port unless
/// `TlsOpts::plain_port`), with AOF persistence like [`crate::Redis`].
pub struct TlsRedis {
    /// The TLS port.
    pub port: u16,
    /// The plaintext admin port, when there is one.
    pub plain_port: Option<u16>,
    pub opts: TlsOpts,
    pki: Pki,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// The rules (after `ACL SETUSER tayori`) of the `<!-- redis-acl -->` block of
/// docs/security.md, for prefix `t` and `password`.
pub fn documented_acl_rules(password: &str) -> Vec<String> {
    // The kit's manifest dir is testkit/; the docs are the repository's.
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/security.md"))
            .expect("docs/security.md");
    let block = doc
        .split("<!-- redis-acl -->")
        .nth(1)
        .expect("docs/security.md marks its ACL with <!-- redis-acl -->");
    let mut lines = block
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("ACL SETUSER"));
    let mut line = lines
        .next()
        .expect("an ACL SETUSER line after the marker")
        .trim()
        .to_owned();
    // Continuation lines (`\` at the end) belong to it.
    while line.ends_with('\\') {
        line.pop();
        line.push(' ');
        line.push_str(lines.next().unwrap_or("").trim());
    }
    line.split_whitespace()
        .skip(3)
        .map(|t| match t {
            t if t.starts_with('>') => format!(">{password}"),
            t if t.starts_with("~tayori:") => format!("~t:{}", &t["~tayori:".len()..]),
            t if t.starts_with("%R~tayori:") || t.starts_with("%W~tayori:") => {
                t.replacen("~tayori:", "~t:", 1)
            }
            t => t.to_owned(),
        })
        .collect()
}

impl TlsRedis {
    pub fn start(pki: &Pki, opts: TlsOpts) -> TlsRedis {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = opts
            .server_cert
            .clone()
            .unwrap_or_else(|| pki.server.clone());
        let plain_port = (opts.plain_port || cert != pki.server).then(free_port);
        let port = free_port();
        let q = |p: &Path| format!("\"{}\"", p.display());
        let mut conf = format!(
            "bind 127.0.0.1\n\
             port {plain}\n\
             tls-port {port}\n\
             tls-cert-file {cert}\n\
             tls-key-file {key}\n\
             tls-ca-cert-file {ca}\n\
             tls-auth-clients {auth}\n\
             save \"\"\n\
             appendonly yes\n\
             appendfsync always\n\
             dir {dir}\n\
             logfile {log}\n",
            plain = plain_port.unwrap_or(0),
            cert = q(&cert.cert),
            key = q(&cert.key),
            ca = q(&pki.ca),
            auth = if opts.auth_clients { "yes" } else { "no" },
            dir = q(dir.path()),
            log = q(&dir.path().join("redis.log")),
        );
        if let Some(pass) = &opts.requirepass {
            conf.push_str(&format!("requirepass \"{pass}\"\n"));
        }
        if let Some(pass) = &opts.acl_password {
            conf.push_str(&format!(
                "user tayori {}\n",
                documented_acl_rules(pass).join(" ")
            ));
        }
        let conf_path = dir.path().join("redis.conf");
        std::fs::write(&conf_path, conf).expect("write redis.conf");
        let child = Command::new("redis-server")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed (apt-get install redis-server)");
        let mut r = TlsRedis {
            port,
            plain_port,
            opts,
            pki: pki.clone(),
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ok = r
                .try_conn()
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if ok.is_ok() {
                break;
            }
            if let Some(Ok(Some(status))) = r.child.as_mut().map(|c| c.try_wait()) {
                let log = std::fs::read_to_string(r.dir.path().join("redis.log"));
                panic!("redis-server (TLS) exited with {status}; its log: {log:?}");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server (TLS) did not start on port {port}: {ok:?}"
            );
            std::thread::sleep(Duration::from_millis(30));
        }
        r
    }

    /// `rediss://127.0.0.1:PORT`, without credentials.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }

    /// The PEM bytes the test's own connections present: the CA and, for mutual TLS,
    /// the client certificate.
    pub fn certificates(&self) -> redis::TlsCertificates {
        self.pki.certificates(self.opts.auth_clients)
    }

    /// The `default` user's connection: over the plain admin port when there is one,
    /// otherwise over TLS (verifying the server against the test CA).
    pub fn try_conn(&self) -> redis::RedisResult<redis::Connection> {
        let auth = match &self.opts.requirepass {
            Some(p) => format!(":{p}@"),
            None => String::new(),
        };
        let client = match self.plain_port {
            Some(plain) => redis::Client::open(format!("redis://{auth}127.0.0.1:{plain}"))?,
            None => redis::Client::build_with_tls(
                format!("rediss://{auth}127.0.0.1:{}", self.port),
                self.certificates(),
            )?,
        };
        client.get_connection_with_timeout(Duration::from_secs(2))
    }

    /// A connection over TLS as `user` (the ACL user's own view).
    pub fn conn_as(&self, user: &str, password: &str) -> redis::RedisResult<redis::Connection> {
        redis::Client::build_with_tls(
            format!("rediss://{user}:{password}@127.0.0.1:{}", self.port),
            self.certificates(),
        )?
        .get_connection_with_timeout(Duration::from_secs(2))
    }

    pub fn conn(&self) -> redis::Connection {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.try_conn() {
                Ok(c) => return c,
                Err(e) if Instant::now() > deadline => {
                    panic!("cannot connect to the TLS test redis: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
