//! The RFC 5322 / RFC 2045 lexical layer under ENVELOPE and BODYSTRUCTURE:
//! comments and folding white space (CFWS), atoms, dot-atoms, MIME tokens,
//! quoted strings, phrases, domains, and on top of them Content-Type,
//! MIME parameters with RFC 2231 continuations merged, and
//! Content-Language.
//!
//! The rules are those of the reference server (Dovecot 2.3), so that the
//! values a client gets match: quoted strings are unquoted and unfolded,
//! MIME tokens are kept in the case they were sent, and broken input is
//! read as far as it goes instead of being thrown away. Nothing is
//! decoded: RFC 2047 encoded words and RFC 2231 `charset'lang'%XX` values
//! reach the client as sent (RFC 3501 §7.4.2 leaves decoding to it).

/// How a lexer step ended: the input is malformed here, it is used up,
/// or there is more to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Step {
    Broken,
    End,
    More,
}

use Step::{Broken, End, More};

/// Character classes: 1 = atext, 2 = ALPHA / DIGIT / 8-bit, 4 = atext
/// that is a MIME tspecial (`/`, `=`, `?`).
const ATEXT: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = if b.is_ascii_alphanumeric() || b >= 0x80 {
            2
        } else if matches!(b, b'/' | b'=' | b'?') {
            4
        } else if matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'^'
                | b'_'
                | b'`'
                | b'{'
                | b'|'
                | b'}'
                | b'~'
        ) {
            1
        } else {
            0
        };
        c += 1;
    }
    t
};

pub(crate) fn is_atext(b: u8) -> bool {
    ATEXT[b as usize] != 0
}

fn is_token_char(b: u8) -> bool {
    ATEXT[b as usize] & 3 != 0
}

/// The bytes of U+FFFD, which stands in for NUL inside quoted strings
/// and comments.
const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

/// A cursor over one header value.
pub(crate) struct Lexer<'a> {
    data: &'a [u8],
    pub pos: usize,
    /// The text of the last comment skipped, when asked to keep it.
    pub last_comment: Option<Vec<u8>>,
}

impl<'a> Lexer<'a> {
    pub fn new(data: &'a [u8]) -> Lexer<'a> {
        Lexer {
            data,
            pos: 0,
            last_comment: None,
        }
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The current byte; NUL at the end (like the terminator a C string
    /// would have), so a look at the next byte never needs a bound check.
    pub fn cur(&self) -> u8 {
        self.data.get(self.pos).copied().unwrap_or(0)
    }

    /// `More` while input is left, `End` after it.
    pub fn status(&self) -> Step {
        if self.at_end() { End } else { More }
    }

    /// Skip a comment (at `(`), nested ones included.
    fn skip_comment(&mut self) -> Step {
        if let Some(c) = self.last_comment.as_mut() {
            c.clear();
        }
        let mut level = 1;
        self.pos += 1;
        let mut start = self.pos;
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                0 => {
                    if let Some(c) = self.last_comment.as_mut() {
                        c.extend_from_slice(&self.data[start..self.pos]);
                        c.extend_from_slice(REPLACEMENT);
                        start = self.pos + 1;
                    }
                }
                b'(' => level += 1,
                b')' => {
                    level -= 1;
                    if level == 0 {
                        if let Some(c) = self.last_comment.as_mut() {
                            c.extend_from_slice(&self.data[start..self.pos]);
                        }
                        self.pos += 1;
                        return self.status();
                    }
                }
                b'\n' => {
                    // Folding inside the comment: the line end goes.
                    if let Some(c) = self.last_comment.as_mut() {
                        let mut part = &self.data[start..self.pos];
                        part = part.strip_suffix(b"\r").unwrap_or(part);
                        c.extend_from_slice(part);
                        start = self.pos + 1;
                    }
                }
                b'\\' => {
                    self.pos += 1;
                    if self.pos >= self.data.len() {
                        return Broken;
                    }
                    if matches!(self.data[self.pos], b'\r' | b'\n' | 0) {
                        // Not a quoted-pair: the backslash is text.
                        self.pos -= 1;
                    } else {
                        if let Some(c) = self.last_comment.as_mut() {
                            c.extend_from_slice(&self.data[start..self.pos - 1]);
                        }
                        start = self.pos;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        Broken
    }

    /// Skip white space, line ends and comments.
    pub fn skip_cfws(&mut self) -> Step {
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'(' => {
                    if self.skip_comment() == Broken {
                        return Broken;
                    }
                }
                _ => break,
            }
        }
        self.status()
    }

    /// `atom` (the text goes to `out`), then CFWS.
    pub fn atom(&mut self, out: &mut Vec<u8>) -> Step {
        if self.at_end() || !is_atext(self.cur()) {
            return Broken;
        }
        let start = self.pos;
        while self.pos < self.data.len() && is_atext(self.data[self.pos]) {
            self.pos += 1;
        }
        out.extend_from_slice(&self.data[start..self.pos]);
        if self.at_end() { End } else { self.skip_cfws() }
    }

    /// `dot-atom` (RFC 822 style: CFWS allowed around the dots).
    pub fn dot_atom(&mut self, out: &mut Vec<u8>) -> Step {
        if self.at_end() || !is_atext(self.cur()) {
            return Broken;
        }
        loop {
            let start = self.pos;
            while self.pos < self.data.len() && is_atext(self.data[self.pos]) {
                self.pos += 1;
            }
            if start == self.pos {
                return Broken;
            }
            out.extend_from_slice(&self.data[start..self.pos]);
            if self.at_end() {
                return End;
            }
            let step = self.skip_cfws();
            if step != More {
                return step;
            }
            if self.cur() != b'.' {
                return More;
            }
            self.pos += 1;
            out.push(b'.');
            if self.skip_cfws() != More {
                return Broken;
            }
        }
    }

    /// A MIME `token` (RFC 2045 §5.1; dots allowed), then CFWS.
    pub fn token(&mut self, out: &mut Vec<u8>) -> Step {
        let start = self.pos;
        while self.pos < self.data.len()
            && (is_token_char(self.data[self.pos]) || self.data[self.pos] == b'.')
        {
            self.pos += 1;
        }
        out.extend_from_slice(&self.data[start..self.pos]);
        if self.at_end() { End } else { self.skip_cfws() }
    }

    /// A quoted string (at `"`), unquoted and unfolded, then CFWS.
    pub fn quoted_string(&mut self, out: &mut Vec<u8>) -> Step {
        self.pos += 1;
        let mut start = self.pos;
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                0 => {
                    out.extend_from_slice(&self.data[start..self.pos]);
                    out.extend_from_slice(REPLACEMENT);
                    start = self.pos + 1;
                }
                b'"' => {
                    out.extend_from_slice(&self.data[start..self.pos]);
                    self.pos += 1;
                    return self.skip_cfws();
                }
                b'\n' => {
                    let mut part = &self.data[start..self.pos];
                    part = part.strip_suffix(b"\r").unwrap_or(part);
                    out.extend_from_slice(part);
                    start = self.pos + 1;
                }
                b'\\' => {
                    self.pos += 1;
                    if self.pos >= self.data.len() {
                        return Broken;
                    }
                    if matches!(self.data[self.pos], b'\r' | b'\n' | 0) {
                        self.pos -= 1;
                    } else {
                        out.extend_from_slice(&self.data[start..self.pos - 1]);
                        start = self.pos;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        Broken
    }

    /// Atoms and dots as they stand, then CFWS.
    fn atom_or_dot(&mut self, out: &mut Vec<u8>) -> Step {
        let start = self.pos;
        while self.pos < self.data.len()
            && (is_atext(self.data[self.pos]) || self.data[self.pos] == b'.')
        {
            self.pos += 1;
        }
        out.extend_from_slice(&self.data[start..self.pos]);
        if self.at_end() { End } else { self.skip_cfws() }
    }

    /// `phrase` (RFC 5322 `1*word / obs-phrase`): words joined by one
    /// space, quoted strings unquoted.
    pub fn phrase(&mut self, out: &mut Vec<u8>) -> Step {
        if self.at_end() {
            return End;
        }
        if self.cur() == b'.' {
            return Broken;
        }
        loop {
            let step = if self.cur() == b'"' {
                self.quoted_string(out)
            } else {
                self.atom_or_dot(out)
            };
            if step != More {
                return step;
            }
            let c = self.cur();
            if !is_atext(c) && c != b'"' && c != b'.' {
                break;
            }
            out.push(b' ');
        }
        self.skip_cfws()
    }

    /// A domain-literal (at `[`), kept with its brackets and escapes.
    fn domain_literal(&mut self, out: &mut Vec<u8>) -> Step {
        let mut start = self.pos;
        self.pos += 1;
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                0 => {
                    out.extend_from_slice(&self.data[start..self.pos]);
                    out.extend_from_slice(REPLACEMENT);
                    start = self.pos + 1;
                }
                b'[' => return Broken,
                b']' => {
                    out.extend_from_slice(&self.data[start..=self.pos]);
                    self.pos += 1;
                    return self.skip_cfws();
                }
                b'\n' => {
                    let mut part = &self.data[start..self.pos];
                    part = part.strip_suffix(b"\r").unwrap_or(part);
                    out.extend_from_slice(part);
                    start = self.pos + 1;
                }
                b'\\' => {
                    self.pos += 1;
                    if self.pos >= self.data.len() {
                        return Broken;
                    }
                    if matches!(self.data[self.pos], b'\r' | b'\n' | 0) {
                        out.extend_from_slice(&self.data[start..self.pos]);
                        start = self.pos;
                        self.pos -= 1;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        Broken
    }

    /// `"@" domain` (at `@`).
    pub fn domain(&mut self, out: &mut Vec<u8>) -> Step {
        self.pos += 1;
        if self.skip_cfws() != More {
            return Broken;
        }
        if self.cur() == b'[' {
            self.domain_literal(out)
        } else {
            self.dot_atom(out)
        }
    }
}

/// A Content-Type value: `type/subtype` as sent (or as much of it as
/// could be read), and the lexer left before its parameters; `Broken`
/// when the value is malformed (its parameters are then not read).
pub(crate) fn content_type<'a>(value: &'a [u8]) -> (Vec<u8>, Lexer<'a>, Step) {
    let mut lx = Lexer::new(value);
    let mut out = Vec::new();
    // Leading CFWS twice over, as the reference does: harmless.
    lx.skip_cfws();
    if lx.skip_cfws() != More {
        return (out, lx, Broken);
    }
    if lx.token(&mut out) != More || out.is_empty() {
        return (out, lx, Broken);
    }
    if lx.cur() != b'/' {
        out.clear();
        return (out, lx, Broken);
    }
    lx.pos += 1;
    if lx.skip_cfws() != More {
        out.clear();
        return (out, lx, Broken);
    }
    out.push(b'/');
    let sub_start = out.len();
    let step = lx.token(&mut out);
    if step == Broken || out.len() == sub_start || (!lx.at_end() && lx.cur() != b';') {
        out.clear();
        return (out, lx, Broken);
    }
    (out, lx, step)
}

/// A MIME parameter: attribute and value.
pub(crate) type Param = (Vec<u8>, Vec<u8>);

/// One `; attribute=value` parameter: `None` at the end of the input,
/// `Some(Err(()))` when malformed here.
fn content_param(lx: &mut Lexer<'_>) -> Option<Result<Param, ()>> {
    if lx.at_end() {
        return None;
    }
    if lx.cur() != b';' {
        return Some(Err(()));
    }
    lx.pos += 1;
    if lx.skip_cfws() != More {
        return Some(Err(()));
    }
    let mut key = Vec::new();
    if lx.token(&mut key) != More {
        return Some(Err(()));
    }
    if lx.cur() != b'=' {
        return Some(Err(()));
    }
    lx.pos += 1;
    let mut value = Vec::new();
    let mut step = lx.skip_cfws();
    if step != More {
        // No value.
    } else if lx.cur() == b'"' {
        step = lx.quoted_string(&mut value);
    } else if lx.cur() == b'=' {
        // Broken input such as `name==?utf-8?b?...?=`: take it as it is.
        while !lx.at_end() && !matches!(lx.cur(), b';' | b' ' | b'\t' | b'\r' | b'\n') {
            value.push(lx.cur());
            lx.pos += 1;
        }
    } else {
        step = lx.token(&mut value);
    }
    if step == Broken {
        Some(Err(()))
    } else {
        Some(Ok((key, value)))
    }
}

/// The MIME parameters after a Content-Type or Content-Disposition value,
/// in order, with RFC 2231 continuations (`name*0`, `name*1*`, …) merged
/// into one `name` (or `name*` when any piece is extended, its value kept
/// percent-encoded with the `charset'lang'` prefix as sent) after the
/// plain ones. A name whose pieces are not numbered 0, 1, 2… is left as
/// its pieces. Names keep the case they were sent in.
pub(crate) fn parameters(lx: &mut Lexer<'_>) -> Vec<Param> {
    struct Piece {
        key: Vec<u8>,
        value: Vec<u8>,
        idx: u32,
        extended: bool,
    }
    let mut result = Vec::new();
    let mut pieces: Vec<Piece> = Vec::new();
    while let Some(param) = content_param(lx) {
        let Ok((key, value)) = param else {
            // Try to go on after the damage.
            if lx.at_end() {
                break;
            }
            lx.pos += 1;
            continue;
        };
        if let Some(star) = key.iter().position(|&b| b == b'*') {
            // `name*` (one extended piece), `name*N` or `name*N*`.
            let mut p = star + 1;
            let mut idx: u32 = 0;
            let mut extended = p == key.len();
            if !extended {
                while let Some(d) = key.get(p).filter(|d| d.is_ascii_digit()) {
                    idx = idx.saturating_mul(10).saturating_add(u32::from(d - b'0'));
                    p += 1;
                }
                extended = key.get(p) == Some(&b'*');
                if extended {
                    p += 1;
                }
            }
            if p == key.len() {
                pieces.push(Piece {
                    key: key[..star].to_vec(),
                    value,
                    idx,
                    extended,
                });
                continue;
            }
        }
        result.push((key, value));
    }
    if pieces.is_empty() {
        return result;
    }
    pieces.sort_by(|a, b| a.key.cmp(&b.key).then(a.idx.cmp(&b.idx)));
    let mut i = 0;
    while i < pieces.len() {
        let mut j = i;
        let mut in_order = true;
        let mut any_extended = false;
        let mut next_idx = 0;
        while j < pieces.len() && pieces[j].key.eq_ignore_ascii_case(&pieces[i].key) {
            in_order &= pieces[j].idx == next_idx;
            any_extended |= pieces[j].extended;
            next_idx += 1;
            j += 1;
        }
        if !in_order {
            for p in &pieces[i..j] {
                let mut key = p.key.clone();
                key.extend_from_slice(format!("*{}", p.idx).as_bytes());
                if p.extended {
                    key.push(b'*');
                }
                result.push((key, p.value.clone()));
            }
        } else {
            let mut value = Vec::new();
            if !pieces[i].extended && any_extended {
                value.extend_from_slice(b"''");
            }
            for p in &pieces[i..j] {
                if !p.extended && any_extended {
                    // A plain piece inside an extended value: escape `%`.
                    for &b in &p.value {
                        if b == b'%' {
                            value.extend_from_slice(b"%25");
                        } else {
                            value.push(b);
                        }
                    }
                } else {
                    value.extend_from_slice(&p.value);
                }
            }
            let mut key = pieces[i].key.clone();
            if any_extended {
                key.push(b'*');
            }
            result.push((key, value));
        }
        i = j;
    }
    result
}

/// A Content-Language value: its language tags (atoms separated by
/// commas), as far as they can be read.
pub(crate) fn languages(value: &[u8]) -> Vec<Vec<u8>> {
    let mut lx = Lexer::new(value);
    let mut out = Vec::new();
    lx.skip_cfws();
    loop {
        let mut tag = Vec::new();
        if lx.atom(&mut tag) == Broken {
            break;
        }
        out.push(tag);
        if lx.at_end() || lx.cur() != b',' {
            break;
        }
        lx.pos += 1;
        lx.skip_cfws();
    }
    out
}

/// A Content-Transfer-Encoding or Content-Disposition type: the leading
/// MIME token as sent.
pub(crate) fn leading_token(value: &[u8]) -> (Vec<u8>, Lexer<'_>, Step) {
    let mut lx = Lexer::new(value);
    lx.skip_cfws();
    let mut out = Vec::new();
    let step = lx.token(&mut out);
    (out, lx, step)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(value: &str) -> Vec<(String, String)> {
        let (_, mut lx, step) = content_type(value.as_bytes());
        assert_ne!(step, Broken, "{value}");
        parameters(&mut lx)
            .into_iter()
            .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
            .collect()
    }

    #[test]
    fn content_type_keeps_case_and_reads_parameters() {
        let (ct, _, step) = content_type(b" Text/HTML ; Charset=\"UTF-8\"");
        assert_eq!(ct, b"Text/HTML");
        assert_eq!(step, More);
        assert_eq!(
            params("text/plain; charset=\"utf-8\"; format=flowed"),
            [
                ("charset".into(), "utf-8".into()),
                ("format".into(), "flowed".into())
            ]
        );
        // Broken: no subtype.
        let (ct, _, step) = content_type(b"text");
        assert_eq!((ct.as_slice(), step), (&b"text"[..], Broken));
        let (ct, _, step) = content_type(b"text/plain garbage");
        assert_eq!((ct.as_slice(), step), (&b""[..], Broken));
    }

    #[test]
    fn rfc2231_continuations_merge() {
        assert_eq!(
            params("application/x; name*1=\"b.txt\"; name*0=\"a\"; x=1"),
            [("x".into(), "1".into()), ("name".into(), "ab.txt".into())]
        );
        assert_eq!(
            params("application/x; name*0*=utf-8''%C3%A4; name*1=\"50%\""),
            [("name*".into(), "utf-8''%C3%A450%25".into())]
        );
        // A single extended value.
        assert_eq!(
            params("application/x; filename*=utf-8''a%20b"),
            [("filename*".into(), "utf-8''a%20b".into())]
        );
        // A gap in the numbering leaves the pieces as they are.
        assert_eq!(
            params("application/x; n*0=a; n*2=c"),
            [("n*0".into(), "a".into()), ("n*2".into(), "c".into())]
        );
    }

    #[test]
    fn quoted_strings_unfold_and_unescape() {
        let mut lx = Lexer::new(b"\"a \\\"b\\\\\r\n c\" rest");
        let mut out = Vec::new();
        assert_eq!(lx.quoted_string(&mut out), More);
        assert_eq!(out, b"a \"b\\ c");
        assert_eq!(lx.cur(), b'r');
    }

    #[test]
    fn languages_are_atoms() {
        assert_eq!(
            languages(b" en-US, de (German)"),
            [b"en-US".to_vec(), b"de".to_vec()]
        );
        assert!(languages(b"").is_empty());
    }
}
