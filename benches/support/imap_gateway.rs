//! What the IMAP benchmarks share (`benches/imap.rs`, `benches/imap_sort.rs`):
//! the deterministic test messages, an in-process gateway with one
//! account signed in through the simulator, and a raw-socket IMAP client
//! that reads until the tagged answer.

#![allow(dead_code)]

use graphgate::sim::tenant::{DEMO_PUBLIC_CLIENT_ID, DEMO_TENANT_ID};
use graphgate::store::{NewAccount, Store, StoreKey};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::sync::CancellationToken;

/// Message `i`, deterministic: mostly short text, every 7th a
/// multipart/alternative newsletter, every 25th with a small attachment.
pub fn message(i: usize) -> Vec<u8> {
    let day = 1 + i % 28;
    let mut m = format!(
        "Return-Path: <sender{s}@external.example>\r\n\
         Received: from mx{s}.external.example (mx{s}.external.example [192.0.2.{o}])\r\n\
         \tby mx.example.com with ESMTPS id {i:08x}; Mon, {day} Jun 2026 10:{mm:02}:00 +0000\r\n\
         From: \"Sender {s}\" <sender{s}@external.example>\r\n\
         To: Alice <alice@example.com>, bob@example.com\r\n\
         Cc: team{c}@example.com\r\n\
         Subject: =?UTF-8?Q?Status_r=C3=A9port?= number {i}\r\n\
         Date: Mon, {day} Jun 2026 10:{mm:02}:00 +0000\r\n\
         Message-ID: <m{i}.{s}@external.example>\r\n",
        s = i % 97,
        o = i % 250,
        c = i % 5,
        mm = i % 60,
    );
    if i > 0 && i.is_multiple_of(3) {
        m.push_str(&format!(
            "In-Reply-To: <m{p}.{ps}@external.example>\r\n",
            p = i - 1,
            ps = (i - 1) % 97
        ));
    }
    m.push_str("MIME-Version: 1.0\r\n");
    let text: String = (0..(3 + i % 20))
        .map(|l| {
            format!("Line {l} of message {i}: the quarterly numbers are attached as usual.\r\n")
        })
        .collect();
    if i.is_multiple_of(25) {
        let attachment: String = (0..60)
            .map(|l| format!("{:076}\r\n", l * 7 + i))
            .collect::<String>()
            .replace(|c: char| c.is_ascii_digit(), "Q");
        m.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"mix{i}\"\r\n\r\n\
             --mix{i}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\
             --mix{i}\r\nContent-Type: application/pdf; name=\"report{i}.pdf\"\r\n\
             Content-Disposition: attachment; filename=\"report{i}.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{attachment}--mix{i}--\r\n"
        ));
    } else if i.is_multiple_of(7) {
        m.push_str(&format!(
            "Content-Type: multipart/alternative; boundary=\"alt{i}\"\r\n\r\n\
             --alt{i}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n{text}\r\n\
             --alt{i}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
             <html><body><p>{text}</p></body></html>\r\n--alt{i}--\r\n"
        ));
    } else {
        m.push_str(&format!(
            "Content-Type: text/plain; charset=utf-8\r\n\r\n{text}"
        ));
    }
    m.into_bytes()
}

/// A gateway with a data dir of its own and one account (password `pw`),
/// stopped when dropped.
pub struct Gateway {
    pub imap: std::net::SocketAddr,
    stop: CancellationToken,
    _tasks: graphgate::gateway::listeners::Tasks,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Gateway {
    /// A gateway on the simulator at `sim_url`.
    pub async fn start(sim_url: &str, user: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = StoreKey::load(dir.path()).unwrap();
        let account = store
            .add_account(&NewAccount::delegated(user, "pw"))
            .unwrap();
        let tokens = graphgate::cli::sign_in_via_simulator(sim_url, user)
            .await
            .unwrap();
        graphgate::account::save_tokens(&store, &key, account.id, &tokens).unwrap();
        let mut config = graphgate::config::Config {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        config.microsoft.authority_url = sim_url.to_string();
        config.microsoft.graph_url = sim_url.to_string();
        config.microsoft.tenant = DEMO_TENANT_ID.into();
        config.microsoft.client_id = DEMO_PUBLIC_CLIENT_ID.into();
        config.smtp.listen = String::new();
        config.smtp.implicit_tls_listen = String::new();
        config.imap.implicit_tls_listen = String::new();
        config.pop3.listen = String::new();
        config.pop3.implicit_tls_listen = String::new();
        let stop = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        let gateway = graphgate::gateway::listeners::start(
            &config,
            &graphgate::gateway::Runtime::from_store(
                &config,
                store.clone(),
                graphgate::gateway::KeyMode::LoadOrCreate,
            )
            .unwrap(),
            graphgate::gateway::listeners::Listen {
                imap: Some("127.0.0.1:0".parse().unwrap()),
                ..Default::default()
            },
            &stop,
            &mut tasks,
        )
        .await
        .unwrap();
        Gateway {
            imap: gateway.imap.unwrap(),
            stop,
            _tasks: tasks,
            _dir: dir,
        }
    }
}

/// A raw-socket IMAP client: one command at a time, read until its tagged
/// answer, literals skipped (or kept).
pub struct Client {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    tag: u64,
}

impl Client {
    pub async fn connect(addr: std::net::SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (read, write) = stream.into_split();
        let mut c = Client {
            read: BufReader::with_capacity(64 * 1024, read),
            write,
            tag: 0,
        };
        let mut greeting = Vec::new();
        c.read.read_until(b'\n', &mut greeting).await.unwrap();
        assert!(greeting.starts_with(b"* OK"), "{greeting:?}");
        c
    }

    /// Send `command`; answer (untagged lines, literals if `keep`). Panics
    /// unless the tagged answer is OK.
    pub async fn run(&mut self, command: &str, keep: bool) -> (usize, Vec<Vec<u8>>) {
        self.tag += 1;
        let tag = format!("t{} ", self.tag);
        self.write
            .write_all(format!("{tag}{command}\r\n").as_bytes())
            .await
            .unwrap();
        let mut untagged = 0;
        let mut literals = Vec::new();
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = self.read.read_until(b'\n', &mut line).await.unwrap();
            assert!(n > 0, "connection closed during {command}");
            if let Some(len) = literal_len(&line) {
                let mut data = vec![0u8; len];
                self.read.read_exact(&mut data).await.unwrap();
                if keep {
                    literals.push(data);
                }
            }
            if line.starts_with(tag.as_bytes()) {
                assert!(
                    line[tag.len()..].starts_with(b"OK"),
                    "{command}: {}",
                    String::from_utf8_lossy(&line)
                );
                return (untagged, literals);
            }
            if line.starts_with(b"* ") {
                untagged += 1;
            }
        }
    }
}

/// `N` of a line ending in `{N}`.
fn literal_len(line: &[u8]) -> Option<usize> {
    let l = line.strip_suffix(b"\r\n").unwrap_or(line);
    let l = l.strip_suffix(b"}")?;
    let open = l.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&l[open + 1..]).ok()?.parse().ok()
}
