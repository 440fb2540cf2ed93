//! `--html FILE`: the report as one self-contained page for a marketer's browser —
//! inline CSS and inline SVG bar charts, no script and no external resource, so it
//! opens offline and can be mailed around.
//!
//! Every number drawn is also written out: each bar carries `data-channel`,
//! `data-metric` (or `data-hour`) and `data-value`, and a `<text>` label with the
//! number, so a reader (or a test) can check the chart against the table.

use std::fmt::Write as _;

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use jiff::tz::TimeZone;

use super::summary::{ChannelReport, Report, COUNTS};
use super::table::{columns, duration, span, Cell};

/// The counts drawn as bars, in order.
const CHARTED: [&str; 10] = [
    "sent",
    "delivered",
    "opened",
    "clicked",
    "replied",
    "bounced",
    "blocked",
    "unsubscribed",
    "complained",
    "failed",
];

const STYLE: &str = r#"
:root { color-scheme: light; --ink: #1d2433; --muted: #667085; --line: #e4e7ec; --bar: #3e6ae1; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "Hiragino Sans", "Noto Sans JP", sans-serif;
       color: var(--ink); margin: 0 auto; padding: 24px; max-width: 1100px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 32px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 14px; margin: 16px 0 4px; }
p.meta, p.note { color: var(--muted); margin: 2px 0; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: right; }
th:first-child, td.url { text-align: left; }
thead th { font-weight: 600; background: #f8f9fb; }
td .rate { color: var(--muted); font-size: 12px; margin-left: 6px; }
td.url { font-family: ui-monospace, monospace; font-size: 12px; word-break: break-all; }
.charts { display: flex; flex-wrap: wrap; gap: 16px 32px; }
figure { margin: 0; }
figcaption { font-weight: 600; margin-bottom: 4px; }
svg text { font: 12px system-ui, sans-serif; fill: var(--ink); }
svg text.metric { fill: var(--muted); }
svg rect.bar { fill: var(--bar); }
svg rect.bar.opened, svg rect.bar.clicked, svg rect.bar.replied { fill: #12b76a; }
svg rect.bar.bounced, svg rect.bar.blocked, svg rect.bar.unsubscribed, svg rect.bar.complained, svg rect.bar.failed { fill: #f04438; }
svg rect.hour { fill: var(--bar); }
svg line.axis { stroke: var(--line); }
"#;

/// The page.
pub fn render(r: &Report, tz: &TimeZone) -> String {
    let mut out = String::with_capacity(32 * 1024);
    let columns = columns(r);
    let title = format!("Campaign {} — Tayori report", r.campaign);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        text(&title)
    );
    let _ = writeln!(
        out,
        "<h1>Campaign <span id=\"campaign\">{}</span></h1>",
        text(&r.campaign)
    );
    let _ = writeln!(
        out,
        "<p class=\"meta\"><span id=\"events\">{}</span> events{}. Generated {}.</p>",
        r.stream.events,
        span(r, tz)
            .map(|s| format!(", {} ({})", text(&s), text(&r.timezone)))
            .unwrap_or_default(),
        text(&r.generated_at)
    );
    let bots = &r.total.suspected_bots;
    let _ = writeln!(
        out,
        "<p class=\"note\">Counts are jobs (a message opened five times counts once); rates are \
         over sent. Reactions that looked automated (link scanners, prefetches): {} opens, {} \
         clicks, {}. Machine opens (an image proxy on delivery, e.g. Apple Mail Privacy \
         Protection): {}, not counted.</p>",
        bots.opens,
        bots.clicks,
        if r.include_bots {
            "counted"
        } else {
            "not counted"
        },
        r.total.machine_opens
    );

    summary_table(&mut out, &columns);

    out.push_str("<h2>By channel</h2>\n<div class=\"charts\">\n");
    for (name, c) in &columns {
        counts_chart(&mut out, name, c);
    }
    out.push_str("</div>\n");

    let _ = writeln!(
        out,
        "<h2>When people reacted</h2>\n<p class=\"note\">Jobs whose recipient opened, clicked \
         or replied in each hour of the day ({}).</p>\n<div class=\"charts\">",
        text(&r.timezone)
    );
    for (name, c) in &columns {
        if c.hours.iter().any(|n| *n > 0) {
            hours_chart(&mut out, name, c);
        }
    }
    out.push_str("</div>\n");

    if columns.iter().any(|(_, c)| !c.top_links.is_empty()) {
        out.push_str("<h2>Top links</h2>\n");
        for (name, c) in &columns {
            links_table(&mut out, name, c);
        }
    }

    line_stats_table(&mut out, &r.line_stats);

    if r.unattributed.events > 0 {
        out.push_str(
            "<h2>Not attributable</h2>\n<p class=\"note\">Events without a job (a LINE block or \
             reply, an SMS reply or STOP) cannot be tied to any campaign; these arrived after \
             this campaign's first event:</p>\n<table id=\"unattributed\"><tbody>\n",
        );
        for (ch, types) in &r.unattributed.by_channel {
            for (kind, n) in types {
                let _ = writeln!(
                    out,
                    "<tr><th>{ch} {kind}</th><td data-channel=\"{ch}\" data-metric=\"{kind}\" \
                     data-value=\"{n}\">{n}</td></tr>"
                );
            }
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// LINE's own per-unit statistics, per day: marked as LINE's aggregate figures.
fn line_stats_table(out: &mut String, days: &[super::line_stats::LineStatsDay]) {
    if days.is_empty() {
        return;
    }
    let shown = |n: Option<u64>| n.map_or_else(|| "–".to_owned(), |n| n.to_string());
    out.push_str(
        "<h2>LINE's aggregate figures</h2>\n<p class=\"note\">LINE's own per-unit statistics \
         of the campaign (not counted from events), the latest fetch of each day (UTC+9); \
         – where LINE gave none.</p>\n<table id=\"line-stats\"><thead><tr><th>day</th>\
         <th>unique opens</th><th>unique clicks</th><th>impressions</th><th>clicks per URL</th>\
         </tr></thead><tbody>\n",
    );
    for d in days {
        let clicks: Vec<String> = d
            .clicks
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let n = |k: &str| shown(c.get(k).and_then(serde_json::Value::as_u64));
                format!(
                    "{} ({} clicks, {} users)",
                    text(
                        c.get("url")
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or("")
                    ),
                    n("click"),
                    n("uniqueClick")
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            text(&d.day),
            shown(d.unique_opens()),
            shown(d.unique_clicks()),
            shown(d.impressions()),
            clicks.join("<br>")
        );
    }
    out.push_str("</tbody></table>\n");
}

fn summary_table(out: &mut String, columns: &[(&'static str, &ChannelReport)]) {
    out.push_str("<h2>Summary</h2>\n<table id=\"counts\">\n<thead><tr><th></th>");
    for (name, _) in columns {
        let _ = write!(out, "<th data-channel=\"{name}\">{name}</th>");
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for metric in COUNTS {
        let _ = write!(out, "<tr data-metric=\"{metric}\"><th>{metric}</th>");
        for (name, c) in columns {
            let n = c.counts.get(metric);
            let rate = c
                .rates
                .get(metric)
                .map(|r| format!("<span class=\"rate\">{:.1}%</span>", r * 100.0))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<td data-channel=\"{name}\" data-metric=\"{metric}\" data-value=\"{n}\">\
                 <span class=\"n\">{n}</span>{rate}</td>"
            );
        }
        out.push_str("</tr>\n");
    }
    let extra: [(&str, &str, Cell); 3] = [
        ("opens", "opens (all)", |c| c.events.opens.to_string()),
        ("clicks", "clicks (all)", |c| c.events.clicks.to_string()),
        ("first_reaction", "first reaction, median", |c| {
            match c.time_to_first_reaction.median_seconds {
                Some(s) => {
                    let jobs = c.time_to_first_reaction.jobs;
                    let plural = if jobs == 1 { "" } else { "s" };
                    format!(
                        "{} <span class=\"rate\">{jobs} job{plural}</span>",
                        duration(s)
                    )
                }
                None => "–".into(),
            }
        }),
    ];
    for (key, label, value) in extra {
        let _ = write!(out, "<tr data-metric=\"{key}\"><th>{label}</th>");
        for (name, c) in columns {
            let _ = write!(out, "<td data-channel=\"{name}\">{}</td>", value(c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
}

/// Horizontal bars: one per charted count, scaled to the largest.
fn counts_chart(out: &mut String, name: &str, c: &ChannelReport) {
    const ROW: u32 = 24;
    const LABEL_W: u32 = 96;
    const BAR_W: u32 = 240;
    const WIDTH: u32 = LABEL_W + BAR_W + 100;
    let height = ROW * CHARTED.len() as u32 + 8;
    let max = CHARTED
        .iter()
        .map(|m| c.counts.get(m))
        .max()
        .unwrap_or(0)
        .max(1);
    let _ = writeln!(
        out,
        "<figure><figcaption>{name}</figcaption>\n<svg class=\"chart counts\" data-channel=\"{name}\" \
         width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" \
         aria-label=\"{name}: counts by outcome\">"
    );
    for (i, metric) in CHARTED.iter().enumerate() {
        let n = c.counts.get(metric);
        let y = 4 + ROW * i as u32;
        let w = ((n as f64 / max as f64) * f64::from(BAR_W)).round() as u32;
        let w = if n > 0 { w.max(2) } else { 0 };
        let rate = c
            .rates
            .get(metric)
            .map(|r| format!("({:.1}%)", r * 100.0))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<g class=\"bar\" data-channel=\"{name}\" data-metric=\"{metric}\" data-value=\"{n}\">\
             <text class=\"metric\" x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{metric}</text>\
             <rect class=\"bar {metric}\" x=\"{LABEL_W}\" y=\"{y}\" width=\"{w}\" height=\"{bh}\" \
             data-value=\"{n}\"></rect>\
             <text class=\"value\" x=\"{vx}\" y=\"{ty}\" data-value=\"{n}\">{n}</text>\
             <text class=\"rate metric\" x=\"{rx}\" y=\"{ty}\">{rate}</text></g>",
            lx = LABEL_W - 8,
            ty = y + 15,
            bh = ROW - 6,
            vx = LABEL_W + w + 6,
            rx = LABEL_W + w + 10 + 8 * digits(n),
        );
    }
    out.push_str("</svg></figure>\n");
}

/// 24 columns: jobs that reacted per local hour.
fn hours_chart(out: &mut String, name: &str, c: &ChannelReport) {
    const COL: u32 = 20;
    const TOP: u32 = 18;
    const PLOT_H: u32 = 120;
    const WIDTH: u32 = COL * 24 + 8;
    const HEIGHT: u32 = TOP + PLOT_H + 22;
    let max = c.hours.iter().copied().max().unwrap_or(0).max(1);
    let _ = writeln!(
        out,
        "<figure><figcaption>{name}</figcaption>\n<svg class=\"chart hours\" data-channel=\"{name}\" \
         width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-label=\"{name}: jobs that reacted by hour of the day\">\
         <line class=\"axis\" x1=\"4\" y1=\"{base}\" x2=\"{x2}\" y2=\"{base}\"></line>",
        base = TOP + PLOT_H,
        x2 = WIDTH - 4,
    );
    for (hour, &n) in c.hours.iter().enumerate() {
        let x = 4 + COL * hour as u32;
        let h = ((n as f64 / max as f64) * f64::from(PLOT_H)).round() as u32;
        let h = if n > 0 { h.max(2) } else { 0 };
        let y = TOP + PLOT_H - h;
        let label = if n > 0 {
            format!(
                "<text class=\"value\" x=\"{cx}\" y=\"{ly}\" text-anchor=\"middle\" \
                 data-value=\"{n}\">{n}</text>",
                cx = x + COL / 2,
                ly = y.saturating_sub(4).max(12),
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "<g class=\"bar\" data-channel=\"{name}\" data-hour=\"{hour}\" data-value=\"{n}\">\
             <rect class=\"hour\" x=\"{bx}\" y=\"{y}\" width=\"{bw}\" height=\"{h}\" data-value=\"{n}\"></rect>\
             {label}<text class=\"metric\" x=\"{cx}\" y=\"{ty}\" text-anchor=\"middle\">{hl}</text></g>",
            bx = x + 2,
            bw = COL - 4,
            cx = x + COL / 2,
            ty = TOP + PLOT_H + 16,
            hl = if hour % 3 == 0 {
                format!("{hour}")
            } else {
                String::new()
            },
        );
    }
    out.push_str("</svg></figure>\n");
}

fn links_table(out: &mut String, name: &str, c: &ChannelReport) {
    if c.top_links.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "<h3>{name}</h3>\n<table class=\"links\" data-channel=\"{name}\">\
         <thead><tr><th>link</th><th>clickers</th><th>clicks</th></tr></thead><tbody>"
    );
    for l in &c.top_links {
        let _ = writeln!(
            out,
            "<tr data-url=\"{}\"><td class=\"url\">{}</td><td data-metric=\"clickers\" \
             data-value=\"{n}\">{n}</td><td data-metric=\"clicks\" data-value=\"{k}\">{k}</td></tr>",
            attr(&l.url),
            text(&l.url),
            n = l.clickers,
            k = l.clicks,
        );
    }
    out.push_str("</tbody></table>\n");
}

fn digits(n: u64) -> u32 {
    n.checked_ilog10().unwrap_or(0) + 1
}
