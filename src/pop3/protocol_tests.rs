use super::*;

fn pass(p: &str) -> Command {
    Command::Pass(Secret::new(p.to_string()))
}

#[test]
fn commands_from_a_byte_table() {
    let table: &[(&[u8], Command)] = &[
        (b"CAPA", Command::Capa),
        (b"capa", Command::Capa),
        (b"StLs", Command::Stls),
        (
            b"USER alice@example.com",
            Command::User("alice@example.com".into()),
        ),
        (b"PASS secret", pass("secret")),
        // RFC 1939 §7: the password is the rest of the line.
        (b"PASS two words ", pass("two words ")),
        (b"AUTH", Command::AuthList),
        (
            b"AUTH plain",
            Command::Auth {
                mechanism: "PLAIN".into(),
                initial: None,
            },
        ),
        (
            b"AUTH PLAIN AGFsaWNlAGFsaWNl",
            Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some(Secret::new("AGFsaWNlAGFsaWNl".into())),
            },
        ),
        (b"STAT", Command::Stat),
        (b"LIST", Command::List(None)),
        (b"LIST 3", Command::List(Some(3))),
        (b"UIDL", Command::Uidl(None)),
        (b"uidl 12", Command::Uidl(Some(12))),
        (b"RETR 1", Command::Retr(1)),
        (b"DELE 4294967295", Command::Dele(u32::MAX)),
        (b"TOP 1 0", Command::Top(1, 0)),
        (b"TOP  2  10", Command::Top(2, 10)),
        (b"NOOP", Command::Noop),
        (b"RSET", Command::Rset),
        (b"QUIT", Command::Quit),
    ];
    for (line, want) in table {
        assert_eq!(
            parse_command(line).as_ref(),
            Ok(want),
            "{}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn refusals_from_a_byte_table() {
    let table: &[(&[u8], &str)] = &[
        (b"", "empty command"),
        (b" STAT", "empty command"),
        (b"APOP alice 0123", "unknown command \"APOP\""),
        (b"XYZZY", "unknown command"),
        (b"STAT 1", "usage: STAT"),
        (b"RETR", "usage: RETR <msg>"),
        (b"RETR x", "a message number is a decimal number"),
        (b"RETR -1", "a message number is a decimal number"),
        (b"RETR +1", "a message number is a decimal number"),
        (b"DELE 4294967296", "too large"),
        (b"DELE 99999999999", "a message number is a decimal number"),
        (b"TOP 1", "usage: TOP <msg> <lines>"),
        (b"LIST 1 2", "usage: LIST [msg]"),
        (b"USER", "usage: USER <name>"),
        (b"PASS", "PASS needs the password"),
        (b"PASS ", "PASS needs the password"),
        (b"USER \xc3\xa9", "printable US-ASCII"),
        (b"NOOP\0", "printable US-ASCII"),
        (b"AUTH PLAIN a b", "usage: AUTH"),
    ];
    for (line, want) in table {
        let got = parse_command(line).expect_err("refused").to_string();
        assert!(
            got.contains(want),
            "{:?}: {got:?} lacks {want:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn lines_end_with_crlf_or_lf_and_wait_for_more() {
    let mut f = Framer::new();
    f.push(b"STA");
    assert_eq!(f.next_line(MAX_COMMAND_LINE), None);
    f.push(b"T\r\nLIST\nNOOP\r");
    assert_eq!(
        f.next_line(MAX_COMMAND_LINE),
        Some(Line::Text(b"STAT".to_vec()))
    );
    assert_eq!(
        f.next_line(MAX_COMMAND_LINE),
        Some(Line::Text(b"LIST".to_vec()))
    );
    assert_eq!(f.next_line(MAX_COMMAND_LINE), None);
    f.push(b"\n");
    assert_eq!(
        f.next_line(MAX_COMMAND_LINE),
        Some(Line::Text(b"NOOP".to_vec()))
    );
}

#[test]
fn a_line_of_255_octets_passes_and_one_of_256_is_refused_once() {
    let mut f = Framer::new();
    let mut ok = b"USER ".to_vec();
    ok.resize(253, b'a');
    ok.extend_from_slice(b"\r\n");
    assert_eq!(ok.len(), 255);
    f.push(&ok);
    assert!(matches!(f.next_line(MAX_COMMAND_LINE), Some(Line::Text(_))));
    let mut long = b"USER ".to_vec();
    long.resize(254, b'a');
    long.extend_from_slice(b"\r\n");
    f.push(&long);
    f.push(b"NOOP\r\n");
    assert_eq!(
        f.next_line(MAX_COMMAND_LINE),
        Some(Line::TooLong(MAX_COMMAND_LINE))
    );
    assert_eq!(
        f.next_line(MAX_COMMAND_LINE),
        Some(Line::Text(b"NOOP".to_vec()))
    );
}

#[test]
fn an_endless_line_is_never_held() {
    let mut f = Framer::new();
    for _ in 0..1000 {
        f.push(&[b'x'; 1000]);
        assert_eq!(f.next_line(MAX_COMMAND_LINE), None);
        assert!(f.buffered() <= 1000 + MAX_COMMAND_LINE);
    }
    f.push(b"\r\nQUIT\r\n");
    assert_eq!(
        f.next_line(MAX_COMMAND_LINE),
        Some(Line::TooLong(MAX_COMMAND_LINE))
    );
    assert_eq!(
        f.next_line(MAX_COMMAND_LINE),
        Some(Line::Text(b"QUIT".to_vec()))
    );
}

#[test]
fn what_follows_stls_can_be_dropped() {
    let mut f = Framer::new();
    f.push(b"STLS\r\nUSER mallory\r\n");
    assert_eq!(
        f.next_line(MAX_COMMAND_LINE),
        Some(Line::Text(b"STLS".to_vec()))
    );
    f.discard_buffered();
    assert_eq!(f.next_line(MAX_COMMAND_LINE), None);
}

#[test]
fn sasl_lines() {
    assert_eq!(parse_sasl_line(b"*"), SaslLine::Cancel);
    assert_eq!(
        parse_sasl_line(b"AGEAYg=="),
        SaslLine::Response(Secret::new("AGEAYg==".into()))
    );
}

#[test]
fn traces_hide_passwords() {
    assert!(!pass("hunter2").trace().contains("hunter2"));
    let auth = Command::Auth {
        mechanism: "PLAIN".into(),
        initial: Some(Secret::new("AGFsaWNlAGFsaWNl".into())),
    };
    assert!(!auth.trace().contains("AGFsaWNl"));
    assert_eq!(Command::Top(1, 5).trace(), "TOP 1 5");
}
