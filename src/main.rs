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
    let filter = tracing_subscriber::EnvFilter::try_from_env("TAYORI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
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
