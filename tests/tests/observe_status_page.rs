//! The status page at `/`, in Debian's headless Chromium: it loads its
//! numbers from the admin API with the token from the address, shows the
//! connection count and the last deny, and a screenshot is saved
//! (`target/e2e-screenshots/status-page.png`) (issue 13).

use std::path::PathBuf;
use std::process::Command;

use warden_e2e::broker::ADMIN_TOKEN;
use warden_e2e::*;

fn chromium(args: &[&str], profile: &std::path::Path) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-extensions",
            "--no-first-run",
            "--hide-scrollbars",
            // Lets the page's fetch and timers run before the dump.
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("run chromium (scripts/install-test-deps installs it)")
}

#[tokio::test]
async fn the_status_page_shows_connections_and_the_last_deny() {
    let broker = TestBroker::start(BrokerOptions {
        metrics: true,
        ..BrokerOptions::default()
    });
    broker.user_with_rights("carol", "pw", "allowed/#").await;
    let mut c = broker
        .login(Version::V5, &client_id("page"), "carol", "pw")
        .await;
    assert_eq!(c.subscribe("forbidden/page-topic", 0).await, 0x87);

    let url = format!("http://{}/#token={ADMIN_TOKEN}", broker.addr("metrics"));
    let profile = broker.dir.path().join("chromium");
    let dump = tokio::task::spawn_blocking({
        let (url, profile) = (url.clone(), profile.clone());
        move || chromium(&["--dump-dom", &url], &profile)
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dom.contains("forbidden/page-topic"),
        "the last deny is not on the page:\n{dom}\n{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    assert!(dom.contains("id=\"connections\">1<"), "{dom}");
    assert!(dom.contains("carol"), "{dom}");
    assert!(
        dom.contains("<p id=\"error\"></p>"),
        "an error is shown: {dom}"
    );

    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join("status-page.png");
    let _ = std::fs::remove_file(&png);
    let shot = tokio::task::spawn_blocking({
        let png = png.clone();
        move || {
            chromium(
                &[
                    &format!("--screenshot={}", png.display()),
                    "--window-size=900,700",
                    &url,
                ],
                &profile,
            )
        }
    })
    .await
    .unwrap();
    let meta = std::fs::metadata(&png).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&shot.stderr)
        )
    });
    assert!(meta.len() > 1000, "screenshot of {} bytes", meta.len());
    let head = std::fs::read(&png).unwrap();
    assert_eq!(&head[..8], b"\x89PNG\r\n\x1a\n");
    // Still connected while the page looked.
    c.disconnect().await;
}
