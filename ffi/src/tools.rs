//! Tools a conversation's assistant may call, as the app declares them, and the results the
//! app sends back. The calls themselves arrive as [`crate::ReplyEvent::ToolCall`].

use serde_json::Value;

use crate::error::TernError;
use crate::model::Model;

/// A function the model may call: shown to the model through the chat template's `tools`,
/// and enforced: once the model opens a call, the rest of it is constrained to one of the
/// declared tools with arguments valid under that tool's schema.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Tool {
    /// Its name, as the model must write it (unique within a conversation).
    pub name: String,
    /// What it does, for the model.
    #[uniffi(default = "")]
    pub description: String,
    /// JSON Schema of its arguments, as JSON text: an object schema, e.g.
    /// `{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}`.
    /// Empty (the default): the tool takes no arguments. A schema that does not parse fails
    /// with `InvalidSchema` (naming the line and column); one the engine cannot enforce fails
    /// with `UnsupportedSchema`.
    // (An empty default, not the schema: uniffi 0.32 writes string defaults into the Kotlin
    // and Swift sources without escaping their quotes.)
    #[uniffi(default = "")]
    pub parameters_json: String,
}

/// A tool call an assistant message made, as [`crate::ChatMessage::tool_calls`] records it.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct ToolCallRecord {
    /// The tool called.
    pub name: String,
    /// Its arguments, as JSON text (an object).
    pub arguments_json: String,
}

/// What a tool call returned, sent back with `Conversation::send_tool_results`.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct ToolResult {
    /// The name of the tool that was called (from [`crate::ReplyEvent::ToolCall`]).
    pub name: String,
    /// What it returned, as the model should read it (often JSON text).
    pub content: String,
}

#[uniffi::export]
impl Model {
    /// Prepares the model's vocabulary for the constraint engine that tool calls and JSON
    /// schemas use (about a second for a 150k-token vocabulary), so that the first
    /// conversation with tools is made without that wait. Blocking: call it off the UI thread,
    /// e.g. right after loading. Idempotent; later calls return at once.
    pub fn prepare_tools(&self) -> Result<(), TernError> {
        self.constraint_vocab().map(drop)
    }
}

/// The runtime's tools for `tools`: names non-empty and unique, each schema a JSON object.
pub(crate) fn runtime_tools(
    tools: &[Tool],
) -> Result<Vec<tern_runtime::constrain::tools::Tool>, TernError> {
    let mut out: Vec<tern_runtime::constrain::tools::Tool> = Vec::with_capacity(tools.len());
    for t in tools {
        if t.name.is_empty() {
            return Err(TernError::InvalidArgument {
                reason: "a tool has an empty name".into(),
            });
        }
        if out.iter().any(|u| u.name == t.name) {
            return Err(TernError::InvalidArgument {
                reason: format!("tool `{}` is declared twice", t.name),
            });
        }
        let what = format!("parameters of tool `{}`", t.name);
        let text = match t.parameters_json.trim() {
            "" => r#"{"type": "object", "properties": {}, "additionalProperties": false}"#,
            text => text,
        };
        let parameters: Value =
            serde_json::from_str(text).map_err(|e| TernError::InvalidSchema {
                what: what.clone(),
                line: e.line() as u32,
                column: e.column() as u32,
                reason: e.to_string(),
            })?;
        if !parameters.is_object() {
            return Err(TernError::InvalidSchema {
                what,
                line: 1,
                column: 1,
                reason: "a schema must be a JSON object".into(),
            });
        }
        out.push(tern_runtime::constrain::tools::Tool {
            name: t.name.clone(),
            description: t.description.clone(),
            parameters,
        });
    }
    Ok(out)
}
