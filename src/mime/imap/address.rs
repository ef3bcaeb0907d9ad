//! Address lists (RFC 5322 §3.4) read for ENVELOPE (RFC 3501 §7.4.2).
//!
//! Each mailbox becomes (personal name, source route, mailbox, host); a
//! group becomes a start marker whose mailbox is the group's name and
//! whose host is NIL, its members, and an end marker with all four NIL.
//! Names are the display name as sent — quoted strings unquoted, encoded
//! words left alone — or, for `user@host (Comment)`, the comment.
//!
//! Broken input is read as far as it goes, as the reference server does;
//! a missing local part or domain is filled with `MISSING_MAILBOX` /
//! `MISSING_DOMAIN` (never NIL, which would make it a group marker), and
//! an unreadable angle address gets the domain `SYNTAX_ERROR`.

use super::rfc822::{Lexer, Step};

/// Most addresses read from one header, so that a hostile header costs
/// bounded work.
const MAX_ADDRESSES: usize = 10_000;

/// One address structure; `None` is NIL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Addr {
    pub name: Option<Vec<u8>>,
    pub route: Option<Vec<u8>>,
    pub mailbox: Option<Vec<u8>>,
    pub domain: Option<Vec<u8>>,
}

struct Parser<'a> {
    lx: Lexer<'a>,
    out: Vec<Addr>,
    addr: Addr,
    invalid: bool,
}

/// The addresses of one address-list header value.
pub(crate) fn address_list(value: &[u8]) -> Vec<Addr> {
    let mut p = Parser {
        lx: Lexer::new(value),
        out: Vec::new(),
        addr: Addr::default(),
        invalid: false,
    };
    p.lx.last_comment = Some(Vec::new());
    if p.lx.skip_cfws() == Step::More {
        p.address_list();
    }
    p.out
}

impl Parser<'_> {
    fn push(&mut self) {
        self.out.push(std::mem::take(&mut self.addr));
        self.invalid = false;
    }

    /// Push the address with its gaps filled.
    fn push_fixed(&mut self) {
        if self.addr.mailbox.is_none() {
            self.addr.mailbox = Some(b"MISSING_MAILBOX".to_vec());
        }
        if self.addr.domain.as_ref().is_none_or(|d| d.is_empty()) {
            self.addr.domain = Some(b"MISSING_DOMAIN".to_vec());
        }
        self.push();
    }

    /// A dot-atom that tolerates leading, trailing and doubled dots.
    fn nonstrict_dot_atom(&mut self, out: &mut Vec<u8>) -> Step {
        let mut step = Step::Broken;
        loop {
            while self.lx.cur() == b'.' {
                out.push(b'.');
                self.lx.pos += 1;
                if self.lx.at_end() {
                    // The domain is missing, but the local part is read.
                    return Step::End;
                }
                step = Step::More;
            }
            if self.lx.cur() == b'@' {
                break;
            }
            step = self.lx.atom(out);
            if !(step == Step::More && self.lx.cur() == b'.') {
                break;
            }
        }
        step
    }

    fn local_part(&mut self) -> Step {
        let mut s = Vec::new();
        let step = if self.lx.cur() == b'"' {
            self.lx.quoted_string(&mut s)
        } else {
            self.nonstrict_dot_atom(&mut s)
        };
        if step == Step::Broken {
            return Step::Broken;
        }
        self.addr.mailbox = Some(s);
        step
    }

    fn domain(&mut self) -> Step {
        let mut s = Vec::new();
        let step = self.lx.domain(&mut s);
        if step == Step::Broken {
            return Step::Broken;
        }
        self.addr.domain = Some(s);
        step
    }

    /// `obs-domain-list` of a source route: `@a,@b`.
    fn domain_list(&mut self) -> Step {
        let mut s = Vec::new();
        loop {
            if self.lx.at_end() {
                return Step::End;
            }
            if self.lx.cur() != b'@' {
                break;
            }
            if !s.is_empty() {
                s.push(b',');
            }
            s.push(b'@');
            let step = self.lx.domain(&mut s);
            if step != Step::More {
                return step;
            }
            while self.lx.skip_cfws() == Step::More && self.lx.cur() == b',' {
                self.lx.pos += 1;
            }
        }
        self.addr.route = Some(s);
        Step::More
    }

    /// `"<" [route ":"] local-part "@" domain ">"` (at `<`).
    fn angle_addr(&mut self) -> Step {
        self.lx.pos += 1;
        if self.lx.skip_cfws() != Step::More {
            return Step::Broken;
        }
        if self.lx.cur() == b'@' {
            if self.domain_list() == Step::More && self.lx.cur() == b':' {
                self.lx.pos += 1;
            } else {
                self.addr.route = Some(b"INVALID_ROUTE".to_vec());
                if self.lx.at_end() {
                    return Step::Broken;
                }
            }
            if self.lx.skip_cfws() != Step::More {
                return Step::Broken;
            }
        }
        if self.lx.cur() != b'>' {
            if self.local_part() != Step::More {
                return Step::Broken;
            }
            if self.lx.cur() == b'@' && self.domain() != Step::More {
                return Step::Broken;
            }
        }
        if self.lx.cur() != b'>' {
            return Step::Broken;
        }
        self.lx.pos += 1;
        self.lx.skip_cfws()
    }

    /// `angle-addr` after a display name (`name`, empty for none).
    fn name_addr_after(&mut self, name: Vec<u8>) -> Step {
        self.addr.name = if name.is_empty() { None } else { Some(name) };
        if self.angle_addr() == Step::Broken {
            self.addr.domain = Some(b"SYNTAX_ERROR".to_vec());
            self.invalid = true;
        }
        self.lx.status()
    }

    fn addr_spec(&mut self) -> Step {
        if let Some(c) = self.lx.last_comment.as_mut() {
            c.clear();
        }
        let quoted = self.lx.cur() == b'"';
        let mut step = self.local_part();
        let mut domain_step = None;
        if step <= Step::End {
            self.invalid = true;
        }
        if step != Step::End && !self.lx.at_end() && self.lx.cur() == b'@' {
            let d = self.domain();
            domain_step = Some(d);
            if d <= Step::End {
                step = d;
            }
        }
        let comment = self.lx.last_comment.as_ref().filter(|c| !c.is_empty());
        if let Some(comment) = comment {
            self.addr.name = Some(comment.clone());
        } else if domain_step.is_none() {
            // A bare word: a mailbox if alone, else the start of a name.
            let mut s = self.addr.mailbox.clone().unwrap_or_default();
            s.push(b' ');
            let before = s.len();
            let _ = self.lx.phrase(&mut s);
            if s.len() != before {
                self.addr.mailbox = None;
                self.addr.name = Some(s);
            } else if !quoted {
                self.addr.domain = Some(Vec::new());
            }
            self.invalid = true;
            step = Step::Broken;
        }
        step
    }

    /// `mailbox = name-addr / addr-spec`.
    fn mailbox(&mut self) -> Step {
        let start = self.lx.pos;
        let mut name = Vec::new();
        let named = self.lx.phrase(&mut name) == Step::More && self.lx.cur() == b'<';
        self.mailbox_after(start, named.then_some(name))
    }

    /// A mailbox starting at `start`: `name` is its display name when a
    /// phrase and `<` were read (the lexer is at the `<`), else it is an
    /// addr-spec.
    fn mailbox_after(&mut self, start: usize, name: Option<Vec<u8>>) -> Step {
        let step = match name {
            Some(name) => self.name_addr_after(name),
            None => {
                self.lx.pos = start;
                self.addr = Addr::default();
                let step = self.addr_spec();
                if self.invalid
                    && self.addr.name.is_none()
                    && self.addr.mailbox.is_some()
                    && self.addr.domain.is_none()
                {
                    self.addr.name = self.addr.mailbox.take();
                }
                step
            }
        };
        self.push_fixed();
        step
    }

    /// The rest of a group after its display name `name` (the lexer is
    /// at the `:`): `":" [mailbox-list] ";"`.
    fn group_after(&mut self, name: Vec<u8>) -> Step {
        self.lx.pos += 1;
        let mut step = self.lx.skip_cfws();
        self.addr = Addr {
            mailbox: Some(name),
            ..Addr::default()
        };
        self.push();
        if step == Step::More && self.lx.cur() != b';' {
            loop {
                if self.out.len() >= MAX_ADDRESSES {
                    break;
                }
                let _ = self.mailbox();
                if self.lx.at_end() || self.lx.cur() != b',' {
                    break;
                }
                self.lx.pos += 1;
                if self.lx.skip_cfws() != Step::More {
                    step = Step::Broken;
                    break;
                }
            }
        }
        if step != Step::Broken {
            if self.lx.at_end() || self.lx.cur() != b';' {
                step = Step::Broken;
            } else {
                self.lx.pos += 1;
                step = self.lx.skip_cfws();
            }
        }
        // The end-of-group marker.
        self.push();
        if step == Step::End {
            Step::End
        } else {
            Step::More
        }
    }

    /// `address = mailbox / group`: both may start with a phrase, read
    /// once; what follows it tells them apart.
    fn address(&mut self) -> Step {
        let start = self.lx.pos;
        let mut name = Vec::new();
        if self.lx.phrase(&mut name) == Step::More {
            match self.lx.cur() {
                b':' => return self.group_after(name),
                b'<' => return self.mailbox_after(start, Some(name)),
                _ => {}
            }
        }
        self.mailbox_after(start, None)
    }

    fn address_list(&mut self) {
        while self.out.len() < MAX_ADDRESSES {
            let before = self.lx.pos;
            if self.address() == Step::End {
                break;
            }
            if self.lx.at_end() || self.lx.cur() != b',' {
                break;
            }
            self.lx.pos += 1;
            let step = self.lx.skip_cfws();
            if step != Step::More {
                if step == Step::Broken {
                    // Ends in garbage.
                    self.push_fixed();
                }
                break;
            }
            if self.lx.pos <= before {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(list: &[Addr]) -> String {
        let s = |v: &Option<Vec<u8>>| match v {
            None => "NIL".to_string(),
            Some(v) => format!("{:?}", String::from_utf8_lossy(v)),
        };
        list.iter()
            .map(|a| {
                format!(
                    "({} {} {} {})",
                    s(&a.name),
                    s(&a.route),
                    s(&a.mailbox),
                    s(&a.domain)
                )
            })
            .collect()
    }

    #[test]
    fn mailboxes_groups_and_comments() {
        assert_eq!(
            show(&address_list(
                b"\"Doe, John\" <john@example.com>, jane@example.org (Jane R)"
            )),
            "(\"Doe, John\" NIL \"john\" \"example.com\")(\"Jane R\" NIL \"jane\" \"example.org\")"
        );
        assert_eq!(
            show(&address_list(b"team: a@b.c, X <x@y.z>;, solo@d.e")),
            "(NIL NIL \"team\" NIL)(NIL NIL \"a\" \"b.c\")(\"X\" NIL \"x\" \"y.z\")(NIL NIL NIL NIL)(NIL NIL \"solo\" \"d.e\")"
        );
        assert_eq!(
            show(&address_list(b"undisclosed-recipients:;")),
            "(NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)"
        );
        assert_eq!(
            show(&address_list(b"=?utf-8?q?J=C3=BCrgen?= <j@example.com>")),
            "(\"=?utf-8?q?J=C3=BCrgen?=\" NIL \"j\" \"example.com\")"
        );
        assert_eq!(
            show(&address_list(b"<@route.example:u@h.example>")),
            "(NIL \"@route.example\" \"u\" \"h.example\")"
        );
    }

    #[test]
    fn broken_addresses_are_filled_not_dropped() {
        assert_eq!(
            show(&address_list(b"root")),
            "(NIL NIL \"root\" \"MISSING_DOMAIN\")"
        );
        assert_eq!(
            show(&address_list(b"Some Body")),
            "(\"Some Body\" NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\")"
        );
        assert!(address_list(b"").is_empty());
        assert!(address_list(b"  ").is_empty());
        for garbage in [
            &b"<"[..],
            b"\"",
            b"(",
            b"a@",
            b"@",
            b",,,",
            b"a:b",
            b"<@a",
            b"\\",
        ] {
            let _ = address_list(garbage);
        }
    }
}
