//! Text to tree: JSON or YAML into one ordered tree (a `yaml_serde::Value`
//! whose mapping keys are all strings), within bounds that hostile input
//! cannot push: the text's size, the number of values and the bytes of text
//! the tree holds (YAML aliases are expanded, so a small document can stand
//! for a huge tree), and the depth. A key that appears twice in one mapping is
//! refused, in JSON as in YAML, instead of the last one silently winning.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use yaml_serde::{Mapping, Value};

use super::{pointer, Problem};

/// The largest document read: larger ones are refused before parsing.
pub const MAX_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;
/// The most values (mappings, sequences, scalars and keys) a document may
/// expand to. Large public API documents have a few hundred thousand.
pub const MAX_VALUES: usize = 1_000_000;
/// The most bytes of strings a document may expand to (four times the largest
/// document: only aliases get past that).
pub const MAX_STRING_BYTES: usize = 4 * MAX_DOCUMENT_BYTES;
/// The deepest nesting of mappings and sequences (the parsers stop at 128).
pub const MAX_DEPTH: usize = 64;

pub(super) fn too_large(len: u64) -> Problem {
    Problem::new(
        "",
        format!(
            "the document is {len} bytes; keygate reads documents of at most {MAX_DOCUMENT_BYTES} bytes ({} MiB)",
            MAX_DOCUMENT_BYTES >> 20
        ),
    )
}

/// What kind of value this is, for messages.
pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// The tree of `text`: JSON when its first character (after a byte-order
/// mark and white space) is `{` or `[`, else YAML (JSON is YAML too, but the
/// JSON parser's messages are the better ones for a JSON file).
pub(super) fn read(text: &str) -> Result<Value, Problem> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(too_large(text.len() as u64));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let looks_like_json = matches!(text.trim_start().chars().next(), Some('{' | '['));
    let mut budget =
        Budget { values: 0, string_bytes: 0, depth: 0, yaml: !looks_like_json, at: Vec::new(), refused: None };
    // The parsers' own errors say where in the text; the reader's own
    // refusals (`Budget::refuse`) also say where in the document.
    let read = if looks_like_json {
        let mut parser = serde_json::Deserializer::from_str(text);
        Node { budget: &mut budget }
            .deserialize(&mut parser)
            .and_then(|tree| parser.end().map(|()| tree))
            .map_err(|error| (format!("not valid JSON: {error}"), error.line(), error.column()))
    } else {
        Node { budget: &mut budget }.deserialize(yaml_serde::Deserializer::from_str(text)).map_err(|error| {
            let (line, column) = error.location().map_or((0, 0), |at| (at.line(), at.column()));
            // yaml_serde's own alias limit (100 alias uses per event) says only this.
            let hint = if error.to_string().contains("repetition limit exceeded") {
                " (YAML aliases expand to too much)"
            } else {
                ""
            };
            (format!("not valid YAML: {error}{hint}"), line, column)
        })
    };
    read.map_err(|(message, line, column)| match budget.refused.take() {
        Some((at, refusal)) if line > 0 => Problem::new(at, format!("{refusal} (line {line}, column {column})")),
        Some((at, refusal)) => Problem::new(at, refusal),
        None => Problem::new("", message),
    })
}

struct Budget {
    values: usize,
    string_bytes: usize,
    depth: usize,
    yaml: bool,
    /// The reference tokens (escaped) of the value being read.
    at: Vec<String>,
    /// Where the reader refused the document (a pointer), and why.
    refused: Option<(String, String)>,
}

impl Budget {
    fn count<E: de::Error>(&mut self, string_bytes: usize) -> Result<(), E> {
        self.values += 1;
        self.string_bytes += string_bytes;
        if self.values > MAX_VALUES {
            let message = format!("the document expands to more than {MAX_VALUES} values{}", self.alias_hint());
            return Err(self.refuse(message));
        }
        if self.string_bytes > MAX_STRING_BYTES {
            let message =
                format!("the document expands to more than {MAX_STRING_BYTES} bytes of text{}", self.alias_hint());
            return Err(self.refuse(message));
        }
        Ok(())
    }

    fn refuse<E: de::Error>(&mut self, message: impl fmt::Display) -> E {
        let at = self.at.iter().fold(String::new(), |pointer, token| pointer + "/" + token);
        let message = message.to_string();
        let error = E::custom(&message);
        self.refused = Some((at, message));
        error
    }

    fn alias_hint(&self) -> &'static str {
        if self.yaml {
            " (YAML aliases are expanded where they are used)"
        } else {
            ""
        }
    }

    fn enter<E: de::Error>(&mut self) -> Result<(), E> {
        self.count(0)?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.refuse(format_args!("the document is nested more than {MAX_DEPTH} levels deep")));
        }
        Ok(())
    }
}

/// One value of the tree, built within the budget.
struct Node<'b> {
    budget: &'b mut Budget,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON or YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.budget.count(0)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.budget.count(0)?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.budget.count(0)?;
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.budget.count(0)?;
        Ok(Value::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.budget.count(v.len())?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.budget.count(0)?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Value, E> {
        Err(E::custom("binary values are not supported"))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<Value, A::Error> {
        // yaml_serde hands a value with a custom tag (`!Ref x`) over as an
        // enum. OpenAPI has no tags; reading it as the untagged value would
        // hide what the author meant.
        Err(self.budget.refuse("YAML tags (such as `!Ref`) are not supported in an OpenAPI document"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.budget.enter()?;
        let mut items = Vec::new();
        loop {
            self.budget.at.push(items.len().to_string());
            let Some(item) = seq.next_element_seed(Node { budget: &mut *self.budget })? else { break };
            self.budget.at.pop();
            items.push(item);
        }
        self.budget.at.pop();
        self.budget.depth -= 1;
        Ok(Value::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.budget.enter()?;
        let mut mapping = Mapping::new();
        while let Some(key) = map.next_key_seed(Key { budget: &mut *self.budget })? {
            if mapping.contains_key(key.as_str()) {
                return Err(self
                    .budget
                    .refuse(format_args!("duplicate key `{key}` (each key may appear once in a mapping)")));
            }
            if self.budget.yaml && key == "<<" {
                return Err(self.budget.refuse("YAML merge keys (`<<`) are not supported; write the keys out"));
            }
            self.budget.at.push(pointer::push("", &key)[1..].to_owned());
            let value = map.next_value_seed(Node { budget: &mut *self.budget })?;
            self.budget.at.pop();
            mapping.insert(Value::String(key), value);
        }
        self.budget.depth -= 1;
        Ok(Value::Mapping(mapping))
    }
}

/// A mapping key, always read as a string: YAML's `200:` is the key "200",
/// as OpenAPI means it.
struct Key<'b> {
    budget: &'b mut Budget,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_string(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.budget.count(v.len())?;
        Ok(v.to_owned())
    }
}
