//! The network checks of `graphgate doctor`: each configured listener
//! (free, ours, another graphgate's, or someone else's) and the clock
//! against the Entra ID authority's `Date`.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Finding, Report, tls};
use crate::config::{Config, env_name};
use crate::spool::owner::{Holder, OwnerRole};

/// Each configured listener: free, or in use — by the gateway of this
/// data directory (fine), by another graphgate, or by something else.
pub(super) async fn check_ports(config: &Config, holder: Option<&Holder>, report: &mut Report) {
    let (smtp, smtps) = config.smtp_listen().unwrap_or_default();
    let (imap, imaps) = config.imap_listen().unwrap_or_default();
    let (pop3, pop3s) = config.pop3_listen().unwrap_or_default();
    let admin = config.admin_listen().unwrap_or_default();
    let listeners = [
        ("smtp.listen", smtp, Probe::Plain),
        ("smtp.implicit_tls_listen", smtps, Probe::Tls),
        ("imap.listen", imap, Probe::Plain),
        ("imap.implicit_tls_listen", imaps, Probe::Tls),
        ("pop3.listen", pop3, Probe::Plain),
        ("pop3.implicit_tls_listen", pop3s, Probe::Tls),
        ("admin.listen", admin, Probe::Http),
    ];
    let gateway_here = holder.is_some_and(|h| h.role == Some(OwnerRole::Gateway));
    for (key, addr, probe) in listeners {
        let Some(addr) = addr else { continue };
        let what = format!("listener {key}");
        let variable = env_name(key);
        match std::net::TcpListener::bind(addr) {
            Ok(listener) => {
                drop(listener);
                report.push(Finding::ok(what, format!("{addr} is free to listen on")));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                let answer = probe_listener(addr, probe).await;
                let is_graphgate = answer
                    .as_deref()
                    .is_some_and(|a| a.to_ascii_lowercase().contains("graphgate"));
                let shown = answer
                    .as_deref()
                    .map(|a| {
                        format!(
                            " (it answers {:?})",
                            a.chars().take(100).collect::<String>()
                        )
                    })
                    .unwrap_or_else(|| " (it sent no greeting)".to_string());
                match (is_graphgate, holder) {
                    (true, Some(h)) if gateway_here => report.push(Finding::ok(
                        what,
                        format!("{addr} is in use by {h} on this data directory{shown}"),
                    )),
                    (true, _) => report.push(Finding::warn(
                        what,
                        format!(
                            "{addr} is in use by another graphgate, not the one of this data \
                             directory{shown}"
                        ),
                        format!(
                            "stop that graphgate, or give this one another address ({key} / \
                             {variable})"
                        ),
                    )),
                    (false, _) => report.push(Finding::fail(
                        what,
                        format!("{addr} is in use by another program{shown}"),
                        format!(
                            "stop that program (`ss -ltnp 'sport = :{}'` names it), or choose \
                             another address ({key} / {variable})",
                            addr.port()
                        ),
                    )),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                report.push(Finding::fail(
                    what,
                    format!("not allowed to listen on {addr}: {e}"),
                    format!(
                        "use a port above 1023 ({key} / {variable}), or grant the binary \
                         CAP_NET_BIND_SERVICE (`setcap cap_net_bind_service=+ep $(which graphgate)`)"
                    ),
                ));
            }
            Err(e) => report.push(Finding::fail(
                what,
                format!("cannot listen on {addr}: {e}"),
                format!(
                    "use an address of this host ({key} / {variable}); 127.0.0.1 for local \
                     applications"
                ),
            )),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Probe {
    Plain,
    Tls,
    Http,
}

/// The first line a listener sends (its greeting), or for HTTP the
/// status line and a hint from `/metrics`.
async fn probe_listener(addr: SocketAddr, probe: Probe) -> Option<String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let limit = Duration::from_secs(3);
    let stream = tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let read_line = |stream| async move {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        tokio::time::timeout(limit, reader.read_line(&mut line))
            .await
            .ok()?
            .ok()?;
        Some(line.trim_end().to_string())
    };
    match probe {
        Probe::Plain => read_line(stream).await,
        Probe::Tls => {
            let tls = tokio::time::timeout(limit, tls::handshake_any(stream))
                .await
                .ok()??;
            let mut reader = BufReader::new(tls);
            let mut line = String::new();
            tokio::time::timeout(limit, reader.read_line(&mut line))
                .await
                .ok()?
                .ok()?;
            Some(line.trim_end().to_string())
        }
        Probe::Http => {
            let mut stream = stream;
            stream
                .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
                .await
                .ok()?;
            let mut body = Vec::new();
            let _ = tokio::time::timeout(
                limit,
                tokio::io::AsyncReadExt::read_to_end(
                    &mut tokio::io::AsyncReadExt::take(stream, 64 * 1024),
                    &mut body,
                ),
            )
            .await;
            let text = String::from_utf8_lossy(&body);
            let status = text.lines().next().unwrap_or_default().to_string();
            if text.contains("graphgate_") {
                Some(format!("{status} with graphgate metrics"))
            } else {
                Some(status)
            }
        }
    }
}

/// The local clock against the `Date` header of the Entra ID authority:
/// tokens and client assertions are refused outside about five minutes.
pub(super) async fn check_clock(config: &Config, report: &mut Report) {
    let what = "clock";
    let authority = config.microsoft.authority();
    let authority = authority.trim_end_matches('/');
    let url = format!(
        "{authority}/{}/v2.0/.well-known/openid-configuration",
        config.microsoft.tenant
    );
    let client = match crate::auth::http::default_http_client() {
        Ok(c) => c,
        Err(e) => {
            report.push(Finding::fail(what, e.to_string(), "report this as a bug"));
            return;
        }
    };
    let before = SystemTime::now();
    let response = tokio::time::timeout(Duration::from_secs(20), client.get(&url).send()).await;
    let after = SystemTime::now();
    let response = match response {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            report.push(Finding::fail(
                what,
                format!("cannot reach the Entra ID authority {authority}: {e}"),
                "check the network path to it (proxy, firewall, DNS) and microsoft.authority_url",
            ));
            return;
        }
        Err(_) => {
            report.push(Finding::fail(
                what,
                format!("the Entra ID authority {authority} did not answer within 20 s"),
                "check the network path to it (proxy, firewall, DNS) and microsoft.authority_url",
            ));
            return;
        }
    };
    let date = response
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|d| d.to_str().ok())
        .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok());
    let Some(date) = date else {
        report.push(Finding::warn(
            what,
            format!("{authority} sent no usable Date header; the skew is unknown"),
            "keep the clock synchronised (chrony, systemd-timesyncd or ntpd)",
        ));
        return;
    };
    let seconds = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    };
    let rtt = (seconds(after) - seconds(before)).max(0.0);
    let local = seconds(before) + rtt / 2.0;
    // Date has whole seconds: the server's time lies in [date, date + 1).
    let skew = date.timestamp() as f64 + 0.5 - local;
    let beyond_doubt = (skew.abs() - 0.5 - rtt / 2.0).max(0.0);
    let detail = format!("{skew:+.0} s against {authority} (its Date header)");
    let fix = "synchronise the clock (chrony, systemd-timesyncd or ntpd; in a container, the \
               host's clock): Entra ID refuses tokens and client assertions outside about 5 minutes";
    if beyond_doubt > 300.0 {
        report.push(Finding::fail(what, detail, fix));
    } else if beyond_doubt > 60.0 {
        report.push(Finding::warn(what, detail, fix));
    } else {
        report.push(Finding::ok(what, detail));
    }
}
