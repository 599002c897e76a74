//! The JSONPath subset CRD printer columns use: `.spec.replicas`, `.items[0].name`,
//! `.status.conditions[?(@.type=="Ready")].status`, optionally wrapped in `{...}`.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    /// `[?(@.key=="value")]`: the first element whose field equals the value.
    Filter(String, Value),
}

#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath(Vec<Step>);

pub fn parse(text: &str) -> Result<JsonPath, String> {
    let text = text.trim();
    let text = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(text);
    let mut rest = text
        .strip_prefix('.')
        .ok_or_else(|| format!("{text:?} must start with '.'"))?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after
                .find(']')
                .ok_or_else(|| format!("unclosed '[' in {text:?}"))?;
            let inner = &after[..end];
            steps.push(bracket(inner).ok_or_else(|| format!("unsupported [{inner}] in {text:?}"))?);
            rest = &after[end + 1..];
            rest = rest.strip_prefix('.').unwrap_or(rest);
            continue;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let field = &rest[..end];
        if field.is_empty() {
            return Err(format!("empty field name in {text:?}"));
        }
        steps.push(Step::Field(field.to_string()));
        rest = &rest[end..];
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    Ok(JsonPath(steps))
}

fn bracket(inner: &str) -> Option<Step> {
    if let Ok(i) = inner.parse::<usize>() {
        return Some(Step::Index(i));
    }
    let cond = inner.strip_prefix("?(@.")?.strip_suffix(')')?;
    let (key, value) = cond.split_once("==")?;
    let value = value.trim();
    let value = if let Some(s) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Value::String(s.to_string())
    } else if let Some(s) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        Value::String(s.to_string())
    } else {
        serde_json::from_str(value).ok()?
    };
    Some(Step::Filter(key.trim().to_string(), value))
}

impl JsonPath {
    pub fn eval<'a>(&self, object: &'a Value) -> Option<&'a Value> {
        let mut at = object;
        for step in &self.0 {
            at = match step {
                Step::Field(f) => at.get(f)?,
                Step::Index(i) => at.get(*i)?,
                Step::Filter(key, value) => at
                    .as_array()?
                    .iter()
                    .find(|item| item.get(key) == Some(value))?,
            };
        }
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths() {
        let o = json!({"spec": {"replicas": 3, "list": [{"n": "a"}, {"n": "b"}]},
                       "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let at = |p: &str| parse(p).unwrap().eval(&o).cloned();
        assert_eq!(at(".spec.replicas"), Some(json!(3)));
        assert_eq!(at("{.spec.list[1].n}"), Some(json!("b")));
        assert_eq!(
            at(".status.conditions[?(@.type==\"Ready\")].status"),
            Some(json!("True"))
        );
        assert_eq!(at(".spec.missing"), None);
        assert!(parse("spec").is_err());
        assert!(parse(".spec[").is_err());
    }
}
