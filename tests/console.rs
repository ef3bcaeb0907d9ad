//! The web console (issue 21), driven in headless Chromium through
//! WebDriver (tests/console_browser.py: python3-selenium, Debian's
//! chromium and chromium-driver) against `graphgate demo`: the one-time
//! link, adding an account, "Sign in with Microsoft" through the
//! simulator's authorize page, the dashboard saying ONLINE, a send test
//! with read-back, a queued message retried and dropped, a form without
//! its CSRF token refused. Around it, over plain HTTP: no access without
//! a credential, the admin password through the login penalty, and no
//! secret in any page the browser saw.
//!
//! Without Chromium the test is skipped with a message — except under
//! CI=true, where it must run (scripts/test installs the packages).

mod support;

use std::process::{Command, Stdio};

use reqwest::StatusCode;
use reqwest::redirect::Policy;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether the browser tools are here; `false` (skip) only outside CI.
fn browser_available() -> bool {
    let selenium = Command::new(support::python())
        .args(["-c", "import selenium"])
        .status()
        .is_ok_and(|s| s.success());
    let chromium = ["/usr/bin/chromium", CHROMEDRIVER]
        .iter()
        .all(|p| std::path::Path::new(p).exists());
    if selenium && chromium {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but chromium, chromium-driver or python3-selenium is missing: scripts/test \
         installs them"
    );
    eprintln!(
        "SKIPPED tests/console.rs: chromium, chromium-driver or python3-selenium is not \
         installed (apt-get install chromium chromium-driver python3-selenium, or run \
         scripts/test)"
    );
    false
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// The value of `name="csrf"` in a page.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..at + 64].to_string()
}

fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or("").to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn console_in_a_real_browser() {
    if !browser_available() {
        return;
    }
    // A short login penalty, to see the console's password go through it.
    let demo = support::demo_env(&[
        ("GRAPHGATE_LOGIN_LIMIT_FREE_FAILURES", "1"),
        ("GRAPHGATE_LOGIN_LIMIT_DELAY_MS", "1"),
        ("GRAPHGATE_LOGIN_LIMIT_MAX_DELAY_S", "1"),
        ("GRAPHGATE_LOGIN_LIMIT_LOCKOUT_AFTER", "3"),
        ("GRAPHGATE_LOGIN_LIMIT_LOCKOUT_S", "600"),
    ]);
    let http = client();
    let admin = demo.admin.clone();
    let token = demo.console.split("token=").nth(1).unwrap().to_string();

    // No access without a credential: pages send to /login, forms are
    // refused, a wrong one-time token opens nothing (and does not use up
    // the real one).
    let r = http.get(format!("{admin}/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/login");
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    for page in ["/queue", "/accounts/new", "/doctor", "/send-test"] {
        let r = http.get(format!("{admin}{page}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{page}");
    }
    let r = http
        .post(format!("{admin}/accounts"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(support::form(&[
            ("login", "mallory"),
            ("password", "x"),
            ("csrf", "guess"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("not signed in"));
    let r = http
        .get(format!("{admin}/login?token={}", "0".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&r, "graphgate_console").is_none());

    // The browser part.
    let pages = tempfile::tempdir().unwrap();
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/console");
    std::fs::create_dir_all(&shots).unwrap();
    let password = "helpdesk-Pa55-9f3c1e";
    let out = Command::new(support::python())
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console_browser.py"))
        .args([
            demo.console.as_str(),
            admin.as_str(),
            demo.sim.as_str(),
            demo.smtp.as_str(),
        ])
        .arg(pages.path())
        .arg(&shots)
        .arg(password)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // No secret in any page the browser saw: the local password, the
    // one-time token, the demo's client secret, any JWT (access and ID
    // tokens start "eyJ").
    let mut seen = 0;
    for entry in std::fs::read_dir(pages.path()).unwrap() {
        let html = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        seen += 1;
        for secret in [
            password,
            token.as_str(),
            graphgate::sim::tenant::DEMO_CLIENT_SECRET,
            "eyJ",
        ] {
            assert!(!html.contains(secret), "a page shows {secret:?}:\n{html}");
        }
    }
    assert!(seen >= 10, "the browser saved {seen} pages");

    // The one-time link is used up; no password is set, so the console
    // says it is closed.
    let r = http
        .get(format!("{admin}/login?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("already used"));
    let r = http.get(format!("{admin}/login")).send().await.unwrap();
    assert!(r.text().await.unwrap().contains("The console is closed"));

    // `graphgate console passwd` opens it; the password goes through the
    // login penalty (a wrong one is 401, the right one signs in).
    let mut passwd = Command::new(support::BIN)
        .args(["console", "passwd", "--password-stdin", "--data-dir"])
        .arg(demo.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    passwd
        .stdin
        .take()
        .unwrap()
        .write_all(b"console-admin-pw\n")
        .unwrap();
    assert!(passwd.wait().unwrap().success());
    let login = http.get(format!("{admin}/login")).send().await.unwrap();
    let login_cookie = set_cookie(&login, "graphgate_console_login").unwrap();
    let form_token = csrf_of(&login.text().await.unwrap());
    let attempt = |password: &'static str| {
        http.post(format!("{admin}/login"))
            .header("cookie", &login_cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(support::form(&[
                ("csrf", form_token.as_str()),
                ("password", password),
            ]))
            .send()
    };
    let wrong = attempt("wrong").await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&wrong, "graphgate_console").is_none());
    let right = attempt("console-admin-pw").await.unwrap();
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    let session = set_cookie(&right, "graphgate_console").unwrap();
    let dashboard = http
        .get(format!("{admin}/"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(dashboard.contains("helpdesk"), "{dashboard}");
    assert!(!dashboard.contains("console-admin-pw"));
    // The login form without its double-submit token is refused.
    let r = http
        .post(format!("{admin}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(support::form(&[("password", "console-admin-pw")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The penalty of SMTP and IMAP: after lockout_after wrong passwords the
    // right one is refused too (429), with the sentence that says how long
    // and how to lift it.
    for _ in 0..3 {
        assert_eq!(
            attempt("wrong").await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let locked = attempt("console-admin-pw").await.unwrap();
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(set_cookie(&locked, "graphgate_console").is_none());
    let text = locked.text().await.unwrap();
    assert!(
        text.contains("Too many failed logins") && text.contains("accounts unlock"),
        "{text}"
    );
}
