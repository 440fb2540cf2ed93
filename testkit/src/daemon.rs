//! The daemon (`tayori run`) as a child process: started from a binary and a
//! config, stopped by SIGTERM (the clean shutdown) or SIGKILL (the crash case),
//! and reaped with what it used.
//!
//! Every `tayori` a test starts dies with the test process (`PR_SET_PDEATHSIG`),
//! however that process ends, so no daemon outlives it. One did once: it kept the
//! CI's output pipe open and filled it with reconnect warnings until the
//! 90-minute limit. For the same reason a daemon's log goes to a file, printed
//! only when its test fails.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// `bin --config config` with `TAYORI_LOG=warn`: a `tayori` command line, to
/// which the caller adds the subcommand. The process is SIGKILLed when the
/// thread that spawns it ends (see [`die_with_parent`]): a command run to its
/// end (`output()`) on a test's thread, or the process for [`Daemon::start`].
pub fn tayori(bin: &Path, config: &Path) -> Command {
    let mut c = Command::new(bin);
    c.arg("--config").arg(config);
    c.env("TAYORI_LOG", "warn");
    die_with_parent(&mut c);
    c
}

/// Makes the kernel SIGKILL the child when the thread that spawned it ends
/// (`PR_SET_PDEATHSIG` is tied to the thread, not the process; a test's thread
/// ends with its test, or with the test process however it dies). Kept across
/// `exec`. A child that must outlive the test thread that starts it (a daemon
/// shared by a test binary's tests) is spawned with [`spawn_for_process`].
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (prctl, getppid, kill, getpid).
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have gone before the prctl: then nobody would signal us.
            if libc::getppid() == 1 {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            Ok(())
        });
    }
}

/// Spawns `cmd` on a thread that lives as long as the process, so that
/// [`die_with_parent`] ties the child to the process rather than to the calling
/// test's thread.
pub fn spawn_for_process(cmd: Command) -> std::io::Result<Child> {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        // Never ends: the sender lives in this static.
        std::thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the spawner thread");
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .lock()
        .map_err(|_| std::io::Error::other("the spawner's lock is poisoned"))?
        .send((cmd, reply))
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

/// How many lines of a failed test's daemon log are printed.
const LOG_TAIL_LINES: usize = 60;

/// A running `tayori run`, SIGKILLed on drop.
pub struct Daemon {
    child: Option<Child>,
    /// Its stderr (the log), when [`Daemon::start`] started it.
    log: Option<std::fs::File>,
}

impl Daemon {
    /// `tayori` (see [`tayori`]) `run`, stdout discarded, the log kept in an
    /// unnamed temporary file that is printed if the test fails. It lives until
    /// dropped or until the test process ends, whichever comes first.
    pub fn start(mut tayori: Command) -> Daemon {
        let log = tempfile::tempfile().expect("a temporary file for the daemon's log");
        tayori
            .arg("run")
            .stdout(Stdio::null())
            .stderr(log.try_clone().expect("dup the log file"));
        let child = spawn_for_process(tayori).expect("start tayori");
        Daemon {
            child: Some(child),
            log: Some(log),
        }
    }

    /// Takes charge of a started `tayori run`.
    pub fn new(child: Child) -> Daemon {
        Daemon {
            child: Some(child),
            log: None,
        }
    }

    /// The last `lines` lines of the daemon's log ("" when its stderr was not
    /// captured).
    pub fn log_tail(&self, lines: usize) -> String {
        let Some(file) = &self.log else {
            return String::new();
        };
        let mut file = file;
        let mut text = String::new();
        if file.seek(SeekFrom::Start(0)).is_err() {
            return text;
        }
        // A flood of reconnect warnings can be large: keep only the end.
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        let from = bytes.len().saturating_sub(64 * 1024);
        text.push_str(&String::from_utf8_lossy(&bytes[from..]));
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The exit status, if the daemon has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGKILL: the crash case.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM (the clean shutdown) and returns at once.
    pub fn sigterm(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
    }

    /// SIGTERM, then the exit status (waits up to `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        self.sigterm();
        let mut c = self.child.take()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the daemon to exit (after [`Daemon::sigterm`]) with `wait4`, which
    /// also reports what it used: (user + system CPU µs, peak RSS KiB). `Child::wait`
    /// reaps without the rusage. (0, 0) if it was reaped already.
    pub fn wait_with_usage(mut self) -> (f64, u64) {
        let Some(child) = self.child.take() else {
            return (0.0, 0);
        };
        let Ok(pid) = libc::pid_t::try_from(child.id()) else {
            return (0.0, 0);
        };
        let mut status = 0;
        // SAFETY: rusage is plain data, zero is a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own child, with pointers to live locals. The `Child`
        // is not waited on afterwards (dropping it does not wait).
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r != pid {
            return (0.0, 0);
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
        (
            tv(usage.ru_utime) + tv(usage.ru_stime),
            u64::try_from(usage.ru_maxrss).unwrap_or(0),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = self.pid();
        self.kill9();
        if std::thread::panicking() {
            let tail = self.log_tail(LOG_TAIL_LINES);
            if !tail.is_empty() {
                eprintln!("--- the last lines of daemon {pid}'s log ---\n{tail}\n---");
            }
        }
    }
}

/// Runs `cmd` (a `tayori` command that should end by itself, such as `run
/// --drain`) to its end and returns its output, killing it after `limit`: a
/// command that would never end fails its test in `limit` instead of holding the
/// whole run until CI's time limit. stdout and stderr are read as they come, so
/// a chatty command never blocks on a full pipe.
pub fn output_within(mut cmd: Command, limit: Duration) -> std::process::Output {
    use std::io::Read;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let Some(status) = status else {
        let text = String::from_utf8_lossy(&stderr);
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "{cmd:?} did not end within {limit:?}; the last of its stderr:\n{}",
            tail.join("\n")
        );
    };
    std::process::Output {
        status,
        stdout,
        stderr,
    }
}
