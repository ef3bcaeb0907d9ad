//! `$filter`, `$orderby` and `$count` on message lists: the forms a mail
//! client needs, as Graph's "List messages" and "Use query parameters"
//! documents describe them.
//!
//! - `$filter`: `isRead eq true|false`, `receivedDateTime` and
//!   `lastModifiedDateTime` `ge|gt|le|lt 2026-11-17T00:00:00Z` (ranges are
//!   two clauses), `internetMessageId eq '<id@host>'` (quotes doubled
//!   inside), `contains(subject,'…')` (the `contains` string function of
//!   learn.microsoft.com/graph/filter-query-parameter, "contains"), and
//!   `singleValueExtendedProperties/any(ep: ep/id eq '…' and ep/value eq
//!   '…')` (learn.microsoft.com/graph/api/singlevalueextendedproperty-get,
//!   "Get resource instances filtered by a string-typed property": the
//!   lambda form Graph documents for `GET /me/mailFolders/{id}/messages`),
//!   joined by `and`. Anything else (`or`, `not`, parentheses, other
//!   functions or properties) is refused with 400, never ignored.
//! - `$orderby`: `receivedDateTime` with `asc` (the default) or `desc`.
//!   With `$filter` too, Graph wants the `$orderby` properties first in
//!   the filter, in the same order; otherwise it answers 400
//!   `InefficientFilter` ("The restriction or sort order is too complex
//!   for this operation."), and so does the simulator.
//! - `$count=true`: `@odata.count`, the number of matching messages, on
//!   every page.

use chrono::{DateTime, Utc};

use super::model::{Message, normalise_property_id};
use crate::sim::errors::GraphError;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Comparison {
    Ge,
    Gt,
    Le,
    Lt,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Clause {
    IsRead(bool),
    Received(Comparison, DateTime<Utc>),
    Modified(Comparison, DateTime<Utc>),
    InternetMessageId(String),
    /// `contains(subject,'…')`: a substring, compared without regard to
    /// case (Exchange's substring restrictions on the subject ignore case,
    /// as Outlook's search does).
    SubjectContains(String),
    /// `singleValueExtendedProperties/any(ep: ep/id eq ID and ep/value eq V)`:
    /// the id normalised (see [`normalise_property_id`]), the value as is.
    Extended(String, String),
}

fn compare(op: Comparison, left: DateTime<Utc>, right: DateTime<Utc>) -> bool {
    match op {
        Comparison::Ge => left >= right,
        Comparison::Gt => left > right,
        Comparison::Le => left <= right,
        Comparison::Lt => left < right,
    }
}

impl Clause {
    fn is_received(&self) -> bool {
        matches!(self, Clause::Received(..))
    }

    fn matches(&self, m: &Message) -> bool {
        match self {
            Clause::IsRead(read) => m.is_read == *read,
            Clause::InternetMessageId(id) => m.internet_message_id == *id,
            Clause::Received(op, t) => compare(*op, m.received, *t),
            Clause::Modified(op, t) => compare(*op, m.modified, *t),
            Clause::SubjectContains(part) => {
                m.subject.to_lowercase().contains(&part.to_lowercase())
            }
            Clause::Extended(id, value) => m.extended.get(id).is_some_and(|(_, v)| v == value),
        }
    }
}

/// A `$filter`: clauses that must all hold.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Filter(pub(super) Vec<Clause>);

impl Filter {
    pub(super) fn matches(&self, m: &Message) -> bool {
        self.0.iter().all(|c| c.matches(m))
    }
}

/// A `$orderby` on `receivedDateTime`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Order {
    OldestFirst,
    NewestFirst,
}

fn refuse(filter: &str) -> GraphError {
    GraphError::bad_request(
        "BadRequest",
        format!(
            "Invalid filter clause: the simulator supports isRead eq true|false, receivedDateTime or lastModifiedDateTime ge|gt|le|lt <DateTimeOffset>, internetMessageId eq '…', contains(subject,'…'), singleValueExtendedProperties/any(ep: ep/id eq '…' and ep/value eq '…'), joined by and; not {filter:?}."
        ),
    )
}

/// `text` without the blanks OData allows after `(`, `,` and `:` and
/// before `)` (outside quoted literals), so that a function call or a
/// lambda's head is one word: `contains(subject, 'a b')` →
/// `contains(subject,'a b')`.
fn squeeze(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut quoted = false;
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c == '\'' {
            quoted = !quoted;
        } else if !quoted && c.is_whitespace() {
            let after_open = out.ends_with(['(', ',', ':']);
            let before_close = chars[i..]
                .iter()
                .find(|c| !c.is_whitespace())
                .is_some_and(|&c| c == ')');
            if after_open || before_close {
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// Words, a `'quoted'` literal (`''` inside it) being part of its word.
/// `None` when a literal is not closed.
fn tokens(text: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut token = String::new();
    let mut quoted = false;
    for c in text.chars() {
        if c == '\'' {
            quoted = !quoted;
        } else if !quoted && c.is_whitespace() {
            if !token.is_empty() {
                out.push(std::mem::take(&mut token));
            }
            continue;
        }
        token.push(c);
    }
    if quoted {
        return None;
    }
    if !token.is_empty() {
        out.push(token);
    }
    Some(out)
}

/// The text of a whole `'literal'` (`''` inside it made `'`).
fn literal(word: &str) -> Option<String> {
    let inner = word.strip_prefix('\'')?.strip_suffix('\'')?;
    // A lone quote inside would have ended the literal.
    if inner.replace("''", "").contains('\'') {
        return None;
    }
    Some(inner.replace("''", "'"))
}

/// `contains(subject,'…')` as one word.
fn contains_clause(word: &str) -> Option<Clause> {
    let head = word.get(..9)?;
    if !head.eq_ignore_ascii_case("contains(") {
        return None;
    }
    let inner = word.get(9..)?.strip_suffix(')')?;
    let (property, value) = inner.split_once(',')?;
    if !property.eq_ignore_ascii_case("subject") {
        return None;
    }
    Some(Clause::SubjectContains(literal(value)?))
}

/// `singleValueExtendedProperties/any(ep:ep/id eq '…' and ep/value eq '…')`
/// at the start of `words`: the clause and the words after it.
fn any_clause(words: &[String]) -> Option<(Clause, &[String])> {
    const HEAD: &str = "singlevalueextendedproperties/any(";
    let (first, rest) = words.split_first()?;
    if !first.get(..HEAD.len())?.eq_ignore_ascii_case(HEAD) {
        return None;
    }
    let (var, id_path) = first.get(HEAD.len()..)?.split_once(':')?;
    let [eq1, id, and, value_path, eq2, value, tail @ ..] = rest else {
        return None;
    };
    let value = value.strip_suffix(')')?;
    let is = |path: &str, field: &str| {
        path.split_once('/')
            .is_some_and(|(v, f)| v == var && f.eq_ignore_ascii_case(field))
    };
    let ok = !var.is_empty()
        && is(id_path, "id")
        && is(value_path, "value")
        && [eq1, eq2].iter().all(|w| w.eq_ignore_ascii_case("eq"))
        && and.eq_ignore_ascii_case("and");
    if !ok {
        return None;
    }
    let clause = Clause::Extended(normalise_property_id(&literal(id)?), literal(value)?);
    Some((clause, tail))
}

/// The clause at the start of `words` and the words after it.
fn next_clause(words: &[String]) -> Option<(Clause, &[String])> {
    if let Some(found) = any_clause(words) {
        return Some(found);
    }
    let (first, rest) = words.split_first()?;
    if let Some(clause) = contains_clause(first) {
        return Some((clause, rest));
    }
    let [op, value, tail @ ..] = rest else {
        return None;
    };
    Some((clause(first, op, value)?, tail))
}

fn clause(property: &str, op: &str, value: &str) -> Option<Clause> {
    let op = op.to_ascii_lowercase();
    if property.eq_ignore_ascii_case("isRead") && op == "eq" {
        return match value {
            "true" => Some(Clause::IsRead(true)),
            "false" => Some(Clause::IsRead(false)),
            _ => None,
        };
    }
    if property.eq_ignore_ascii_case("internetMessageId") && op == "eq" {
        return Some(Clause::InternetMessageId(literal(value)?));
    }
    let received = property.eq_ignore_ascii_case("receivedDateTime");
    if received || property.eq_ignore_ascii_case("lastModifiedDateTime") {
        let comparison = match op.as_str() {
            "ge" => Comparison::Ge,
            "gt" => Comparison::Gt,
            "le" => Comparison::Le,
            "lt" => Comparison::Lt,
            _ => return None,
        };
        let when = DateTime::parse_from_rfc3339(value)
            .ok()?
            .with_timezone(&Utc);
        return Some(if received {
            Clause::Received(comparison, when)
        } else {
            Clause::Modified(comparison, when)
        });
    }
    None
}

pub(super) fn parse_filter(text: &str) -> Result<Filter, GraphError> {
    let tokens = tokens(&squeeze(text)).ok_or_else(|| refuse(text))?;
    let mut clauses = Vec::new();
    let mut rest = tokens.as_slice();
    loop {
        let (clause, tail) = next_clause(rest).ok_or_else(|| refuse(text))?;
        clauses.push(clause);
        match tail {
            [] => return Ok(Filter(clauses)),
            [and, more @ ..] if and.eq_ignore_ascii_case("and") => rest = more,
            _ => return Err(refuse(text)),
        }
    }
}

pub(super) fn parse_orderby(text: &str) -> Result<Order, GraphError> {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        [p] if p.eq_ignore_ascii_case("receivedDateTime") => Ok(Order::OldestFirst),
        [p, d] if p.eq_ignore_ascii_case("receivedDateTime") && d.eq_ignore_ascii_case("asc") => {
            Ok(Order::OldestFirst)
        }
        [p, d] if p.eq_ignore_ascii_case("receivedDateTime") && d.eq_ignore_ascii_case("desc") => {
            Ok(Order::NewestFirst)
        }
        _ => Err(GraphError::bad_request(
            "BadRequest",
            format!(
                "Invalid $orderby: the simulator supports receivedDateTime asc|desc, not {text:?}."
            ),
        )),
    }
}

/// Graph's rule for `$filter` with `$orderby` on messages: the ordered
/// property must come first in the filter.
pub(super) fn check_combination(
    filter: Option<&Filter>,
    order: Option<Order>,
) -> Result<(), GraphError> {
    match (filter, order) {
        (Some(f), Some(_)) if !f.0.first().is_some_and(Clause::is_received) => {
            Err(GraphError::bad_request(
                "InefficientFilter",
                "The restriction or sort order is too complex for this operation.",
            ))
        }
        _ => Ok(()),
    }
}

/// `$count`: `true` asks for `@odata.count`.
pub(super) fn parse_count(value: Option<&String>) -> Result<bool, GraphError> {
    match value.map(|v| v.to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if v == "true" => Ok(true),
        Some(v) if v == "false" => Ok(false),
        Some(v) => Err(GraphError::bad_request(
            "BadRequest",
            format!("Invalid value '{v}' for $count; it must be true or false."),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_refuse() {
        let f =
            parse_filter("receivedDateTime ge 2026-11-17T00:00:00Z and isRead eq false").unwrap();
        assert_eq!(f.0.len(), 2);
        assert!(matches!(f.0[1], Clause::IsRead(false)));
        let f = parse_filter("internetMessageId eq '<it''s@x>'").unwrap();
        assert_eq!(f.0, vec![Clause::InternetMessageId("<it's@x>".into())]);
        for bad in [
            "",
            "isRead eq 1",
            "isRead eq false or isRead eq true",
            "(isRead eq false)",
            "subject eq 'x'",
            "receivedDateTime ge yesterday",
            "isRead eq false and",
            "internetMessageId eq 'open",
            "contains(body,'x')",
            "contains(subject,x)",
            "startswith(subject,'x')",
            "singleValueExtendedProperties/any(ep: ep/id eq 'x')",
            "singleValueExtendedProperties/any(ep: ep/id eq 'x' or ep/value eq 'y')",
            "singleValueExtendedProperties/any(ep: other/id eq 'x' and ep/value eq 'y')",
            "lastModifiedDateTime eq 2026-11-17T00:00:00Z",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn contains_modified_ranges_and_extended_properties_parse() {
        let f = parse_filter(
            "contains(subject, 'it''s a plan') and lastModifiedDateTime ge 2026-11-17T00:00:00Z \
             and lastModifiedDateTime lt 2026-11-18T00:00:00Z",
        )
        .unwrap();
        assert_eq!(f.0[0], Clause::SubjectContains("it's a plan".into()));
        assert!(matches!(f.0[1], Clause::Modified(Comparison::Ge, _)));
        assert!(matches!(f.0[2], Clause::Modified(Comparison::Lt, _)));
        let f = parse_filter(
            "singleValueExtendedProperties/Any(ep: ep/id eq 'String {66f5a359-4659-4830-9070-00047ec6ac6e} Name Ref' \
             and ep/value eq 'a b') and isRead eq false",
        )
        .unwrap();
        assert_eq!(
            f.0,
            vec![
                Clause::Extended(
                    "string {66f5a359-4659-4830-9070-00047ec6ac6e} name ref".into(),
                    "a b".into()
                ),
                Clause::IsRead(false)
            ]
        );
    }

    #[test]
    fn orderby_needs_its_property_first_in_the_filter() {
        let received =
            parse_filter("receivedDateTime lt 2026-11-19T00:00:00Z and isRead eq true").unwrap();
        let read = parse_filter("isRead eq true").unwrap();
        let desc = parse_orderby("receivedDateTime desc").unwrap();
        assert!(check_combination(Some(&received), Some(desc)).is_ok());
        assert!(check_combination(Some(&read), Some(desc)).is_err());
        assert!(check_combination(Some(&read), None).is_ok());
        assert!(parse_orderby("subject").is_err());
    }
}
