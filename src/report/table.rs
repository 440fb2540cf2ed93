//! The plain-text report (the default output): one column per channel that saw
//! anything, plus the total; a count and its rate over `sent` per row.

use std::fmt::Write as _;

use jiff::tz::TimeZone;

use super::summary::{ChannelReport, Report, COUNTS};

const LABEL: usize = 22;

/// A derived figure of a column, as shown.
pub(super) type Cell = fn(&ChannelReport) -> String;
const COLUMN: usize = 16;

/// The report as text, ending with a newline.
pub fn render(r: &Report, tz: &TimeZone) -> String {
    let mut out = String::new();
    let columns = columns(r);
    let _ = writeln!(
        out,
        "campaign {}: {} events{}",
        r.campaign,
        r.stream.events,
        span(r, tz)
            .map(|s| format!(", {s} ({})", r.timezone))
            .unwrap_or_default()
    );
    let bots = &r.total.suspected_bots;
    if bots.opens + bots.clicks > 0 {
        let how = if r.include_bots {
            "counted (--include-bots)"
        } else {
            "not counted (--include-bots counts them)"
        };
        let _ = writeln!(
            out,
            "suspected bots: {} opens, {} clicks, {how}",
            bots.opens, bots.clicks
        );
    }
    if r.total.machine_opens > 0 {
        let _ = writeln!(
            out,
            "machine opens (an image proxy on delivery, e.g. Apple Mail Privacy Protection): {}, not counted",
            r.total.machine_opens
        );
    }
    out.push('\n');

    let _ = write!(out, "{:<LABEL$}", "");
    for (name, _) in &columns {
        let _ = write!(out, "{name:>8}{:width$}", "", width = COLUMN - 8);
    }
    out.push('\n');
    for metric in COUNTS {
        let _ = write!(out, "{metric:<LABEL$}");
        for (_, c) in &columns {
            let rate = c
                .rates
                .get(metric)
                .map(|r| format!("{:.1}%", r * 100.0))
                .unwrap_or_default();
            let _ = write!(out, "{:>8} {rate:>6} ", c.counts.get(metric));
        }
        out.push('\n');
    }
    let rows: [(&str, Cell); 4] = [
        ("opens (all)", |c| c.events.opens.to_string()),
        ("clicks (all)", |c| c.events.clicks.to_string()),
        ("1st reaction, median", |c| {
            c.time_to_first_reaction
                .median_seconds
                .map(duration)
                .unwrap_or_else(|| "-".into())
        }),
        ("  of jobs", |c| c.time_to_first_reaction.jobs.to_string()),
    ];
    for (label, value) in rows {
        let _ = write!(out, "{label:<LABEL$}");
        for (_, c) in &columns {
            let _ = write!(out, "{:>8}{:width$}", value(c), "", width = COLUMN - 8);
        }
        out.push('\n');
    }

    line_rows(&mut out, r, &columns);

    for (name, c) in &columns {
        if c.top_links.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "\ntop links, {name}\n{:>9} {:>8}  url",
            "clickers", "clicks"
        );
        for l in &c.top_links {
            let _ = writeln!(out, "{:>9} {:>8}  {}", l.clickers, l.clicks, l.url);
        }
    }

    if columns.iter().any(|(_, c)| !c.best_hours.is_empty()) {
        let _ = writeln!(
            out,
            "\nbest hours ({}), jobs that reacted in the hour",
            r.timezone
        );
        for (name, c) in &columns {
            if c.best_hours.is_empty() {
                continue;
            }
            let hours: Vec<String> = c
                .best_hours
                .iter()
                .map(|h| format!("{:02}:00 {}", h.hour, h.jobs))
                .collect();
            let _ = writeln!(out, "{name:<8} {}", hours.join(", "));
        }
    }

    if r.unattributed.events > 0 {
        let parts: Vec<String> = r
            .unattributed
            .by_channel
            .iter()
            .map(|(ch, types)| {
                let t: Vec<String> = types.iter().map(|(k, n)| format!("{k} {n}")).collect();
                format!("{ch}: {}", t.join(", "))
            })
            .collect();
        let _ = writeln!(
            out,
            "\nnot attributable (events without a job, any campaign, since this one's first event): {}",
            parts.join("; ")
        );
    }
    let mut trimmed: String = out
        .lines()
        .map(|l| l.trim_end())
        .collect::<Vec<_>>()
        .join("\n");
    trimmed.push('\n');
    trimmed
}

/// LINE's own figures (`line_stats`): rows in the LINE column, marked, and
/// each day's figures with its clicks per URL.
fn line_rows(out: &mut String, r: &Report, columns: &[(&'static str, &ChannelReport)]) {
    use super::line_stats::{total, LineStatsDay};
    let days = &r.line_stats;
    if days.is_empty() {
        return;
    }
    let shown = |n: Option<u64>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
    type Figure = fn(&LineStatsDay) -> Option<u64>;
    let rows: [(&str, Figure); 3] = [
        ("LINE* unique opens", LineStatsDay::unique_opens),
        ("LINE* unique clicks", LineStatsDay::unique_clicks),
        ("LINE* impressions", LineStatsDay::impressions),
    ];
    for (label, figure) in rows {
        let _ = write!(out, "{label:<LABEL$}");
        for (name, _) in columns {
            let value = if *name == "line" {
                shown(total(days, figure))
            } else {
                String::new()
            };
            let _ = write!(out, "{value:>8}{:width$}", "", width = COLUMN - 8);
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "* LINE's aggregate figures (its per-unit statistics, not counted from events), summed over {} day(s); \"-\": LINE gave none",
        days.len()
    );
    let _ = writeln!(
        out,
        "\nLINE's aggregate figures per day (UTC+9)\n{:<12} {:>12} {:>13} {:>11}  fetched",
        "day", "unique opens", "unique clicks", "impressions"
    );
    for d in days {
        let _ = writeln!(
            out,
            "{:<12} {:>12} {:>13} {:>11}  {}",
            d.day,
            shown(d.unique_opens()),
            shown(d.unique_clicks()),
            shown(d.impressions()),
            d.fetched_at
        );
    }
    let clicks: Vec<(&str, &serde_json::Value)> = days
        .iter()
        .flat_map(|d| {
            d.clicks
                .as_array()
                .into_iter()
                .flatten()
                .map(move |c| (d.day.as_str(), c))
        })
        .collect();
    if !clicks.is_empty() {
        let _ = writeln!(
            out,
            "\nLINE's clicks per URL\n{:<12} {:>4} {:>8} {:>8}  url",
            "day", "seq", "clicks", "users"
        );
        for (day, c) in clicks {
            let n = |k: &str| shown(c.get(k).and_then(serde_json::Value::as_u64));
            let _ = writeln!(
                out,
                "{day:<12} {:>4} {:>8} {:>8}  {}",
                n("seq"),
                n("click"),
                n("uniqueClick"),
                c.get("url")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("")
            );
        }
    }
}

/// The channels that saw anything, then the total.
pub fn columns(r: &Report) -> Vec<(&'static str, &ChannelReport)> {
    let mut v: Vec<_> = r.channels.iter().filter(|(_, c)| !c.is_empty()).collect();
    v.push(("total", &r.total));
    v
}

/// "from – to" of the campaign's events in local time.
pub fn span(r: &Report, tz: &TimeZone) -> Option<String> {
    let local = |s: &Option<String>| {
        s.as_deref()
            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
            .map(|t| {
                t.to_zoned(tz.clone())
                    .strftime("%Y-%m-%d %H:%M")
                    .to_string()
            })
    };
    Some(format!(
        "{} – {}",
        local(&r.first_event_at)?,
        local(&r.last_event_at)?
    ))
}

/// 42.5s, 3m 12s, 2h 05m, 3d 4h.
pub fn duration(secs: f64) -> String {
    let s = secs.round() as i64;
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h {:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}d {}h", s / 86_400, s % 86_400 / 3600)
    }
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(4.3), "4.3s");
        assert_eq!(duration(192.0), "3m 12s");
        assert_eq!(duration(7500.0), "2h 05m");
        assert_eq!(duration(273_600.0), "3d 4h");
    }
}
