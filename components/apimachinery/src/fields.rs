//! Field selectors (`metadata.name=x,spec.nodeName!=`), with upstream's
//! backslash escaping of `,`, `=` and `\` in values.

use std::fmt;
use std::str::FromStr;

pub use crate::labels::SelectorError;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    field: String,
    value: String,
    negated: bool,
}

/// A conjunction of `field=value` / `field!=value` terms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    terms: Vec<Term>,
}

/// Splits on separators not preceded by a backslash escape.
fn split_terms(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Finds the first unescaped operator; `!=` and `==` win over `=`.
fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    let mut escaped = false;
    for (i, c) in term.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
            continue;
        }
        let rest = &term[i..];
        for (op, negated) in [("!=", true), ("==", false), ("=", false)] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], negated, value));
            }
        }
    }
    None
}

fn unescape(value: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(value.len());
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(SelectorError::Syntax(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                )));
            }
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' || c == '=' {
            return Err(SelectorError::Syntax(format!(
                "invalid field selector: unescaped character in value: {c}"
            )));
        } else {
            out.push(c);
        }
    }
    if escaped {
        return Err(SelectorError::Syntax(
            "invalid field selector: invalid escape sequence: \\".to_string(),
        ));
    }
    Ok(out)
}

/// Escapes a value so it survives [`parse`] unchanged.
pub fn escape_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Parses a field selector. An empty string selects everything; empty
/// values (`spec.nodeName=`) compare against the empty string.
pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
    let mut parts = split_terms(s);
    // Upstream sorts terms, which also makes Display canonical.
    parts.sort_unstable();
    let mut terms = Vec::new();
    for part in parts {
        if part.is_empty() {
            continue;
        }
        let Some((field, negated, value)) = split_term(part) else {
            return Err(SelectorError::Syntax(format!(
                "invalid selector: '{s}'; can't understand '{part}'"
            )));
        };
        terms.push(Term {
            field: field.to_string(),
            value: unescape(value)?,
            negated,
        });
    }
    Ok(FieldSelector { terms })
}

impl FieldSelector {
    /// Matches every object.
    pub fn everything() -> Self {
        FieldSelector::default()
    }

    /// Parses a selector; see [`parse`].
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        parse(s)
    }

    /// True when there are no terms.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The field names used, in term order (may repeat).
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.terms.iter().map(|t| t.field.as_str())
    }

    /// Whether every term holds; `get` returns a field's value, "" if absent.
    pub fn matches(&self, get: impl Fn(&str) -> String) -> bool {
        self.terms
            .iter()
            .all(|t| (get(&t.field) == t.value) != t.negated)
    }

    /// The value required by a `field=v` term, if there is one.
    pub fn exact_value(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| !t.negated && t.field == field)
            .map(|t| t.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = if t.negated { "!=" } else { "=" };
            write!(f, "{}{op}{}", t.field, escape_value(&t.value))?;
        }
        Ok(())
    }
}

impl FromStr for FieldSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn getter(pairs: &[(&str, &str)]) -> impl Fn(&str) -> String {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned().unwrap_or_default()
    }

    #[test]
    fn empty_selects_everything() {
        let s = parse("").unwrap();
        assert!(s.is_empty());
        assert!(s.matches(getter(&[])));
        assert_eq!(s.fields().count(), 0);
        assert!(parse(",,").unwrap().is_empty());
    }

    #[test]
    fn operators() {
        let get = getter(&[("metadata.name", "a"), ("spec.nodeName", "n1")]);
        assert!(parse("metadata.name=a").unwrap().matches(&get));
        assert!(parse("metadata.name==a").unwrap().matches(&get));
        assert!(!parse("metadata.name!=a").unwrap().matches(&get));
        assert!(parse("metadata.name!=b").unwrap().matches(&get));
        assert!(parse("metadata.name=a,spec.nodeName=n1")
            .unwrap()
            .matches(&get));
        assert!(!parse("metadata.name=a,spec.nodeName=n2")
            .unwrap()
            .matches(&get));
    }

    #[test]
    fn empty_values_compare_to_empty() {
        let unscheduled = getter(&[("metadata.name", "a")]);
        let scheduled = getter(&[("spec.nodeName", "n1")]);
        let s = parse("spec.nodeName=").unwrap();
        assert!(s.matches(&unscheduled));
        assert!(!s.matches(&scheduled));
        let s = parse("spec.nodeName!=").unwrap();
        assert!(!s.matches(&unscheduled));
        assert!(s.matches(&scheduled));
        assert_eq!(s.exact_value("spec.nodeName"), None);
        assert_eq!(
            parse("spec.nodeName=")
                .unwrap()
                .exact_value("spec.nodeName"),
            Some("")
        );
    }

    #[test]
    fn fields_and_exact_value() {
        let s = parse("status.phase!=Running,metadata.name=x").unwrap();
        let mut fields: Vec<&str> = s.fields().collect();
        fields.sort();
        assert_eq!(fields, vec!["metadata.name", "status.phase"]);
        assert_eq!(s.exact_value("metadata.name"), Some("x"));
        assert_eq!(s.exact_value("status.phase"), None);
        assert_eq!(s.exact_value("other"), None);
        assert_eq!(
            parse("metadata.name==y")
                .unwrap()
                .exact_value("metadata.name"),
            Some("y")
        );
    }

    #[test]
    fn escapes() {
        let s = parse(r"metadata.name=a\,b\=c\\d,x=y").unwrap();
        assert_eq!(s.exact_value("metadata.name"), Some(r"a,b=c\d"));
        assert_eq!(s.exact_value("x"), Some("y"));
        assert_eq!(s.to_string(), r"metadata.name=a\,b\=c\\d,x=y");
        assert_eq!(parse(&s.to_string()).unwrap(), s);
        // An escaped '=' in the field name is not an operator.
        let s = parse(r"a\=b=c").unwrap();
        assert_eq!(s.fields().collect::<Vec<_>>(), vec![r"a\=b"]);
        assert_eq!(escape_value(r"x,y=z\"), r"x\,y\=z\\");
    }

    #[test]
    fn errors() {
        let err = parse("metadata.name").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
        );
        let err = parse("a=b,c").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid selector: 'a=b,c'; can't understand 'c'"
        );
        assert_eq!(
            parse(r"a=b\x").unwrap_err().to_string(),
            r"invalid field selector: invalid escape sequence: \x"
        );
        assert_eq!(
            parse(r"a=b\").unwrap_err().to_string(),
            r"invalid field selector: invalid escape sequence: \"
        );
        assert_eq!(
            parse("a=b=c").unwrap_err().to_string(),
            "invalid field selector: unescaped character in value: ="
        );
        assert!(matches!(parse("x"), Err(SelectorError::Syntax(_))));
    }

    #[test]
    fn display_is_sorted() {
        let s: FieldSelector = "b=1,a!=2".parse().unwrap();
        assert_eq!(s.to_string(), "a!=2,b=1");
    }
}
