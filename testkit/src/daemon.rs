//! The daemon (`tayori run`) as a child process: started from a binary and a
//! config, stopped by SIGTERM (the clean shutdown) or SIGKILL (the crash case),
//! and reaped with what it used.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `bin --config config` with `TAYORI_LOG=warn`: a `tayori` command line, to
/// which the caller adds the subcommand.
pub fn tayori(bin: &Path, config: &Path) -> Command {
    let mut c = Command::new(bin);
    c.arg("--config").arg(config);
    c.env("TAYORI_LOG", "warn");
    c
}

/// A running `tayori run`, SIGKILLed on drop.
pub struct Daemon {
    child: Option<Child>,
}

impl Daemon {
    /// `tayori` (see [`tayori`]) `run`, stdout discarded.
    pub fn start(mut tayori: Command) -> Daemon {
        let child = tayori
            .arg("run")
            .stdout(Stdio::null())
            .spawn()
            .expect("start tayori");
        Daemon::new(child)
    }

    /// Takes charge of a started `tayori run`.
    pub fn new(child: Child) -> Daemon {
        Daemon { child: Some(child) }
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
        self.kill9();
    }
}
