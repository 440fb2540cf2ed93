//! Secrets from files: `${file:PATH}` and `VAR_FILE`, read by the real binary
//! (`tayori check-config --connect` authenticates to a redis-server that
//! requires the password), and a file that cannot be read named in the error.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

const PASSWORD: &str = "pw-from-a-secret-file";

/// A config in a fresh directory (its `secrets/` holds the files), with `body`
/// after `[redis]`'s url and the test templates.
fn config(redis: &Redis, body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("secrets")).expect("secrets dir");
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/templates");
    let text = format!(
        "[redis]\nurl = \"{url}\"\nprefix = \"secrets\"\n{body}\n\n[templates]\ndir = \"{templates}\"\n",
        url = redis.url(),
        templates = templates.display(),
    );
    let path = dir.path().join("tayori.toml");
    std::fs::write(&path, text).expect("write config");
    (dir, path)
}

fn check_config(config: &Path, env: &[(&str, &Path)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tayori"));
    cmd.arg("-c")
        .arg(config)
        .args(["check-config", "--connect"])
        .env_remove("TAYORI_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run tayori check-config")
}

/// A redis-server that takes only [`PASSWORD`].
fn redis_with_password() -> Redis {
    let redis = Redis::start();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(PASSWORD)
        .query::<()>(&mut redis.conn())
        .expect("CONFIG SET requirepass");
    redis
}

#[test]
fn secrets_from_files_authenticate_without_their_trailing_newline() {
    let redis = redis_with_password();
    let (dir, cfg) = config(
        &redis,
        "password = \"${file:secrets/redis_password}\"\n\n[http]\ntracking_secret = \"${TRACKING_SECRET}\"",
    );
    // As `docker secret` and `kubectl create secret --from-file` write them: with a newline.
    std::fs::write(
        dir.path().join("secrets/redis_password"),
        format!("{PASSWORD}\n"),
    )
    .unwrap();
    let tracking = dir.path().join("secrets/tracking");
    std::fs::write(&tracking, "0123456789abcdef0123456789abcdef\n").unwrap();

    let out = check_config(&cfg, &[("TRACKING_SECRET_FILE", &tracking)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("connected: primary, authenticated"),
        "{stdout}"
    );
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));

    // The same with the newline kept would be another password: Redis refuses it.
    std::fs::write(
        dir.path().join("secrets/redis_password"),
        format!("{PASSWORD}x\n"),
    )
    .unwrap();
    let out = check_config(&cfg, &[("TRACKING_SECRET_FILE", &tracking)]);
    assert_ne!(out.status.code(), Some(0), "a wrong password must not pass");
}

#[test]
fn a_secret_file_that_is_missing_is_named_with_the_key_and_its_content_never_shown() {
    let redis = Redis::start();
    for (body, key, path_shown, env) in [
        (
            "[channels.line]\nchannel_secret = \"${file:/run/secrets/tayori-test-missing}\"\n",
            "channels.line.channel_secret",
            "/run/secrets/tayori-test-missing",
            None,
        ),
        (
            "[http]\ntracking_secret = \"${TRACKING_SECRET}\"\n",
            "http.tracking_secret",
            "(from TRACKING_SECRET_FILE)",
            Some("TRACKING_SECRET_FILE"),
        ),
    ] {
        let (dir, cfg) = config(&redis, body);
        let gone = dir.path().join("secrets/gone");
        let env: Vec<(&str, &Path)> = env.map(|k| (k, gone.as_path())).into_iter().collect();
        let out = check_config(&cfg, &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        for part in [
            &cfg.display().to_string(),
            &format!("key `{key}`"),
            "cannot read secret file",
            path_shown,
            "No such file or directory",
            "mount the secret there, fix the path",
        ] {
            assert!(stderr.contains(part), "{part:?} in {stderr}");
        }
        if !env.is_empty() {
            assert!(stderr.contains(&gone.display().to_string()), "{stderr}");
        }
    }
}
