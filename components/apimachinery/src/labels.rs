//! Label selectors: upstream's string syntax, `metav1.LabelSelector` JSON,
//! matching and canonical printing.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use crate::status::go_quote;
use crate::validation::{label_value, qualified_name};

/// Why a label or field selector was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The selector string does not follow the grammar.
    #[error("{0}")]
    Syntax(String),
    /// A requirement is well-formed but has an invalid key, operator or value.
    #[error("{0}")]
    Invalid(String),
    /// A JSON selector has the wrong shape (e.g. a number where a string belongs).
    #[error("{0}")]
    Malformed(String),
}

/// A requirement's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One `key op values` term of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    /// Sorted and deduplicated, so lookups and printing are canonical.
    values: Vec<String>,
}

/// Joins error strings like upstream's aggregate: one bare, several bracketed.
fn aggregate(errs: Vec<String>) -> String {
    if errs.len() == 1 {
        errs.into_iter().collect()
    } else {
        format!("[{}]", errs.join(", "))
    }
}

fn render_list(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
    format!("[{}]", quoted.join(", "))
}

fn key_error(key: &str) -> Option<String> {
    let errs = qualified_name(key);
    (!errs.is_empty())
        .then(|| format!("key: Invalid value: {}: {}", go_quote(key), errs.join("; ")))
}

impl Requirement {
    /// Builds a validated requirement, as upstream's `NewRequirement`.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        let mut errs = Vec::new();
        errs.extend(key_error(key));
        let list_err =
            |detail: &str| format!("values: Invalid value: {}: {detail}", render_list(&values));
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                errs.push(list_err(
                    "for 'in', 'notin' operators, values set can't be empty",
                ));
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                errs.push(list_err(
                    "exact-match compatibility requires one single value",
                ));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                errs.push(list_err(
                    "values set must be empty for exists and does not exist",
                ));
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(list_err(
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(format!(
                            "values[{i}]: Invalid value: {}: for 'Gt', 'Lt' operators, the value must be an integer",
                            go_quote(v)
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let msgs = label_value(v);
            if !msgs.is_empty() {
                errs.push(format!(
                    "values[{i}][{key}]: Invalid value: {}: {}",
                    go_quote(v),
                    msgs.join("; ")
                ));
            }
        }
        if !errs.is_empty() {
            return Err(SelectorError::Invalid(aggregate(errs)));
        }
        let mut values = values;
        values.sort();
        values.dedup();
        Ok(Requirement {
            key: key.to_string(),
            operator,
            values,
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, sorted and without duplicates.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn has_value(&self, v: &str) -> bool {
        self.values.binary_search_by(|x| x.as_str().cmp(v)).is_ok()
    }

    /// Whether `labels` satisfy this requirement. A present but non-string
    /// label value never matches, whatever the operator.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let value = match labels.and_then(|m| m.get(&self.key)) {
            None => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return false,
        };
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => {
                value.is_some_and(|v| self.has_value(v))
            }
            // Upstream: inequality also holds when the label is absent.
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !self.has_value(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(have), Some(want)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let (op, parens) = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => ("=", false),
            Operator::DoubleEquals => ("==", false),
            Operator::NotEquals => ("!=", false),
            Operator::In => (" in ", true),
            Operator::NotIn => (" notin ", true),
            Operator::GreaterThan => (">", false),
            Operator::LessThan => ("<", false),
        };
        f.write_str(op)?;
        let joined = self.values.join(",");
        if parens {
            write!(f, "({joined})")
        } else {
            f.write_str(&joined)
        }
    }
}

/// A conjunction of label requirements, or the special "matches nothing".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    /// Kept sorted by key (stable), as upstream does after parsing.
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// Matches every object.
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// Matches no object (upstream's selector for a nil `metav1.LabelSelector`).
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Parses upstream's string syntax; see [`parse`].
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        parse(s)
    }

    /// Builds an equality selector from a `key: value` map (e.g. a Service
    /// or ReplicationController selector); an empty map matches everything.
    pub fn from_match_labels(map: &Map<String, Value>) -> Result<Self, SelectorError> {
        let mut sel = LabelSelector::everything();
        for (k, v) in map {
            let Value::String(v) = v else {
                return Err(SelectorError::Malformed(format!(
                    "label selector value for {} must be a string",
                    go_quote(k)
                )));
            };
            sel.add(Requirement::new(k, Operator::Equals, vec![v.clone()])?);
        }
        Ok(sel)
    }

    /// Adds a requirement, keeping the key order. Has no effect on `nothing()`.
    pub fn add(&mut self, r: Requirement) {
        if self.nothing {
            return;
        }
        let pos = self.requirements.partition_point(|x| x.key <= r.key);
        self.requirements.insert(pos, r);
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True for a selector that matches everything (no requirements).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    /// Whether an object with these labels (`None` = no labels) is selected.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Bang,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    Open,
    Close,
    Comma,
    End,
}

impl Tok {
    /// The literal text, for error messages.
    fn literal(&self) -> &str {
        match self {
            Tok::Ident(s) => s,
            Tok::Bang => "!",
            Tok::Eq => "=",
            Tok::DoubleEq => "==",
            Tok::NotEq => "!=",
            Tok::Gt => ">",
            Tok::Lt => "<",
            Tok::Open => "(",
            Tok::Close => ")",
            Tok::Comma => ",",
            Tok::End => "",
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn lex(s: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([' ', '\t', '\r', '\n']);
        let Some(c) = rest.chars().next() else {
            toks.push(Tok::End);
            return toks;
        };
        if is_special(c) {
            // Longest match: only "==" and "!=" are two characters long.
            let (tok, len) = if rest.starts_with("==") {
                (Tok::DoubleEq, 2)
            } else if rest.starts_with("!=") {
                (Tok::NotEq, 2)
            } else {
                let t = match c {
                    '=' => Tok::Eq,
                    '!' => Tok::Bang,
                    '(' => Tok::Open,
                    ')' => Tok::Close,
                    ',' => Tok::Comma,
                    '>' => Tok::Gt,
                    _ => Tok::Lt,
                };
                (t, 1)
            };
            toks.push(tok);
            rest = &rest[len..];
        } else {
            let end = rest
                .find(|c: char| is_special(c) || matches!(c, ' ' | '\t' | '\r' | '\n'))
                .unwrap_or(rest.len());
            toks.push(Tok::Ident(rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        self.toks.get(self.pos).unwrap_or(&Tok::End)
    }

    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut reqs = Vec::new();
        loop {
            match self.peek() {
                Tok::Ident(_) | Tok::Bang => {
                    let r = self
                        .requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    reqs.push(r);
                    match self.next() {
                        Tok::End => return Ok(reqs),
                        Tok::Comma => match self.peek() {
                            Tok::Ident(_) | Tok::Bang => {}
                            t => {
                                return Err(format!(
                                    "found '{}', expected: identifier after ','",
                                    t.literal()
                                ))
                            }
                        },
                        t => {
                            return Err(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                t.literal()
                            ))
                        }
                    }
                }
                Tok::End => return Ok(reqs),
                t => {
                    return Err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        t.literal()
                    ))
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let mut does_not_exist = false;
        let mut tok = self.next();
        if tok == Tok::Bang {
            does_not_exist = true;
            tok = self.next();
        }
        let key = match tok {
            Tok::Ident(k) => k,
            t => return Err(format!("found '{}', expected: identifier", t.literal())),
        };
        if let Some(e) = key_error(&key) {
            return Err(e);
        }
        let unary = if does_not_exist {
            Some(Operator::DoesNotExist)
        } else if matches!(self.peek(), Tok::End | Tok::Comma) {
            Some(Operator::Exists)
        } else {
            None
        };
        if let Some(op) = unary {
            return Requirement::new(&key, op, Vec::new()).map_err(|e| e.to_string());
        }
        let op = match self.next() {
            Tok::Ident(s) if s == "in" => Operator::In,
            Tok::Ident(s) if s == "notin" => Operator::NotIn,
            Tok::Eq => Operator::Equals,
            Tok::DoubleEq => Operator::DoubleEquals,
            Tok::NotEq => Operator::NotEquals,
            Tok::Gt => Operator::GreaterThan,
            Tok::Lt => Operator::LessThan,
            t => {
                return Err(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    t.literal()
                ))
            }
        };
        let values = match op {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => self.exact_value()?,
        };
        Requirement::new(&key, op, values).map_err(|e| e.to_string())
    }

    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        if matches!(self.peek(), Tok::End | Tok::Comma) {
            return Ok(vec![String::new()]);
        }
        match self.next() {
            Tok::Ident(v) => Ok(vec![v]),
            t => Err(format!("found '{}', expected: identifier", t.literal())),
        }
    }

    fn value_set(&mut self) -> Result<Vec<String>, String> {
        match self.next() {
            Tok::Open => {}
            t => return Err(format!("found '{}' expected: '('", t.literal())),
        }
        match self.peek() {
            Tok::Ident(_) | Tok::Comma => {
                let values = self.value_list()?;
                match self.next() {
                    Tok::Close => Ok(values),
                    t => Err(format!("found '{}', expected: ')'", t.literal())),
                }
            }
            Tok::Close => {
                self.next();
                // Upstream reads "()" as the set holding only the empty string.
                Ok(vec![String::new()])
            }
            t => Err(format!(
                "found '{}', expected: ',', ')' or identifier",
                t.literal()
            )),
        }
    }

    /// Values up to (not including) `)`; empty entries around commas are "".
    fn value_list(&mut self) -> Result<Vec<String>, String> {
        let mut values = Vec::new();
        loop {
            match self.next() {
                Tok::Ident(v) => {
                    values.push(v);
                    match self.peek() {
                        Tok::Comma => continue,
                        Tok::Close => return Ok(values),
                        t => return Err(format!("found '{}', expected: ',' or ')'", t.literal())),
                    }
                }
                Tok::Comma => {
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    match self.peek() {
                        Tok::Close => {
                            values.push(String::new());
                            return Ok(values);
                        }
                        Tok::Comma => {
                            self.next();
                            values.push(String::new());
                        }
                        _ => {}
                    }
                }
                t => {
                    return Err(format!(
                        "found '{}', expected: ',', or identifier",
                        t.literal()
                    ))
                }
            }
        }
    }
}

/// Parses upstream's selector syntax (`a=b,c!=d,e in (f,g),!h,i`). An empty
/// string selects everything.
pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
    let mut p = Parser {
        toks: lex(s),
        pos: 0,
    };
    let mut reqs = p.parse().map_err(SelectorError::Syntax)?;
    reqs.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(LabelSelector {
        requirements: reqs,
        nothing: false,
    })
}

fn string_list(v: Option<&Value>, what: &str) -> Result<Vec<String>, SelectorError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                _ => Err(SelectorError::Malformed(format!(
                    "{what} must contain only strings"
                ))),
            })
            .collect(),
        Some(_) => Err(SelectorError::Malformed(format!(
            "{what} must be an array of strings"
        ))),
    }
}

/// Converts a `metav1.LabelSelector` JSON object. Like upstream's
/// `LabelSelectorAsSelector`, `null` selects nothing and `{}` everything;
/// callers with different rules for an absent selector check first.
pub fn from_label_selector_json(v: &Value) -> Result<LabelSelector, SelectorError> {
    let obj = match v {
        Value::Null => return Ok(LabelSelector::nothing()),
        Value::Object(o) => o,
        _ => {
            return Err(SelectorError::Malformed(
                "label selector must be an object".to_string(),
            ))
        }
    };
    let mut sel = match obj.get("matchLabels") {
        None | Some(Value::Null) => LabelSelector::everything(),
        Some(Value::Object(m)) => LabelSelector::from_match_labels(m)?,
        Some(_) => {
            return Err(SelectorError::Malformed(
                "matchLabels must be an object of strings".to_string(),
            ))
        }
    };
    let exprs = match obj.get("matchExpressions") {
        None | Some(Value::Null) => return Ok(sel),
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(SelectorError::Malformed(
                "matchExpressions must be an array".to_string(),
            ))
        }
    };
    for (i, expr) in exprs.iter().enumerate() {
        let Some(expr) = expr.as_object() else {
            return Err(SelectorError::Malformed(format!(
                "matchExpressions[{i}] must be an object"
            )));
        };
        let Some(key) = expr.get("key").and_then(Value::as_str) else {
            return Err(SelectorError::Malformed(format!(
                "matchExpressions[{i}].key must be a string"
            )));
        };
        let Some(op) = expr.get("operator").and_then(Value::as_str) else {
            return Err(SelectorError::Malformed(format!(
                "matchExpressions[{i}].operator must be a string"
            )));
        };
        let op = match op {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            other => {
                return Err(SelectorError::Invalid(format!(
                    "{} is not a valid label selector operator",
                    go_quote(other)
                )))
            }
        };
        let values = string_list(expr.get("values"), &format!("matchExpressions[{i}].values"))?;
        sel.add(Requirement::new(key, op, values)?);
    }
    Ok(sel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn sel(s: &str) -> LabelSelector {
        parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn empty_matches_everything() {
        for s in ["", "   "] {
            let sel = sel(s);
            assert!(sel.is_empty());
            assert!(sel.matches(None));
            assert!(sel.matches(Some(&labels(json!({"a": "b"})))));
            assert_eq!(sel.to_string(), "");
        }
    }

    #[test]
    fn equality_and_inequality() {
        let l = labels(json!({"app": "web", "tier": "fe"}));
        assert!(sel("app=web").matches(Some(&l)));
        assert!(sel("app==web").matches(Some(&l)));
        assert!(!sel("app=db").matches(Some(&l)));
        assert!(sel("app!=db").matches(Some(&l)));
        assert!(!sel("app!=web").matches(Some(&l)));
        // Missing key satisfies != and notin.
        assert!(sel("missing!=x").matches(Some(&l)));
        assert!(sel("missing notin (x)").matches(None));
        assert!(!sel("missing=x").matches(None));
        assert!(sel("app=web,tier=fe").matches(Some(&l)));
        assert!(!sel("app=web,tier=be").matches(Some(&l)));
    }

    #[test]
    fn set_operators_and_whitespace() {
        let l = labels(json!({"env": "prod"}));
        assert!(sel("env in (prod,dev)").matches(Some(&l)));
        assert!(sel("env in ( dev , prod )").matches(Some(&l)));
        assert!(!sel("env notin (prod)").matches(Some(&l)));
        assert!(sel("env notin (dev)").matches(Some(&l)));
        assert!(sel("env").matches(Some(&l)));
        assert!(!sel("!env").matches(Some(&l)));
        assert!(sel("! other").matches(Some(&l)));
        assert!(sel("  env = prod , !x ").matches(Some(&l)));
    }

    #[test]
    fn empty_values() {
        let l = labels(json!({"k": ""}));
        assert!(sel("k=").matches(Some(&l)));
        assert!(sel("k=,j!=").matches(Some(&l)));
        assert!(!sel("k=").matches(None));
        let s = sel("k in ()");
        assert_eq!(s.requirements()[0].values(), &[String::new()]);
        let s = sel("k in (,a,,b,)");
        assert_eq!(s.requirements()[0].values(), &["", "a", "b"]);
    }

    #[test]
    fn numeric_comparisons() {
        let l = labels(json!({"n": "5", "s": "x"}));
        assert!(sel("n>4").matches(Some(&l)));
        assert!(!sel("n>5").matches(Some(&l)));
        assert!(sel("n<6").matches(Some(&l)));
        assert!(!sel("s<6").matches(Some(&l)));
        assert!(!sel("missing<6").matches(Some(&l)));
        let err = parse("n>x").unwrap_err().to_string();
        assert!(
            err.contains("for 'Gt', 'Lt' operators, the value must be an integer"),
            "{err}"
        );
    }

    #[test]
    fn non_string_values_never_match() {
        let l = labels(json!({"n": 5}));
        for s in ["n", "!n", "n!=5", "n notin (x)", "n=5"] {
            assert!(!sel(s).matches(Some(&l)), "{s}");
        }
    }

    #[test]
    fn canonical_display() {
        assert_eq!(
            sel("tier in (b,a),app=d").to_string(),
            "app=d,tier in (a,b)"
        );
        assert_eq!(
            sel("x,!y,a!=b,c==d,e notin (f),n>1,m<2").to_string(),
            "a!=b,c==d,e notin (f),m<2,n>1,x,!y"
        );
        let s = sel("b=1,a in (z,y,z)");
        assert_eq!(s.to_string(), "a in (y,z),b=1");
        assert_eq!(sel(&s.to_string()), s);
    }

    #[test]
    fn syntax_errors() {
        let cases = [
            ("a=b,", "found '', expected: identifier after ','"),
            ("a=b c", "found 'c', expected: ',' or 'end of string'"),
            (
                "=b",
                "found '=', expected: !, identifier, or 'end of string'",
            ),
            (
                "a b",
                "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "a in",
                "unable to parse requirement: found '' expected: '('",
            ),
            (
                "a in (b",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            (
                "a in (=)",
                "unable to parse requirement: found '=', expected: ',', ')' or identifier",
            ),
            (
                "a=(",
                "unable to parse requirement: found '(', expected: identifier",
            ),
            (
                "!=a",
                "found '!=', expected: !, identifier, or 'end of string'",
            ),
            ("!a=b", "found '=', expected: ',' or 'end of string'"),
            (
                "a in (b,=)",
                "unable to parse requirement: found '=', expected: ',', or identifier",
            ),
        ];
        for (input, want) in cases {
            let err = parse(input).unwrap_err();
            assert!(matches!(err, SelectorError::Syntax(_)));
            assert_eq!(err.to_string(), want, "input {input:?}");
        }
    }

    #[test]
    fn validation_errors() {
        let err = parse("a_=b").unwrap_err().to_string();
        assert!(err.starts_with("unable to parse requirement: key: Invalid value: \"a_\": name part must consist of"), "{err}");
        let err = parse("a=b_").unwrap_err().to_string();
        assert!(err.starts_with("unable to parse requirement: values[0][a]: Invalid value: \"b_\": a valid label must be"), "{err}");
        let long = "v".repeat(64);
        let err = parse(&format!("a={long}")).unwrap_err().to_string();
        assert!(err.contains("must be no more than 63 characters"), "{err}");
        assert!(parse("example.com/app=x").is_ok());
        assert!(parse("Bad/app=x").is_err());
    }

    #[test]
    fn json_selectors() {
        assert!(from_label_selector_json(&Value::Null).unwrap().is_nothing());
        assert!(!from_label_selector_json(&Value::Null)
            .unwrap()
            .matches(None));
        let all = from_label_selector_json(&json!({})).unwrap();
        assert!(all.is_empty() && all.matches(None));
        let s = from_label_selector_json(&json!({
            "matchLabels": {"tier": "fe", "app": "d"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["b", "a"]},
                {"key": "gone", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap();
        assert_eq!(s.to_string(), "app=d,env in (a,b),!gone,tier=fe");
        assert!(s.matches(Some(&labels(json!({"app": "d", "tier": "fe", "env": "a"})))));
        assert!(!s.matches(Some(&labels(
            json!({"app": "d", "tier": "fe", "env": "a", "gone": "x"})
        ))));
    }

    #[test]
    fn json_selector_errors() {
        let err = from_label_selector_json(
            &json!({"matchExpressions": [{"key": "a", "operator": "Foo"}]}),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"Foo\" is not a valid label selector operator"
        );
        let err = from_label_selector_json(
            &json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty"
        );
        let err = from_label_selector_json(
            &json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
        )
        .unwrap_err();
        assert!(err
            .to_string()
            .contains("values set must be empty for exists and does not exist"));
        for bad in [
            json!("x"),
            json!({"matchLabels": []}),
            json!({"matchLabels": {"a": 1}}),
            json!({"matchExpressions": {}}),
            json!({"matchExpressions": [1]}),
            json!({"matchExpressions": [{"operator": "In"}]}),
            json!({"matchExpressions": [{"key": "a"}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": "x"}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": [1]}]}),
        ] {
            assert!(
                matches!(
                    from_label_selector_json(&bad),
                    Err(SelectorError::Malformed(_))
                ),
                "{bad}"
            );
        }
        let err = from_label_selector_json(&json!({"matchLabels": {"a_": "b"}})).unwrap_err();
        assert!(matches!(err, SelectorError::Invalid(_)));
    }

    #[test]
    fn requirement_new_aggregates() {
        let err = Requirement::new("a_", Operator::Equals, vec![])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("[key: Invalid value: \"a_\""), "{err}");
        assert!(err.contains(
            ", values: Invalid value: []: exact-match compatibility requires one single value]"
        ));
    }

    #[test]
    fn nothing_and_add() {
        let mut n = LabelSelector::nothing();
        n.add(Requirement::new("a", Operator::Exists, vec![]).unwrap());
        assert!(n.requirements().is_empty());
        assert!(!n.is_empty());
        assert!(!n.matches(Some(&labels(json!({"a": "b"})))));
        let mut s = LabelSelector::everything();
        s.add(Requirement::new("b", Operator::Exists, vec![]).unwrap());
        s.add(Requirement::new("a", Operator::Exists, vec![]).unwrap());
        assert_eq!(s.to_string(), "a,b");
        assert_eq!("a,b".parse::<LabelSelector>().unwrap(), s);
    }
}
