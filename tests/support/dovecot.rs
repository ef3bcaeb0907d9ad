//! A Dovecot of our own, the reference IMAP server of the MIME comparison
//! (`tests/mime_imap.rs`) and of the warm-FETCH benchmark
//! (`benches/imap.rs`): config, Maildir and log in a temporary directory,
//! listening on a free loopback port, stopped when dropped. Needs Debian's
//! `dovecot-imapd` (the test command installs it); no root needed, and as
//! root the whole server runs as `nobody` (Dovecot refuses to run its login
//! processes as root).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Dovecot {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// The installed Dovecot, if any.
pub fn dovecot_binary() -> Option<PathBuf> {
    ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn id(args: &[&str]) -> String {
    let out = Command::new("id").args(args).output().expect("id");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn chown_all(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    if path.is_dir() {
        for e in std::fs::read_dir(path).expect("read_dir") {
            chown_all(&e.expect("entry").path(), uid, gid);
        }
    }
}

impl Dovecot {
    /// Dovecot with `messages` in its INBOX (a Maildir written here; any
    /// user and password log in).
    pub fn start(binary: &Path, messages: &[Vec<u8>]) -> Dovecot {
        let dir = tempfile::tempdir().expect("temp dir");
        let cur = dir.path().join("mail/cur");
        std::fs::create_dir_all(&cur).expect("maildir");
        std::fs::create_dir_all(dir.path().join("mail/new")).expect("maildir");
        std::fs::create_dir_all(dir.path().join("mail/tmp")).expect("maildir");
        for (i, m) in messages.iter().enumerate() {
            let name = format!("{}.M{i}P1.graphgate,S={}:2,", 1_780_000_000 + i, m.len());
            std::fs::write(cur.join(name), m).expect("message file");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let as_root = id(&["-u"]) == "0";
        let user = if as_root {
            "nobody".to_string()
        } else {
            id(&["-un"])
        };
        let uid = id(&["-u", &user]);
        let gid = id(&["-g", &user]);
        let group = id(&["-gn", &user]);
        let d = dir.path().display();
        let config = format!(
            "base_dir = {d}/run\n\
             state_dir = {d}/state\n\
             log_path = {d}/dovecot.log\n\
             info_log_path = {d}/dovecot.log\n\
             protocols = imap\n\
             listen = 127.0.0.1\n\
             ssl = no\n\
             disable_plaintext_auth = no\n\
             auth_mechanisms = plain\n\
             default_internal_user = {user}\n\
             default_internal_group = {group}\n\
             default_login_user = {user}\n\
             first_valid_uid = 1\n\
             mail_location = maildir:{d}/mail\n\
             passdb {{\n  driver = static\n  args = password=x\n}}\n\
             userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={d}/home\n}}\n\
             service imap-login {{\n  chroot =\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n"
        );
        let conf = dir.path().join("dovecot.conf");
        std::fs::write(&conf, config).expect("config");
        let mut cmd = if as_root {
            let (u, g): (u32, u32) = (uid.parse().expect("uid"), gid.parse().expect("gid"));
            chown_all(dir.path(), u, g);
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg(binary);
            c
        } else {
            Command::new(binary)
        };
        let child = cmd
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dovecot");
        let dovecot = Dovecot { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "dovecot did not start; its log:\n{}",
                dovecot.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        dovecot
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its own children.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
