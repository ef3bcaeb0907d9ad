//! `$filter`, `$orderby` and `$count` on message lists: the forms a mail
//! client needs, as Graph's "List messages" and "Use query parameters"
//! documents describe them.
//!
//! - `$filter`: `isRead eq true|false`, `receivedDateTime ge|gt|le|lt
//!   2026-11-17T00:00:00Z`, `internetMessageId eq '<id@host>'` (quotes
//!   doubled inside), joined by `and`. Anything else (`or`, `not`,
//!   parentheses, functions, other properties) is refused with 400.
//! - `$orderby`: `receivedDateTime` with `asc` (the default) or `desc`.
//!   With `$filter` too, Graph wants the `$orderby` properties first in
//!   the filter, in the same order; otherwise it answers 400
//!   `InefficientFilter` ("The restriction or sort order is too complex
//!   for this operation."), and so does the simulator.
//! - `$count=true`: `@odata.count`, the number of matching messages, on
//!   every page.

use chrono::{DateTime, Utc};

use super::model::Message;
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
    InternetMessageId(String),
}

impl Clause {
    fn is_received(&self) -> bool {
        matches!(self, Clause::Received(..))
    }

    fn matches(&self, m: &Message) -> bool {
        match self {
            Clause::IsRead(read) => m.is_read == *read,
            Clause::InternetMessageId(id) => m.internet_message_id == *id,
            Clause::Received(op, t) => match op {
                Comparison::Ge => m.received >= *t,
                Comparison::Gt => m.received > *t,
                Comparison::Le => m.received <= *t,
                Comparison::Lt => m.received < *t,
            },
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
            "Invalid filter clause: the simulator supports isRead eq true|false, receivedDateTime ge|gt|le|lt <DateTimeOffset>, internetMessageId eq '…', joined by and; not {filter:?}."
        ),
    )
}

/// Words and `'quoted'` literals (quotes kept, `''` inside a literal).
fn tokens(text: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut token = String::new();
        if c == '\'' {
            token.push(chars.next()?);
            loop {
                let c = chars.next()?;
                token.push(c);
                if c == '\'' {
                    if chars.peek() == Some(&'\'') {
                        token.push(chars.next()?);
                    } else {
                        break;
                    }
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                token.push(c);
                chars.next();
            }
        }
        out.push(token);
    }
    Some(out)
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
        let inner = value.strip_prefix('\'')?.strip_suffix('\'')?;
        return Some(Clause::InternetMessageId(inner.replace("''", "'")));
    }
    if property.eq_ignore_ascii_case("receivedDateTime") {
        let comparison = match op.as_str() {
            "ge" => Comparison::Ge,
            "gt" => Comparison::Gt,
            "le" => Comparison::Le,
            "lt" => Comparison::Lt,
            _ => return None,
        };
        let when = DateTime::parse_from_rfc3339(value).ok()?;
        return Some(Clause::Received(comparison, when.with_timezone(&Utc)));
    }
    None
}

pub(super) fn parse_filter(text: &str) -> Result<Filter, GraphError> {
    let tokens = tokens(text).ok_or_else(|| refuse(text))?;
    let mut clauses = Vec::new();
    let mut rest = tokens.as_slice();
    loop {
        let [property, op, value, tail @ ..] = rest else {
            return Err(refuse(text));
        };
        clauses.push(clause(property, op, value).ok_or_else(|| refuse(text))?);
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
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
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
