//! The `render` fuzz target: a job's content through the templates and the tracker,
//! as the worker does.

use super::*;

struct RenderKit {
    renderer: Renderer,
    channels: Channels,
    encoder: EmailEncoder,
}

thread_local! {
    static RENDER: RenderKit = render_kit();
}

fn render_kit() -> RenderKit {
    // Fuel as a config would set it, low enough that a runaway loop ends quickly.
    let mut renderer = Renderer::empty(Some(20_000));
    let fz = vec![
        ("subject.txt", "{{ v }}".to_owned()),
        (
            "email.html",
            "<html><body><p>{{ v }}</p><a href=\"https://shop.example.com/p?id={{ job.id }}\">shop</a>\
             <a href=\"{{ unsubscribe_url }}\">stop</a></body></html>"
                .to_owned(),
        ),
        ("sms.txt", "{{ v }}".to_owned()),
        (
            "line.json",
            r#"[{"type":"text","text":"{{ v }}"},{"type":"template","altText":"a","template":{"type":"buttons","text":"{{ v }}","actions":[{"type":"uri","label":"l","uri":"https://shop.example.com/{{ job.id }}"}]}}]"#
                .to_owned(),
        ),
        ("dm.json", r#"{"message1":"{{ v }}"}"#.to_owned()),
    ];
    renderer.add_set("fz", fz).expect("the fuzz template loads");
    let text = vec![
        ("subject.txt", "s".to_owned()),
        (
            "email.txt",
            "{{ v }} https://shop.example.com/x {{ unsubscribe_url }}".to_owned(),
        ),
    ];
    renderer
        .add_set("text", text)
        .expect("the fuzz template loads");
    RenderKit {
        renderer,
        channels: channels(TWILIO_SMS),
        encoder: EmailEncoder::new("Example Shop <news@example.com>", None).expect("a valid From"),
    }
}

pub fn render(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    // Smaller than the daemon's limit: each render may be slow in a debug build.
    let Ok(job) = registry::parse_job(&raw, 16 * 1024) else {
        return;
    };
    RENDER.with(|kit| {
        let cx = Compose {
            renderer: &kit.renderer,
            tracker: kit.channels.tracker.as_deref(),
        };
        let compose = |id: ChannelId| {
            kit.channels
                .get(id)
                .expect("every channel is enabled")
                .compose(&job, &cx)
        };
        let email = tayori::channel::email::ID;
        if let Ok((content, _)) = compose(email) {
            let message = message_for(&job, email, content);
            if let Ok(eml) = kit.encoder.encode(&message) {
                check_mail(&eml);
            }
        }
        let _ = compose(tayori::channel::line::ID);
        let _ = compose(tayori::channel::dm::ID);
        // Variables are data: `{{ v }}` prints v exactly, whatever it contains.
        let sms = compose(tayori::channel::sms::ID).map(|(content, _)| content);
        if job.template.as_deref() == Some("fz") {
            if let Some(Value::String(v)) = job.vars.get("v") {
                match sms {
                    Ok(Content::Sms { text }) => assert_eq!(text, v.trim_end()),
                    other => panic!("{{{{ v }}}} with a string v did not render: {other:?}"),
                }
            }
        }
    });
}

fn message_for(job: &Job, kind: ChannelId, content: Content) -> Message {
    Message {
        job_id: job.id.clone(),
        attempt: 1,
        idempotency_key: format!("{}/{kind}", job.id),
        campaign: job.campaign.clone(),
        customer_id: job.customer_id.clone(),
        to: registry::plugin(kind)
            .map(|p| p.recipient(&job.to))
            .unwrap_or_default(),
        content,
    }
}
