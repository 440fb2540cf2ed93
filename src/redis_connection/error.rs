//! Why a connection to Redis failed, in the words an operator acts on: which
//! cause (certificate, auth, unreachable, a cluster that is not ok) and which
//! config key to fix.

use super::RedisTarget;

/// What went wrong, by what the operator does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// TLS: the server's certificate is not trusted, expired or names another
    /// host, or the server wants a client certificate. Retrying will not help.
    Certificate,
    /// The user or password was refused, or the user may not run a command.
    /// Retrying will not help.
    Auth,
    /// Nothing answered (refused, timed out, no such host), or Sentinel knows no
    /// primary. May come back by itself.
    Unreachable,
    /// The server answered but is not a primary (a replica, or Sentinel's answer
    /// is stale).
    NotPrimary,
    /// Redis Cluster: the nodes answered but the cluster does not serve every
    /// slot (`cluster_state:fail`, `CLUSTERDOWN`): a failover under way, or a
    /// cluster that lost a shard. May come back by itself.
    ClusterNotOk,
}

impl Cause {
    /// Certificate and auth problems do not fix themselves: fail, do not retry.
    pub fn is_permanent(self) -> bool {
        matches!(self, Cause::Certificate | Cause::Auth)
    }

    fn word(self) -> &'static str {
        match self {
            Cause::Certificate => "certificate",
            Cause::Auth => "auth",
            Cause::Unreachable => "unreachable",
            Cause::NotPrimary => "not the primary",
            Cause::ClusterNotOk => "cluster not ok",
        }
    }
}

/// A failed connection: one line naming the cause, the target and the key to fix.
#[derive(Debug, thiserror::Error)]
#[error("Redis {cause_word}: {target}: {detail} (fix: {fix})", cause_word = cause.word())]
pub struct ConnectError {
    pub cause: Cause,
    target: String,
    detail: String,
    fix: String,
}

impl ConnectError {
    pub fn new(target: &RedisTarget, e: &redis::RedisError) -> ConnectError {
        let cause = classify(e);
        let text = e.to_string();
        let lower = text.to_ascii_lowercase();
        let sentinel = target.is_sentinel();
        let cluster = target.is_cluster();
        let fix = match cause {
            Cause::Certificate if cluster && lower.contains("notvalidforname") => {
                "a node's certificate does not name the address the cluster announces for it \
                 (CLUSTER SLOTS): give each node a certificate for that address, or set \
                 cluster-announce-hostname on the nodes to a name their certificates carry"
                    .to_owned()
            }
            Cause::Certificate if lower.contains("notvalidforname") => {
                "the certificate does not name this host: set redis.tls_server_name to a name it \
                 carries, or connect by that name"
                    .to_owned()
            }
            Cause::Certificate if lower.contains("expired") || lower.contains("notvalidyet") => {
                "the server's certificate is expired or not yet valid: renew it on the server".into()
            }
            Cause::Certificate if lower.contains("certificaterequired") || lower.contains("handshake") && !lower.contains("unknownissuer") => {
                "the server asks for a client certificate: set redis.tls_cert_file and redis.tls_key_file".into()
            }
            Cause::Certificate => "set redis.tls_ca_file to the CA (PEM) that signed the server's certificate".into(),
            // Through Sentinel one lookup logs in to the sentinels and then checks
            // the primary's role with the data user: the crate's error does not say
            // which login was refused.
            Cause::Auth if sentinel => {
                "check redis.sentinel_username and redis.sentinel_password (the sentinels' \
                 login), and redis.username and redis.password (the primary's)"
                    .into()
            }
            Cause::Auth if lower.contains("noperm") || lower.contains("no permissions") => {
                "the ACL user lacks a permission Tayori needs: grant the rules in docs/security.md".into()
            }
            Cause::Auth if cluster => {
                "check redis.username and redis.password (or the user:password in redis.cluster): \
                 every node must know that user"
                    .into()
            }
            Cause::Auth => "check redis.username and redis.password (or the user:password in redis.url)".into(),
            Cause::Unreachable if sentinel => {
                "check redis.sentinels and redis.master_name, and that the sentinels are \
                 running (during a failover this passes within seconds)"
                    .into()
            }
            // A TLS-only server drops a plain client's first command.
            Cause::Unreachable if !target.is_tls() && lower.contains("reset by peer") => {
                let key = if cluster { "redis.cluster" } else if sentinel { "redis.sentinels" } else { "redis.url" };
                format!(
                    "the server closed the connection: if it speaks TLS, write rediss:// in {key}; \
                     otherwise check {key} (host:port) and that Redis is running"
                )
            }
            Cause::Unreachable if cluster => {
                "check redis.cluster (the seed nodes' host:port) and that the nodes are running"
                    .into()
            }
            Cause::Unreachable => "check redis.url (host and port) and that Redis is running".into(),
            Cause::NotPrimary if sentinel => {
                "Sentinel named a replica: a failover is under way, or redis.master_name \
                 is another service"
                    .into()
            }
            Cause::NotPrimary => "point redis.url at the primary, or use redis.sentinels".into(),
            Cause::ClusterNotOk => CLUSTER_NOT_OK_FIX.into(),
        };
        ConnectError {
            cause,
            target: target.shown().to_owned(),
            detail: scrub(&text, target),
            fix,
        }
    }

    pub(super) fn not_primary(target: &RedisTarget) -> ConnectError {
        ConnectError {
            cause: Cause::NotPrimary,
            target: target.shown().to_owned(),
            detail: "the server is a replica (ROLE)".into(),
            fix: "point redis.url at the primary, or use redis.sentinels".into(),
        }
    }

    /// Redis Cluster: some node does not say `cluster_state:ok` (`detail` names
    /// the nodes and what they say).
    pub(super) fn cluster_not_ok(target: &RedisTarget, detail: &str) -> ConnectError {
        ConnectError {
            cause: Cause::ClusterNotOk,
            target: target.shown().to_owned(),
            detail: scrub(detail, target),
            fix: CLUSTER_NOT_OK_FIX.into(),
        }
    }

    pub(super) fn timed_out(target: &RedisTarget) -> ConnectError {
        ConnectError {
            cause: Cause::Unreachable,
            target: target.shown().to_owned(),
            detail: "no answer within 10 s".into(),
            fix: if target.is_cluster() {
                "check redis.cluster (the seed nodes' host:port), that every node is reachable \
                 from here at the address the cluster announces, and firewalls"
                    .into()
            } else if target.is_sentinel() {
                "check redis.sentinels and that the primary is reachable".into()
            } else {
                "check redis.url (host and port) and firewalls".into()
            },
        }
    }
}

const CLUSTER_NOT_OK_FIX: &str = "the cluster does not serve every slot: wait for a failover \
     to finish, or repair it (redis-cli --cluster check / fix); check that redis.cluster names \
     this cluster's nodes";

/// Sorts a connection error by cause. TLS failures reach us as I/O errors whose
/// text is rustls's (`invalid peer certificate: UnknownIssuer`, `received fatal
/// alert: CertificateRequired`, …).
pub fn classify(e: &redis::RedisError) -> Cause {
    use redis::{ErrorKind, ServerErrorKind};
    let text = e.to_string().to_ascii_lowercase();
    match e.kind() {
        ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::NoPerm) => {
            return Cause::Auth
        }
        ErrorKind::Server(ServerErrorKind::ReadOnly) => return Cause::NotPrimary,
        ErrorKind::Server(ServerErrorKind::ClusterDown) => return Cause::ClusterNotOk,
        _ => {}
    }
    if e.code()
        .is_some_and(|c| matches!(c, "WRONGPASS" | "NOAUTH" | "NOPERM"))
        || text.contains("wrongpass")
        || text.contains("noauth")
        || text.contains("authentication")
    {
        return Cause::Auth;
    }
    // Not the bare word "peer": "Connection reset by peer" is what a plain
    // client gets from a TLS-only port, and is no certificate problem.
    if text.contains("certificate")
        || text.contains("tls")
        || text.contains("handshake")
        || text.contains("unknownissuer")
        || text.contains("peer is incompatible")
        || text.contains("peer misbehaved")
        || text.contains("alert")
    {
        return Cause::Certificate;
    }
    Cause::Unreachable
}

/// A crate error can quote the URL it was given; never let a password through.
fn scrub(text: &str, target: &RedisTarget) -> String {
    let mut out = text.to_owned();
    for secret in target.secrets() {
        if !secret.is_empty() {
            out = out.replace(secret, "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::{ErrorKind, RedisError};

    #[test]
    fn causes_sort_by_what_the_operator_fixes() {
        let io = |kind, text: &str| RedisError::from(std::io::Error::new(kind, text.to_owned()));
        assert_eq!(
            classify(&io(
                std::io::ErrorKind::InvalidData,
                "invalid peer certificate: UnknownIssuer"
            )),
            Cause::Certificate
        );
        assert_eq!(
            classify(&io(
                std::io::ErrorKind::InvalidData,
                "received fatal alert: CertificateRequired"
            )),
            Cause::Certificate
        );
        assert_eq!(
            classify(&io(
                std::io::ErrorKind::ConnectionRefused,
                "Connection refused (os error 111)"
            )),
            Cause::Unreachable
        );
        assert_eq!(
            classify(&RedisError::from((
                ErrorKind::AuthenticationFailed,
                "Password authentication failed"
            ))),
            Cause::Auth
        );
        // What a plain client gets from a TLS-only port: not a certificate problem.
        assert_eq!(
            classify(&io(
                std::io::ErrorKind::ConnectionReset,
                "Connection reset by peer (os error 104)"
            )),
            Cause::Unreachable
        );
        assert_eq!(
            classify(&io(
                std::io::ErrorKind::InvalidData,
                "peer is incompatible: Tls12NotOffered"
            )),
            Cause::Certificate
        );
        assert!(Cause::Certificate.is_permanent() && Cause::Auth.is_permanent());
        assert!(!Cause::Unreachable.is_permanent());
    }
}
