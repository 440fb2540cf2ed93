//! The `render` fuzz target: a job's content through the templates and the tracker,
//! as the worker does.

use super::*;

struct RenderKit {
    renderer: Renderer,
    tracker: Tracker,
    encoder: EmailEncoder,
}

thread_local! {
    static RENDER: RenderKit = render_kit();
}

fn render_kit() -> RenderKit {
    // Fuel as a config would set it, low enough that a runaway loop ends quickly.
    let mut renderer = Renderer::empty(Some(20_000));
    let fz = [
        ("subject.txt", Some("{{ v }}".to_owned())),
        (
            "email.html",
            Some(
                "<html><body><p>{{ v }}</p><a href=\"https://shop.example.com/p?id={{ job.id }}\">shop</a>\
                 <a href=\"{{ unsubscribe_url }}\">stop</a></body></html>"
                    .to_owned(),
            ),
        ),
        ("email.txt", None),
        ("sms.txt", Some("{{ v }}".to_owned())),
        (
            "line.json",
            Some(
                r#"[{"type":"text","text":"{{ v }}"},{"type":"template","altText":"a","template":{"type":"buttons","text":"{{ v }}","actions":[{"type":"uri","label":"l","uri":"https://shop.example.com/{{ job.id }}"}]}}]"#
                    .to_owned(),
            ),
        ),
        ("dm.json", Some(r#"{"message1":"{{ v }}"}"#.to_owned())),
    ];
    renderer.add_set("fz", fz).expect("the fuzz template loads");
    let text = [
        ("subject.txt", Some("s".to_owned())),
        ("email.html", None),
        (
            "email.txt",
            Some("{{ v }} https://shop.example.com/x {{ unsubscribe_url }}".to_owned()),
        ),
        ("sms.txt", None),
        ("line.json", None),
        ("dm.json", None),
    ];
    renderer
        .add_set("text", text)
        .expect("the fuzz template loads");
    RenderKit {
        renderer,
        tracker: tracker(),
        encoder: EmailEncoder::new("Example Shop <news@example.com>", None).expect("a valid From"),
    }
}

pub fn tracker() -> Tracker {
    Tracker::new(&TrackingSettings {
        secret: SECRET.to_owned(),
        public_url: PUBLIC_URL.to_owned(),
        opens: true,
        clicks: true,
        verp: Some("bounces@example.com".to_owned()),
        line_clicks: true,
        sms_clicks: true,
    })
    .expect("valid tracking settings")
}

pub fn render(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    // Smaller than the daemon's limit: each render may be slow in a debug build.
    let Ok(job) = Job::parse(&raw, 16 * 1024) else {
        return;
    };
    RENDER.with(|kit| {
        let r = &kit.renderer;
        if let Ok((content, _)) = kit.tracker.compose_email(r, &job) {
            let message = message_for(&job, ChannelKind::Email, content);
            if let Ok(eml) = kit.encoder.encode(&message) {
                check_mail(&eml);
            }
        }
        let _ = kit.tracker.compose_line(r, &job);
        let _ = kit.tracker.compose_sms(r, &job);
        let _ = r.render(&job, ChannelKind::Dm, None);
        // Variables are data: `{{ v }}` prints v exactly, whatever it contains.
        if job.template.as_deref() == Some("fz") {
            if let Some(Value::String(v)) = job.vars.get("v") {
                match r.render(&job, ChannelKind::Sms, None) {
                    Ok(Content::Sms { text }) => assert_eq!(text, v.trim_end()),
                    other => panic!("{{{{ v }}}} with a string v did not render: {other:?}"),
                }
            }
        }
    });
}

fn message_for(job: &Job, kind: ChannelKind, content: Content) -> Message {
    Message {
        job_id: job.id.clone(),
        attempt: 1,
        idempotency_key: format!("{}/{kind}", job.id),
        campaign: job.campaign.clone(),
        customer_id: job.customer_id.clone(),
        to: job.recipient(kind),
        content,
    }
}
