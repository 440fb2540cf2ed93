//! The `tayori` command line. Each subcommand is a small function; errors are
//! reported once, in `main`.

mod bounce;
mod cancel;
mod dead;
mod enqueue;
mod events;
mod forget;
mod inspect;
mod migrate;
mod profile;
mod report;
mod stats;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Parser)]
#[command(
    name = "tayori",
    version,
    about = "Multichannel message delivery: Redis streams in, email/LINE/SMS/DM out, every reaction back."
)]
pub struct Cli {
    /// Config file [default: $TAYORI_CONFIG or config/tayori.toml]
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log lines as text (default) or JSON objects, one per line (for log shippers).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "TAYORI_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon: workers, scheduler, HTTP server and metrics. SIGTERM drains and exits 0.
    Run {
        /// Exit once every queue is empty (demos and benchmarks).
        #[arg(long)]
        drain: bool,
    },
    /// Check jobs (JSON Lines) against this config, as `check-jobs` does, and add the
    /// good ones to their channel streams. Bad lines are reported by number and not
    /// enqueued; the exit code is 1 if there were any.
    Enqueue {
        /// A .jsonl file, or - for standard input.
        file: PathBuf,
        /// Only check, as `check-jobs`: nothing is enqueued.
        #[arg(long)]
        check: bool,
    },
    /// Check jobs (JSON Lines) against this config without enqueueing them: each
    /// channel enabled, the template there and every variable it reads in `vars`, an
    /// address each channel can send to. One line per failing job (line number, job
    /// id, the field at fault); exit 1 if any fails.
    CheckJobs {
        /// A .jsonl file, or - for standard input.
        file: PathBuf,
    },
    /// Make an API key for `POST /v1/jobs`: prints the key (give it to the client;
    /// it is not stored) and the hash line to add to `[http.api] keys`.
    ApiKey,
    /// Print the personalized message a job would send, for each of its channels, without
    /// sending. An email is shown decoded (headers, then each part's text); `--raw` prints
    /// the bytes the transport would send.
    Render {
        /// A file holding one job (JSON), or - for standard input.
        job: PathBuf,
        /// Print exactly the bytes that would be sent (an email's MIME encoding included).
        #[arg(long)]
        raw: bool,
    },
    /// Check the config, the templates and the channels' settings; exit 1 on any error.
    CheckConfig {
        /// Also connect to Redis (through Sentinel when configured), authenticate and
        /// check it is the primary; a failure names its cause and the key to fix.
        #[arg(long)]
        connect: bool,
    },
    /// Cancel a campaign (on every channel, or one with --channel) or one job:
    /// its queued, scheduled, retrying and rate-limited jobs end within seconds
    /// with a `cancelled` event each, and jobs of it enqueued until --until are
    /// cancelled too. A job already handed to its provider ends as it would
    /// have. Also --list (the active cancels) and --lift ID.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["campaign", "job", "list", "lift"])))]
    Cancel {
        /// The campaign (the jobs' `campaign` field).
        #[arg(long, value_name = "ID")]
        campaign: Option<String>,
        /// Only the campaign's jobs on this channel.
        #[arg(long, value_name = "CHANNEL", requires = "campaign")]
        channel: Option<String>,
        /// One job (its `id`), on every channel.
        #[arg(long, value_name = "ID")]
        job: Option<String>,
        /// Why: written into every `cancelled` event. Required to cancel.
        #[arg(long)]
        reason: Option<String>,
        /// Who cancels [default: user@host].
        #[arg(long)]
        by: Option<String>,
        /// Jobs that arrive until then are cancelled too: an RFC 3339 time or a
        /// duration from now (48h, 7d) [default: 24h].
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// List the active cancels.
        #[arg(long)]
        list: bool,
        /// Lift the cancel of this campaign or job id (jobs already cancelled stay so).
        #[arg(long, value_name = "ID")]
        lift: Option<String>,
        /// With --list: JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Per-channel backlog, pending, delayed and dead letters, and the active cancels.
    Stats {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A campaign's outcomes and reactions per channel: counts, rates, time to first
    /// reaction, top links and best hours, read from the results stream.
    Report {
        /// The campaign (the jobs' `campaign` field).
        #[arg(long)]
        campaign: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also write a self-contained HTML page with charts to FILE.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Count reactions flagged `suspected_bot` (link scanners, prefetches) too.
        #[arg(long)]
        include_bots: bool,
        /// IANA time zone of the best hours [default: policy.timezone].
        #[arg(long, value_name = "TZ")]
        timezone: Option<String>,
    },
    /// What Tayori has learned about one customer: reactions by channel and the
    /// hours of the week they react, decayed to now.
    Profile {
        /// The customer (the jobs' `customer_id`).
        customer_id: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// IANA time zone of the hours [default: policy.timezone].
        #[arg(long, value_name = "TZ")]
        timezone: Option<String>,
    },
    /// Drop the dedupe claims of job ids: a job with one of these ids is then
    /// sent again instead of ending as a `duplicate` within queue.dedupe_window.
    /// Exit 1 when an id had no claim.
    Forget {
        /// Job ids (the jobs' `id`).
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Inspect and re-drive dead letters.
    Dead {
        #[command(subcommand)]
        command: DeadCommand,
    },
    /// Read a bounce message (an RFC 3464 DSN) on standard input, as an MTA pipe does,
    /// and record it: hard bounces suppress the address. Exit 75 (try again later)
    /// when Redis is unreachable, 65 when the input is not a DSN.
    Bounce,
    /// Print the job format as JSON Schema (published as docs/job.schema.json),
    /// or with --events the results events' (docs/event.schema.json).
    Schema {
        /// The events' schema instead of the job's.
        #[arg(long)]
        events: bool,
    },
    /// Print the results events of every partition as JSON lines. Without
    /// --group: every event there is, or with --follow new ones as they come
    /// (all of them first with --from-start). With --group NAME: as consumer
    /// group NAME on every partition (created at the end, or at the start with
    /// --from-start), acknowledging what was printed.
    Events {
        /// Read as this consumer group, acknowledging what is printed.
        #[arg(long, value_name = "NAME")]
        group: Option<String>,
        /// Keep waiting for new events (stop with Ctrl-C).
        #[arg(long)]
        follow: bool,
        /// Start at the streams' beginning.
        #[arg(long)]
        from_start: bool,
    },
    /// Bring the data in Redis to this build's layout (schema 1 → 2). Stop every
    /// daemon first. Safe to run again after an interruption.
    Migrate {
        /// Only count what would move.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
pub enum DeadCommand {
    /// List dead letters, oldest first.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        count: usize,
        /// Print JSON Lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back on their channel streams (all of them when no ID is given).
    Retry {
        /// Dead-letter entry ids, as `dead list` shows them.
        ids: Vec<String>,
        /// Without ids, also re-drive `invalid_job` letters (they fail again
        /// unless something outside the job changed).
        #[arg(long)]
        include_invalid: bool,
    },
}

/// Opens a connection for a command; a failure names its cause (certificate,
/// auth, unreachable) and the config key to fix.
pub(crate) async fn connect(
    config: &Config,
    reply_timeout: std::time::Duration,
) -> anyhow::Result<crate::redis_connection::RedisConnection> {
    let target = config.redis_target()?;
    target
        .connect(reply_timeout)
        .await
        .map_err(|e| crate::redis_connection::ConnectError::new(&target, &e).into())
}

/// The checks `enqueue` and `check-jobs` run, with this config's templates.
fn job_checker(
    config: &Config,
    channels: crate::channel::Channels,
) -> anyhow::Result<crate::job_check::JobChecker> {
    let renderer = crate::channel::load_templates(config).map_err(|e| anyhow::anyhow!(e.0))?;
    Ok(crate::job_check::JobChecker::new(
        config,
        std::sync::Arc::new(channels),
        std::sync::Arc::new(renderer),
    )?)
}

/// Runs the parsed command; the result is the process exit code.
pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let path = Config::resolve_path(cli.config.as_deref());
    if let Command::Schema { events } = cli.command {
        if events {
            print!("{}", crate::event::event_schema());
        } else {
            print!("{}", crate::channel::registry::job_schema());
        }
        return Ok(0);
    }
    if let Command::ApiKey = cli.command {
        let (key, hash) = crate::http::api::new_key()?;
        println!("key: {key}");
        println!("config ([http.api]): keys = [\"{hash}\"]");
        return Ok(0);
    }
    let config = Config::load(&path)?;
    let channels = crate::channel::Channels::from_config(&config)?;
    tayori_channels::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Run { drain } => {
            rt.block_on(crate::daemon::run(
                config,
                channels,
                crate::daemon::RunOptions { drain },
            ))?;
            Ok(0)
        }
        Command::Enqueue { file, check } => {
            let checker = job_checker(&config, channels)?;
            match check {
                true => enqueue::check(&checker, &file),
                false => rt.block_on(enqueue::run(&config, &checker, &file)),
            }
        }
        Command::CheckJobs { file } => enqueue::check(&job_checker(&config, channels)?, &file),
        Command::ApiKey => Ok(0),
        Command::Render { job, raw } => inspect::render(&config, &channels, &job, raw),
        Command::CheckConfig { connect } => {
            inspect::check_config(&config, &channels, connect.then_some(&rt))
        }
        Command::Stats { json } => rt.block_on(stats::run(&config, json)),
        Command::Cancel {
            campaign,
            channel,
            job,
            reason,
            by,
            until,
            list,
            lift,
            json,
        } => {
            if list {
                return rt.block_on(cancel::list(&config, json));
            }
            if let Some(id) = lift {
                return rt.block_on(cancel::lift(&config, &id));
            }
            let target = match (campaign, job) {
                (Some(id), _) => crate::cancel::Target::Campaign {
                    id,
                    channel: channel
                        .map(|c| crate::channel::registry::parse(&c))
                        .transpose()?,
                },
                (None, Some(id)) => crate::cancel::Target::Job { id },
                (None, None) => anyhow::bail!("say what to cancel: --campaign ID or --job ID"),
            };
            rt.block_on(cancel::cancel(
                &config,
                cancel::NewCancel {
                    target,
                    reason: reason.as_deref().unwrap_or_default(),
                    by: by.as_deref(),
                    until: until.as_deref(),
                },
            ))
        }
        Command::Report {
            campaign,
            json,
            html,
            include_bots,
            timezone,
        } => report::run(
            &config,
            rt.handle(),
            report::Options {
                campaign: &campaign,
                json,
                html: html.as_deref(),
                include_bots,
                timezone: timezone.as_deref(),
            },
        ),
        Command::Profile {
            customer_id,
            json,
            timezone,
        } => rt.block_on(profile::show(
            &config,
            &customer_id,
            timezone.as_deref(),
            json,
        )),
        Command::Dead {
            command: DeadCommand::List { count, json },
        } => rt.block_on(dead::list(&config, count, json)),
        Command::Dead {
            command:
                DeadCommand::Retry {
                    ids,
                    include_invalid,
                },
        } => rt.block_on(dead::retry(&config, &ids, include_invalid)),
        Command::Forget { ids } => rt.block_on(forget::run(&config, &ids)),
        Command::Bounce => rt.block_on(bounce::run(&config, &channels)),
        Command::Schema { .. } => Ok(0),
        Command::Events {
            group,
            follow,
            from_start,
        } => rt.block_on(events::run(
            &config,
            events::Options {
                group: group.as_deref(),
                follow,
                from_start,
            },
        )),
        Command::Migrate { dry_run } => rt.block_on(migrate::run(&config, dry_run)),
    }
}
