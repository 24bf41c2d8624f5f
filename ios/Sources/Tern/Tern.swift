// Idiomatic Swift over the generated bindings (module TernFFI): async loading and an
// AsyncThrowingStream of text per generation that cancels when its task is cancelled.
//
// Every name taken from the generated module is written `TernFFI.Name`: ffi/tests/bindings_api.rs
// reads this file and checks each one exists in the generated Swift (no Swift compiler runs in
// CI), together with the calls listed there.

import Foundation
@_exported import TernFFI

/// A loaded model: memory-mapped weights shared by any number of sessions and threads.
public final class TernModel: Sendable {
    /// The generated object, for what this layer does not wrap.
    public let native: TernFFI.Model

    /// Wraps a model loaded through the generated API.
    public init(native: TernFFI.Model) {
        self.native = native
    }

    /// Maps and validates the GGUF file at `path` on a background thread.
    /// Throws `TernError` (`.FileNotFound`, `.NotGguf`, `.Corrupt`, ...).
    public static func load(
        path: String,
        options: TernFFI.ModelOptions = TernFFI.ModelOptions()
    ) async throws -> TernModel {
        TernModel(native: try await TernFFI.loadModel(source: .path(path: path), options: options))
    }

    /// Like `load(path:options:)`, calling `progress` on the loading thread with the fraction
    /// done (0 to 1; the last call reports 1).
    public static func load(
        path: String,
        options: TernFFI.ModelOptions = TernFFI.ModelOptions(),
        progress: @escaping @Sendable (Float) -> Void
    ) async throws -> TernModel {
        let source = TernFFI.ModelSource.path(path: path)
        let native = try await TernFFI.loadModel(
            source: source, options: options, progress: ProgressRelay(progress))
        return TernModel(native: native)
    }

    /// What the model is.
    public var info: TernFFI.ModelInfo { native.info() }

    /// A new, empty conversation with its own KV cache. Throws `TernError.OutOfMemoryBudget`
    /// when its context does not fit the memory budget, `TernError.InvalidArgument` for more
    /// threads than 4 per core or a resident cap below the model's minimum.
    public func newSession() throws -> TernSession {
        TernSession(native: try TernFFI.Session(model: native))
    }

    /// A chat formatted by the model's own template (or `options.template`). Throws
    /// `TernError.NoChatTemplate` for a model without one.
    public func newConversation(
        options: TernFFI.ConversationOptions = TernFFI.ConversationOptions()
    ) throws -> TernConversation {
        TernConversation(native: try TernFFI.Conversation(model: native, options: options))
    }
}

/// A chat: `send` adds a user message and streams the assistant's reply, which stops at the
/// template's end-of-turn token; earlier turns stay in the KV cache.
public final class TernConversation: Sendable {
    /// The generated object, for what this layer does not wrap.
    public let native: TernFFI.Conversation

    /// Wraps a conversation created through the generated API.
    public init(native: TernFFI.Conversation) {
        self.native = native
    }

    /// Sends `message`; the reply arrives as it is generated. Cancelling the consuming task
    /// (or dropping the stream) cancels the reply within one token, keeping what was said.
    public func send(
        _ message: String,
        options: TernFFI.GenerateOptions = TernFFI.GenerateOptions()
    ) -> AsyncThrowingStream<String, Error> {
        AsyncThrowingStream { continuation in
            do {
                let handle = try native.send(
                    message: message, options: options, listener: StreamListener(continuation))
                continuation.onTermination = { _ in handle.cancel() }
            } catch {
                continuation.finish(throwing: error)
            }
        }
    }

    /// The last reply's counts and speeds; `promptTokens` counts only that turn's new tokens.
    public var stats: TernFFI.GenerationStats? { native.stats() }

    /// The conversation as bytes, to resume it with `restore` (same model).
    public func save() throws -> Data { try native.save() }

    /// Restores bytes from `save`; throws `TernError.BadSnapshot` and changes nothing if they
    /// do not fit this model.
    public func restore(_ bytes: Data) throws { try native.restore(bytes: bytes) }

    /// Forgets every message but the system prompt.
    public func reset() throws { try native.reset() }
}

/// One conversation: one generation at a time; several sessions may generate at once.
public final class TernSession: Sendable {
    /// The generated object, for what this layer does not wrap (e.g. `stream(prompt:options:)`
    /// and its `async nextChunk()`).
    public let native: TernFFI.Session

    /// Wraps a session created through the generated API.
    public init(native: TernFFI.Session) {
        self.native = native
    }

    /// Generates a reply to `prompt`, continuing the conversation. Text arrives as it is
    /// generated; cancelling the consuming task (or dropping the stream) cancels generation
    /// within one token. Throws `TernError.SessionBusy` while another generation runs.
    public func generate(
        _ prompt: String,
        options: TernFFI.GenerateOptions = TernFFI.GenerateOptions()
    ) -> AsyncThrowingStream<String, Error> {
        AsyncThrowingStream { continuation in
            do {
                let handle = try native.generate(
                    prompt: prompt, options: options, listener: StreamListener(continuation))
                continuation.onTermination = { _ in handle.cancel() }
            } catch {
                continuation.finish(throwing: error)
            }
        }
    }

    /// The last generation's token counts and speeds; `nil` before the first.
    public var stats: TernFFI.GenerationStats? { native.stats() }

    /// Whether a generation is running.
    public var isGenerating: Bool { native.isGenerating() }

    /// Forgets the conversation. Throws `TernError.SessionBusy` while generating.
    public func reset() throws { try native.reset() }
}

/// Forwards one generation's callbacks into an `AsyncThrowingStream`.
private final class StreamListener: TernFFI.TokenListener {
    private let continuation: AsyncThrowingStream<String, Error>.Continuation

    init(_ continuation: AsyncThrowingStream<String, Error>.Continuation) {
        self.continuation = continuation
    }

    func onToken(text: String) {
        continuation.yield(text)
    }

    func onComplete(stats: TernFFI.GenerationStats) {
        continuation.finish()
    }

    func onError(error: TernFFI.TernError) {
        continuation.finish(throwing: error)
    }
}

/// Forwards load progress to a closure.
private final class ProgressRelay: TernFFI.LoadProgress {
    private let report: @Sendable (Float) -> Void

    init(_ report: @escaping @Sendable (Float) -> Void) {
        self.report = report
    }

    func onProgress(fraction: Float) {
        report(fraction)
    }
}
