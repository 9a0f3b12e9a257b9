//! [`ChatTemplate`]: a Hugging Face `chat_template` (Jinja) rendered with minijinja the way
//! transformers renders it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Local};
use minijinja::value::Value;
use minijinja::{Environment, Error as JinjaError, ErrorKind};
use serde::Serialize;
use snafu::ResultExt;

use super::Message;
use super::error::{ChatError, ParseSnafu, Raised, VariableSnafu, render_error};

const TEMPLATE: &str = "chat";

/// A compiled chat template plus the special tokens it may print.
///
/// The environment matches transformers' `render_jinja_template`: `trim_blocks` and
/// `lstrip_blocks` on, `{% break %}`/`{% continue %}`, `raise_exception(msg)`,
/// `strftime_now(fmt)`, a Python-style `tojson`, and Python string/dict methods
/// (`.strip()`, `.split()`, `.startswith()`, `.items()`, …) from minijinja-contrib's
/// pycompat. The variables are `messages`, `add_generation_prompt`, `bos_token`,
/// `eos_token` and whatever [`with_var`](Self::with_var) adds (`tools`,
/// `enable_thinking`, `date_string`, …).
///
/// transformers' `{% generation %}…{% endgeneration %}` markers (assistant masks in a few
/// templates) are accepted and render their body unchanged; assistant spans are found by
/// rendering prefixes instead (see [`ChatRenderer`](super::ChatRenderer)).
#[derive(Clone)]
pub struct ChatTemplate {
    name: String,
    env: Arc<Environment<'static>>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    vars: BTreeMap<String, Value>,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("name", &self.name)
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source`; `name` appears in errors. `strftime_now` reads the local clock.
    pub fn new(name: impl Into<String>, source: impl Into<String>) -> Result<Self, ChatError> {
        Self::build(name.into(), source.into(), None)
    }

    /// As [`new`](Self::new), with `strftime_now` answering a fixed time (reproducible
    /// prompts for templates that print today's date, such as Llama 3.1's).
    pub fn with_fixed_now(
        name: impl Into<String>,
        source: impl Into<String>,
        now: DateTime<FixedOffset>,
    ) -> Result<Self, ChatError> {
        Self::build(name.into(), source.into(), Some(now))
    }

    fn build(
        name: String,
        source: String,
        now: Option<DateTime<FixedOffset>>,
    ) -> Result<Self, ChatError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<Value, JinjaError> {
                Err(
                    JinjaError::new(ErrorKind::InvalidOperation, message.clone())
                        .with_source(Raised(message)),
                )
            },
        );
        env.add_function("strftime_now", move |format: String| -> String {
            // transformers calls `datetime.now().strftime(format)` (local time).
            match now {
                Some(now) => now.format(&format).to_string(),
                None => Local::now().format(&format).to_string(),
            }
        });
        env.add_filter("tojson", super::json::tojson);
        env.add_template_owned(TEMPLATE, without_generation_tags(&source))
            .context(ParseSnafu { name: name.clone() })?;
        Ok(Self {
            name,
            env: Arc::new(env),
            bos_token: None,
            eos_token: None,
            vars: BTreeMap::new(),
        })
    }

    /// Sets the `bos_token` and `eos_token` strings the template may print (normally the
    /// tokenizer's; an unset one renders as an empty string).
    #[must_use]
    pub fn special_tokens(mut self, bos: Option<&str>, eos: Option<&str>) -> Self {
        self.bos_token = bos.map(str::to_owned);
        self.eos_token = eos.map(str::to_owned);
        self
    }

    /// Adds a template variable (transformers' `**kwargs` of `apply_chat_template`), such
    /// as `enable_thinking` or `tools`. Maps keep the field order of the serialized value.
    pub fn with_var(
        mut self,
        name: impl Into<String>,
        value: impl Serialize,
    ) -> Result<Self, ChatError> {
        let name = name.into();
        let value = Value::from_serialize(&value);
        // from_serialize reports failures as an invalid value; surface them now.
        if let Some(err) = value_error(&value) {
            return Err(err).context(VariableSnafu { name });
        }
        self.vars.insert(name, value);
        Ok(self)
    }

    /// The name given at construction.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renders `messages` as text (transformers' `apply_chat_template(..., tokenize=False)`).
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let template = self
            .env
            .get_template(TEMPLATE)
            .map_err(|err| render_error(&self.name, err))?;
        let mut ctx: BTreeMap<&str, Value> = BTreeMap::new();
        for (k, v) in &self.vars {
            ctx.insert(k.as_str(), v.clone());
        }
        ctx.insert("messages", Value::from_serialize(messages));
        ctx.insert("add_generation_prompt", Value::from(add_generation_prompt));
        let token = |t: &Option<String>| Value::from(t.clone().unwrap_or_default());
        ctx.insert("bos_token", token(&self.bos_token));
        ctx.insert("eos_token", token(&self.eos_token));
        template
            .render(ctx)
            .map_err(|err| render_error(&self.name, err))
    }
}

/// The error inside a value that failed to serialize, if any.
fn value_error(value: &Value) -> Option<JinjaError> {
    (value.kind() == minijinja::value::ValueKind::Invalid)
        .then(|| JinjaError::new(ErrorKind::BadSerialization, value.to_string()))
}

/// Rewrites `{% generation %}` / `{% endgeneration %}` (a transformers extension minijinja
/// does not know) as `{% if true %}` / `{% endif %}`, keeping their whitespace control so
/// that the output is unchanged.
fn without_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(at) = rest.find("{%") {
        out.push_str(&rest[..at]);
        let tag = &rest[at..];
        let Some(close) = tag.find("%}") else {
            break;
        };
        let inner = &tag[2..close];
        let (open_ws, body) = split_ws_control(inner, true);
        let (body, close_ws) = split_ws_control(body, false);
        let replacement = match body.trim() {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(r) => {
                out.push_str("{%");
                out.push_str(open_ws);
                out.push(' ');
                out.push_str(r);
                out.push(' ');
                out.push_str(close_ws);
                out.push_str("%}");
            }
            None => out.push_str(&tag[..close + 2]),
        }
        rest = &tag[close + 2..];
    }
    out.push_str(rest);
    out
}

/// Splits a leading (or trailing) `-`/`+` whitespace-control sign off a tag's inside.
fn split_ws_control(inner: &str, leading: bool) -> (&str, &str) {
    if leading {
        match inner.chars().next() {
            Some('-' | '+') => (&inner[..1], &inner[1..]),
            _ => ("", inner),
        }
    } else {
        match inner.trim_end().chars().last() {
            Some(c @ ('-' | '+')) => {
                let trimmed = inner.trim_end();
                let cut = trimmed.len() - c.len_utf8();
                (&trimmed[..cut], &trimmed[cut..])
            }
            _ => (inner, ""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tags_become_plain_blocks() {
        assert_eq!(
            without_generation_tags(
                "a{%- generation -%}b{% endgeneration %}c{% if x %}{% endif %}"
            ),
            "a{%- if true -%}b{% endif %}c{% if x %}{% endif %}"
        );
        let t = ChatTemplate::new(
            "g",
            "{% for m in messages %}{% generation %}[{{ m.content }}]{% endgeneration %}\n{% endfor %}",
        )
        .unwrap();
        let out = t
            .render(&[super::super::Message::assistant("x")], false)
            .unwrap();
        // trim_blocks drops the newline after the block tag, as jinja2 does for HF.
        assert_eq!(out, "[x]");
    }
}
