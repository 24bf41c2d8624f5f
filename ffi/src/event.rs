//! What a reply stream carries: text as it is generated, tool calls, then how the reply ended.

use crate::error::TernError;
use crate::session::{GenerationStats, Sink, StopReason};

/// One event of a reply: any number of [`ReplyEvent::Text`] and, in a conversation with
/// tools, [`ReplyEvent::ToolCall`] (at most one [`ReplyEvent::IncompleteToolCall`], last),
/// then exactly one [`ReplyEvent::Done`] when the reply ends normally (a failure or a cancel
/// ends the stream with an error instead).
///
/// Kotlin's `Flow<ReplyEvent>` and Swift's `AsyncThrowingStream<ReplyEvent, Error>` carry this
/// one type, so both languages see the same cases. Non-exhaustive: later versions may add
/// cases, so `when`/`switch` over it keeps a default branch.
#[derive(Clone, Debug, PartialEq, uniffi::Enum)]
#[non_exhaustive]
pub enum ReplyEvent {
    /// More of the reply: one or more tokens' worth of complete UTF-8.
    Text {
        /// The new text.
        text: String,
    },
    /// The model called a tool: run it, then answer with
    /// `Conversation::send_tool_results`. The call's text is not part of the reply's text.
    ToolCall {
        /// The tool's name: one of the declared tools.
        name: String,
        /// The arguments as a JSON object, valid under the tool's schema.
        arguments_json: String,
    },
    /// The reply ended (token limit, full context) in the middle of a call: nothing to run.
    /// Ask again with a larger `max_tokens`.
    IncompleteToolCall {
        /// What was written of the call.
        raw: String,
    },
    /// The reply ended: why, and its counts and speeds (the same as the object's `stats`
    /// afterwards, but tied to this reply, with no race against the next one).
    Done {
        /// Why it ended (`stats.stop_reason` too).
        stop_reason: StopReason,
        /// The reply's statistics.
        stats: GenerationStats,
    },
}

impl ReplyEvent {
    /// The final event of a reply that ended with `stats`.
    pub(crate) fn done(stats: GenerationStats) -> Self {
        ReplyEvent::Done {
            stop_reason: stats.stop_reason,
            stats,
        }
    }
}

/// Receives one reply's events from [`crate::Session::generate_events`] or
/// [`crate::Conversation::send_events`], on a background thread.
///
/// `on_event` is called for each [`ReplyEvent::Text`], then once with [`ReplyEvent::Done`]; or
/// `on_error` is called once, last, when the reply fails or is cancelled
/// ([`TernError::Cancelled`]). An exception thrown from `on_event` ends the reply with
/// [`TernError::Internal`].
#[uniffi::export(callback_interface)]
pub trait ReplyListener: Send + Sync {
    /// The next event.
    fn on_event(&self, event: ReplyEvent);
    /// The reply failed or was cancelled.
    fn on_error(&self, error: TernError);
}

/// Sends a generation's text and end to a [`ReplyListener`] as events.
pub(crate) struct EventSink(pub(crate) Box<dyn ReplyListener>);

impl Sink for EventSink {
    fn token(&mut self, text: &str) {
        self.0.on_event(ReplyEvent::Text {
            text: text.to_string(),
        });
    }

    fn event(&mut self, event: ReplyEvent) {
        self.0.on_event(event);
    }

    fn finish(self: Box<Self>, result: Result<GenerationStats, TernError>) {
        match result {
            Ok(stats) => self.0.on_event(ReplyEvent::done(stats)),
            Err(e) => self.0.on_error(e),
        }
    }
}
