//! The IMAP view of a message (RFC 3501 §6.4.5 and §7.4.2): the pure,
//! protocol-independent functions from a message's bytes to what FETCH
//! returns — ENVELOPE, BODYSTRUCTURE and BODY, `BODY[section]<partial>`,
//! RFC822.SIZE. No I/O, no session state; a panic is unreachable from any
//! input, and the work is linear in the message's size with bounded
//! nesting.
//!
//! Everything describes the bytes given, exactly: sizes are octet counts
//! of those bytes, line counts their LFs, sections slices of them — so a
//! server that serves one fixed byte stream per message (as graphgate's
//! content cache does) answers RFC822.SIZE, sections and structure
//! consistently. RFC822 is `BODY[]`, RFC822.HEADER `BODY[HEADER]`,
//! RFC822.TEXT `BODY[TEXT]`, RFC822.SIZE `msg.len()`.
//!
//! RFC 3501 is followed to the letter where it speaks (NIL versus "",
//! raw undecoded header text, group syntax with start and end markers,
//! sender and reply-to defaulting to from, us-ascii and 7bit defaults,
//! line counts, multipart subtype and parameters, MD5 from Content-MD5);
//! where it is silent (how to unfold, what a broken address becomes,
//! where exactly a part ends around its delimiter) the answers are those
//! of Dovecot, the reference server the test suite compares against.
//!
//! The MIME reading here is its own, not mail-parser's: IMAP needs the
//! header values undecoded and every part's exact byte range, while
//! mail-parser decodes (encoded words, charsets, transfer encodings) and
//! has its own view of where parts end.
//!
//! Inside: `header` (header fields and their raw values), `rfc822`
//! (tokens, quoted strings, Content-Type and parameters with RFC 2231
//! continuations merged), `address` (address lists for ENVELOPE),
//! `structure` (the part tree: byte ranges and kinds), and the FETCH
//! items in `envelope`, `bodystructure` and `section`.

mod address;
pub mod binary;
mod bodystructure;
mod envelope;
mod header;
mod rfc822;
mod section;
pub mod sortkeys;
mod strings;
mod structure;

use std::borrow::Cow;

use imap_types::body::BodyStructure;
use imap_types::envelope::Envelope;
use imap_types::fetch::Section;

pub use bodystructure::Media;
pub use section::{partial, section};

/// A message read once for several FETCH items.
pub struct Message<'a> {
    bytes: &'a [u8],
    tree: structure::Tree,
}

impl<'a> Message<'a> {
    /// Read the part tree of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Message<'a> {
        Message {
            bytes,
            tree: structure::parse(bytes),
        }
    }

    /// RFC822.SIZE: the number of octets served.
    pub fn size(&self) -> u32 {
        rfc822_size(self.bytes)
    }

    /// ENVELOPE.
    pub fn envelope(&self) -> Envelope<'static> {
        envelope::envelope_of(&self.bytes[self.tree.root().header.clone()])
    }

    /// BODYSTRUCTURE (with extension data).
    pub fn body_structure(&self) -> BodyStructure<'static> {
        self.body_structure_as_written(true).0
    }

    /// BODY (the non-extensible form).
    pub fn body(&self) -> BodyStructure<'static> {
        self.body_structure_as_written(false).0
    }

    /// BODYSTRUCTURE (`extended`) or BODY, with the media type words of
    /// its text and message/rfc822 parts as the message writes them
    /// (see [`Media`]).
    pub fn body_structure_as_written(&self, extended: bool) -> (BodyStructure<'static>, Media) {
        let mut media = Media::new();
        let structure = bodystructure::write(self.bytes, &self.tree, 0, extended, &mut media);
        (structure, media)
    }

    /// BINARY[path] (RFC 3516; empty is `BINARY[]`); see [`binary`].
    pub fn binary(
        &self,
        path: &[std::num::NonZeroU32],
    ) -> Result<Cow<'a, [u8]>, binary::UnknownCte> {
        binary::binary_in(self.bytes, &self.tree, path)
    }

    /// BODY[section] (`None` is `BODY[]`); see [`section`].
    pub fn section(&self, section: Option<&Section<'_>>) -> Cow<'a, [u8]> {
        match section {
            None => Cow::Borrowed(self.bytes),
            Some(s) => section::section_in(self.bytes, &self.tree, s),
        }
    }
}

/// ENVELOPE of `msg` (only its header block is read).
pub fn envelope(msg: &[u8]) -> Envelope<'static> {
    envelope::envelope_of(&msg[..structure::root_header_end(msg)])
}

/// BODYSTRUCTURE of `msg`, with extension data.
pub fn body_structure(msg: &[u8]) -> BodyStructure<'static> {
    Message::new(msg).body_structure()
}

/// BODY of `msg`: BODYSTRUCTURE without extension data.
pub fn body(msg: &[u8]) -> BodyStructure<'static> {
    Message::new(msg).body()
}

/// RFC822.SIZE of `msg`: its length in octets (saturating at the
/// largest size IMAP can state).
pub fn rfc822_size(msg: &[u8]) -> u32 {
    u32::try_from(msg.len()).unwrap_or(u32::MAX)
}
