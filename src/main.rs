use clap::Parser;
use tayori::cli::LogFormat;

/// mimalloc instead of glibc's malloc: per-thread free lists without the arena
/// lock that the tokio workers contended on. The email hot path allocates a few
/// hundred times per job (rendering, link rewriting, MIME); with glibc, malloc,
/// free and their lock took about a quarter of the daemon's CPU (perf, issue 19;
/// figures in docs/benchmarks.md): 92–102 → 73–75 µs per tracked email. Its v2,
/// not v3: the same speed at a lower peak RSS (41 against 55–67 MiB there).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = tayori::cli::Cli::parse();
    // Like other Unix tools, the commands that only print stop quietly when their reader
    // goes away (`tayori render job.json | head`) instead of panicking on a failed print.
    // Not the ones with network connections: there a peer closing a socket must be an
    // error to handle, not a fatal signal.
    use tayori::cli::Command;
    if matches!(
        cli.command,
        Command::Render { .. } | Command::CheckConfig { .. } | Command::Schema { .. }
    ) {
        // SAFETY: before any thread exists; restores the default action.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let filter = log_filter(std::env::var("TAYORI_LOG").ok().as_deref());
    // Colour only on a terminal: a file, a pipe or journald would keep the escape
    // codes in every line. NO_COLOR (https://no-color.org) turns it off on a terminal too.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    match tayori::cli::dispatch(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

/// `TAYORI_LOG` (default `info`), with the redis crate held to errors unless the
/// variable names it: while a whole cluster is down the crate warns for every
/// node of every reconnect round (3 lines per round, hundreds of rounds a second
/// before the daemon's own pauses grow); the daemon's own warnings say the same
/// once per failed read. `TAYORI_LOG=info,redis=warn` brings them back.
fn log_filter(spec: Option<&str>) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_new(log_spec(spec))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_spec(None)))
}

/// The directives [`log_filter`] reads.
fn log_spec(spec: Option<&str>) -> String {
    let spec = spec
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("info");
    let names_redis = spec.split(',').any(|d| d.trim_start().starts_with("redis"));
    if names_redis {
        spec.to_owned()
    } else {
        format!("{spec},redis=error")
    }
}

#[cfg(test)]
mod tests {
    use super::{log_filter, log_spec};
    use tracing::level_filters::LevelFilter;

    #[test]
    fn the_redis_crate_is_held_to_errors_unless_named() {
        assert_eq!(log_spec(None), "info,redis=error");
        assert_eq!(log_spec(Some(" ")), "info,redis=error");
        assert_eq!(log_spec(Some("warn")), "warn,redis=error");
        assert_eq!(log_spec(Some("info,redis=warn")), "info,redis=warn");
        // A value EnvFilter cannot read falls back to the default.
        assert_eq!(
            log_filter(Some("tayori=[")).max_level_hint(),
            Some(LevelFilter::INFO)
        );
        assert_eq!(
            log_filter(Some("debug")).max_level_hint(),
            Some(LevelFilter::DEBUG)
        );
    }
}
