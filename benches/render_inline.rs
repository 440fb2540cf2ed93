//! CPU per job of rendering inline email content (subject, text and HTML with
//! one link) through `Renderer::inline`, for many jobs sharing the same content:
//! the cost a campaign of inline jobs pays per job in the daemon's render step.
//! One thread, no Redis; the best of three rounds is reported (the machine is shared).
//!
//! `cargo bench --bench render_inline`; knob: `BENCH_JOBS` (100000).

use std::collections::BTreeMap;
use std::time::Instant;

use minijinja::Value;
use tayori::render::Renderer;

const SUBJECT: &str = "{{ name }}さん、冬のセールのお知らせ";
const TEXT: &str = "{{ name }}様\n\nいつもご利用ありがとうございます。\n冬のセールを開催中です: https://shop.example.com/sale?c={{ job.campaign }}\n\n配信停止: {{ unsubscribe_url }}\n";
const HTML: &str = "<html><body><p>{{ name }}様</p><p>いつもご利用ありがとうございます。冬のセールを開催中です。</p><p><a href=\"https://shop.example.com/sale?c={{ job.campaign }}\">セール会場へ</a></p><p><a href=\"{{ unsubscribe_url }}\">配信停止</a></p></body></html>";

fn context(i: usize) -> Value {
    let mut job = BTreeMap::new();
    job.insert("id", Value::from(format!("job-{i}")));
    job.insert("campaign", Value::from("winter-sale"));
    let mut map = BTreeMap::new();
    map.insert("name", Value::from(format!("顧客{i}")));
    map.insert("job", Value::from(job));
    map.insert(
        "unsubscribe_url",
        Value::from_safe_string(format!("https://t.example.com/u/{i}")),
    );
    Value::from(map)
}

fn main() {
    let jobs: usize = std::env::var("BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let renderer = Renderer::empty(None);
    let mut best = f64::MAX;
    for round in 1..=3 {
        let start = Instant::now();
        let mut bytes = 0usize;
        for i in 0..jobs {
            let ctx = context(i);
            for (what, source) in [
                ("content.email.subject", SUBJECT),
                ("content.email.text", TEXT),
                ("content.email.html", HTML),
            ] {
                let out = renderer.inline(what, source, &ctx).expect("renders");
                bytes += out.len();
            }
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / jobs as f64;
        println!("round {round}: {jobs} jobs, {us:.2} µs per job (subject + text + html), {bytes} bytes out");
        best = best.min(us);
    }
    println!("render_inline: best {best:.2} µs per job");
}
