//! The TRANSACTION state's commands (RFC 1939 §5, §7): STAT, LIST, UIDL,
//! RETR, TOP, DELE, RSET, each on the session's fixed maildrop. Sizes are
//! those of the bytes RETR sends ([`super::maildrop`]); messages marked
//! deleted are left out of STAT and multi-line LIST/UIDL and refused by
//! number (RFC 1939 §5).
//!
//! Costs in Graph requests: UIDL none; STAT, LIST one `$batch` of 20 per
//! message never fetched before (sizes are of the bytes served, and Graph
//! does not give them without the bytes), nothing for the others; RETR
//! and TOP nothing once the size is known (the bytes are in the cache), else
//! one `$value`; DELE, RSET none (UPDATE at QUIT does the deleting).

use tokio::io::AsyncWriteExt as _;

use super::body::Stuffer;
use super::maildrop::Maildrop;
use super::protocol::Command;
use super::server::Out;
use super::session::{Next, stream_file};

type IoResult = std::io::Result<Next>;

async fn line(out: &mut Out, text: String) -> IoResult {
    out.write_all(text.as_bytes()).await?;
    Ok(Next::Continue)
}

fn refusal(text: &str) -> String {
    format!("-ERR {text}\r\n")
}

/// The indexes of the messages not marked deleted and not gone.
fn live(drop: &Maildrop) -> Vec<usize> {
    drop.entries
        .iter()
        .enumerate()
        .filter(|(_, e)| !e.deleted && !e.gone)
        .map(|(i, _)| i)
        .collect()
}

pub async fn handle(drop: &mut Maildrop, command: Command, out: &mut Out) -> IoResult {
    match command {
        Command::Stat => {
            if let Err(e) = drop.ensure_sizes(&live(drop)).await {
                return line(out, refusal(&e)).await;
            }
            let live = live(drop);
            let octets: u64 = live
                .iter()
                .filter_map(|&i| drop.entries.get(i))
                .map(Maildrop::size)
                .sum();
            line(out, format!("+OK {} {octets}\r\n", live.len())).await
        }
        Command::List(Some(n)) => {
            if let Err(e) = drop.get(n) {
                return line(out, refusal(&e)).await;
            }
            if let Err(e) = drop.ensure_sizes(&[n as usize - 1]).await {
                return line(out, refusal(&e)).await;
            }
            match drop.get(n) {
                Ok(entry) => line(out, format!("+OK {n} {}\r\n", Maildrop::size(entry))).await,
                Err(e) => line(out, refusal(&e)).await,
            }
        }
        Command::List(None) => {
            if let Err(e) = drop.ensure_sizes(&live(drop)).await {
                return line(out, refusal(&e)).await;
            }
            let live = live(drop);
            let mut text = format!("+OK {} message(s)\r\n", live.len());
            for i in live {
                if let Some(entry) = drop.entries.get(i) {
                    text.push_str(&format!("{} {}\r\n", i + 1, Maildrop::size(entry)));
                }
            }
            text.push_str(".\r\n");
            line(out, text).await
        }
        Command::Uidl(Some(n)) => match drop.get(n) {
            Ok(entry) => {
                line(
                    out,
                    format!("+OK {n} {}\r\n", entry.unique_id(&drop.folder)),
                )
                .await
            }
            Err(e) => line(out, refusal(&e)).await,
        },
        Command::Uidl(None) => {
            let mut text = String::from("+OK unique-id listing follows\r\n");
            for i in live(drop) {
                if let Some(entry) = drop.entries.get(i) {
                    text.push_str(&format!("{} {}\r\n", i + 1, entry.unique_id(&drop.folder)));
                }
            }
            text.push_str(".\r\n");
            line(out, text).await
        }
        Command::Retr(n) => send(drop, n, None, out).await,
        Command::Top(n, lines) => send(drop, n, Some(lines), out).await,
        Command::Dele(n) => match drop.get_mut(n) {
            Ok(entry) => {
                entry.deleted = true;
                line(out, format!("+OK message {n} deleted (at QUIT)\r\n")).await
            }
            Err(e) => line(out, refusal(&e)).await,
        },
        Command::Rset => {
            for entry in &mut drop.entries {
                entry.deleted = false;
            }
            let n = live(drop).len();
            line(out, format!("+OK maildrop has {n} message(s)\r\n")).await
        }
        other => line(out, refusal(&format!("{} is not valid now", other.name()))).await,
    }
}

/// RETR (`top` None) or TOP: `+OK`, the bytes, streamed from the cache.
async fn send(drop: &mut Maildrop, n: u32, top: Option<u32>, out: &mut Out) -> IoResult {
    let (path, size) = match drop.content_file(n).await {
        Ok(found) => found,
        Err(e) => return line(out, refusal(&e)).await,
    };
    // Opened before the +OK: once open, the bytes stay readable even if
    // the cache evicts the file meanwhile.
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => {
            return line(
                out,
                refusal(&format!(
                    "[SYS/TEMP] cannot read message {n} from the message cache: {e}; try again"
                )),
            )
            .await;
        }
    };
    let stuffer = match top {
        None => {
            out.write_all(format!("+OK {size} octets\r\n").as_bytes())
                .await?;
            Stuffer::whole()
        }
        Some(lines) => {
            out.write_all(b"+OK top of message follows\r\n").await?;
            Stuffer::top(Some(lines))
        }
    };
    stream_file(file, stuffer, out).await?;
    Ok(Next::Continue)
}
