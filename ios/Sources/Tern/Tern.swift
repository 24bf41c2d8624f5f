// Idiomatic Swift over the generated bindings (module TernFFI): async loading and an
// AsyncThrowingStream of text per generation that cancels when its task is cancelled.
//
// Every name taken from the generated module is written `TernFFI.Name`: ffi/tests/bindings_api.rs
// reads this file and checks each one exists in the generated Swift (no Swift compiler runs in
// CI), together with the calls listed there. The generated types are all `Tern`-prefixed
// (ffi/uniffi.toml renames them for Swift), so the re-exported module adds no bare `Model` or
// `Tool` to an app's namespace; the objects wrapped here are `TernNative…`.

import Foundation
@_exported import TernFFI

/// A loaded model: memory-mapped weights shared by any number of sessions and threads.
public final class TernModel: Sendable {
    /// The generated object, for what this layer does not wrap.
    public let native: TernFFI.TernNativeModel

    /// Wraps a model loaded through the generated API.
    public init(native: TernFFI.TernNativeModel) {
        self.native = native
    }

    /// Maps and validates the GGUF file at `path` on a background thread.
    /// Throws `TernError` (`.FileNotFound`, `.NotGguf`, `.Corrupt`, ...; with
    /// `options.delegate`: `.DelegateUnavailable`, `.DelegateFailed`).
    public static func load(
        path: String,
        options: TernFFI.TernModelOptions = TernFFI.TernModelOptions()
    ) async throws -> TernModel {
        TernModel(native: try await TernFFI.loadModel(source: .path(path: path), options: options))
    }

    /// Like `load(path:options:)`, calling `progress` on the loading thread with the fraction
    /// done (0 to 1; the last call reports 1).
    public static func load(
        path: String,
        options: TernFFI.TernModelOptions = TernFFI.TernModelOptions(),
        progress: @escaping @Sendable (Float) -> Void
    ) async throws -> TernModel {
        let source = TernFFI.TernModelSource.path(path: path)
        let native = try await TernFFI.loadModel(
            source: source, options: options, progress: ProgressRelay(progress))
        return TernModel(native: native)
    }

    /// Maps `length` bytes at `offset` of the open file `fd` (a region of a bundle file) on a
    /// background thread, calling `progress` (if given) with the fraction done. `fd` stays the
    /// caller's to close.
    public static func load(
        fd: Int32,
        offset: Int64,
        length: Int64,
        options: TernFFI.TernModelOptions = TernFFI.TernModelOptions(),
        progress: (@Sendable (Float) -> Void)? = nil
    ) async throws -> TernModel {
        let source = TernFFI.TernModelSource.fd(fd: fd, offset: UInt64(offset), length: UInt64(length))
        let native = try await TernFFI.loadModel(
            source: source, options: options, progress: progress.map { ProgressRelay($0) })
        return TernModel(native: native)
    }

    /// The memory one session of the model at `path` would take with `options`, without
    /// loading it (the file's header is read): pick a model and context that fit first. With
    /// int8 (the default on most phones) it counts the repacked heap copy of the weights
    /// instead of their released file pages; the measured peak is 5–10 % above the total.
    public static func estimateMemory(
        path: String,
        options: TernFFI.TernModelOptions = TernFFI.TernModelOptions()
    ) throws -> TernFFI.TernMemoryEstimate {
        try TernFFI.estimateMemory(source: .path(path: path), options: options)
    }

    /// What the model is.
    public var info: TernFFI.TernModelInfo { native.info() }

    /// The options the model was loaded with.
    public var options: TernFFI.TernModelOptions { native.options() }

    /// What the NPU delegate of `options.delegate` took, per layer (its FFN block, then Q, K,
    /// V, O, gate, up, down) and the output head, and why the rest stays on the CPU; empty
    /// without a delegate. (The delegate is Qualcomm's QNN, for Android: an iOS build has no
    /// `npu` feature, and loading with a `delegate` throws `TernError.DelegateUnavailable`.)
    public var delegateDecisions: [TernFFI.TernDelegateDecision] { native.delegateDecisions() }

    /// Tokens `text` encodes to as plain text (no BOS; special-token strings stay text).
    public func countTokens(_ text: String) -> Int { Int(native.countTokens(text: text)) }

    /// A new, empty conversation with its own KV cache. Throws `TernError.OutOfMemoryBudget`
    /// when its context does not fit the memory budget, `TernError.InvalidArgument` for more
    /// threads than 4 per core or a resident cap below the model's minimum.
    public func newSession() throws -> TernSession {
        TernSession(native: try TernFFI.TernNativeSession(model: native))
    }

    /// A chat formatted by the model's own template (or `options.template`). Throws
    /// `TernError.NoChatTemplate` for a model without one.
    ///
    /// Blocks its caller: with `options.tools`, the first conversation on a model prepares the
    /// vocabulary for the constraint engine (about 1.3 s for a 150k-token model). From async
    /// code use `openConversation(options:)`; or call `prepareTools()` once after loading.
    public func newConversation(
        options: TernFFI.TernConversationOptions = TernFFI.TernConversationOptions()
    ) throws -> TernConversation {
        TernConversation(native: try TernFFI.TernNativeConversation(model: native, options: options))
    }

    /// `newConversation(options:)` on a background thread: the caller (the main actor) stays
    /// free while the first conversation with tools prepares the constraint vocabulary.
    public func openConversation(
        options: TernFFI.TernConversationOptions = TernFFI.TernConversationOptions()
    ) async throws -> TernConversation {
        try await Task.detached { try self.newConversation(options: options) }.value
    }

    /// Prepares the model's vocabulary for the constraint engine (tool calls, JSON schemas) on
    /// a background thread, so that later conversations with tools are made at once.
    /// Idempotent.
    public func prepareTools() async throws {
        let native = self.native
        try await Task.detached { try native.prepareTools() }.value
    }
}

/// A chat: `send` adds a user message and streams the assistant's reply, which stops at the
/// template's end-of-turn token; earlier turns stay in the KV cache.
public final class TernConversation: Sendable {
    /// The generated object, for what this layer does not wrap.
    public let native: TernFFI.TernNativeConversation

    /// Wraps a conversation created through the generated API.
    public init(native: TernFFI.TernNativeConversation) {
        self.native = native
    }

    /// Sends `message`; the reply arrives as events as it is generated: `.text` pieces, then
    /// one `.done` with the stop reason and the reply's statistics. Cancelling the consuming
    /// task (or dropping the stream) cancels the reply within one token, keeping what was
    /// said; a message sent right after waits for the cancelled reply to wind down.
    public func sendEvents(
        _ message: String,
        options: TernFFI.TernGenerateOptions = TernFFI.TernGenerateOptions()
    ) -> AsyncThrowingStream<TernFFI.TernReplyEvent, Error> {
        eventStream { listener in
            try self.native.sendEvents(message: message, options: options, listener: listener)
        }
    }

    /// Answers the last reply's tool calls (`.toolCall` events) with their `results`, one
    /// `tool` message each, in order, and streams the assistant's next reply as events like
    /// `sendEvents`; it may call tools again. The KV cache is reused up to the new messages
    /// (`stats.cachedTokens` of `.done`). Tools are declared in `TernConversationOptions.tools`.
    public func sendToolResults(
        _ results: [TernFFI.TernToolResult],
        options: TernFFI.TernGenerateOptions = TernFFI.TernGenerateOptions()
    ) -> AsyncThrowingStream<TernFFI.TernReplyEvent, Error> {
        eventStream { listener in
            try self.native.sendToolResults(results: results, options: options, listener: listener)
        }
    }

    /// The text of `sendEvents(_:options:)` (tool calls are left out).
    public func send(
        _ message: String,
        options: TernFFI.TernGenerateOptions = TernFFI.TernGenerateOptions()
    ) -> AsyncThrowingStream<String, Error> {
        texts(of: sendEvents(message, options: options))
    }

    /// Generates the last reply again (e.g. with another seed), replacing it, as events like
    /// `sendEvents`; the KV cache is reused up to where that reply began.
    public func regenerateEvents(
        options: TernFFI.TernGenerateOptions = TernFFI.TernGenerateOptions()
    ) -> AsyncThrowingStream<TernFFI.TernReplyEvent, Error> {
        eventStream { listener in
            try self.native.regenerateEvents(options: options, listener: listener)
        }
    }

    /// The text of `regenerateEvents(options:)`.
    public func regenerate(
        options: TernFFI.TernGenerateOptions = TernFFI.TernGenerateOptions()
    ) -> AsyncThrowingStream<String, Error> {
        texts(of: regenerateEvents(options: options))
    }

    /// Removes the last user message and everything after it, returning what was removed.
    public func removeLastTurn() throws -> [TernFFI.TernChatMessage] { try native.removeLastTurn() }

    /// The messages so far, the system prompt first; each reply as an `assistant` message.
    public var messages: [TernFFI.TernChatMessage] {
        get throws { try native.messages() }
    }

    /// Messages so far, the system prompt included.
    public var messageCount: Int { Int(native.messageCount()) }

    /// Positions left in the context before older turns are dropped.
    public var tokensLeft: Int {
        get throws { Int(try native.tokensLeft()) }
    }

    /// Whether a reply is being generated.
    public var isGenerating: Bool { native.isGenerating() }

    /// The conversation rendered by its template as the model sees it.
    public func prompt() throws -> String { try native.prompt() }

    /// The last reply's counts and speeds; `promptTokens` counts only that turn's new tokens.
    public var stats: TernFFI.TernGenerationStats? { native.stats() }

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
    public let native: TernFFI.TernNativeSession

    /// Wraps a session created through the generated API.
    public init(native: TernFFI.TernNativeSession) {
        self.native = native
    }

    /// Generates a reply to `prompt`, continuing the conversation, as events: `.text` pieces,
    /// then one `.done` with the stop reason and this reply's statistics. Cancelling the
    /// consuming task (or dropping the stream) cancels generation within one token; a
    /// generation started right after waits for the cancelled one to wind down. Throws
    /// `TernError.SessionBusy` only while another generation runs that was not cancelled.
    public func generateEvents(
        _ prompt: String,
        options: TernFFI.TernGenerateOptions = TernFFI.TernGenerateOptions()
    ) -> AsyncThrowingStream<TernFFI.TernReplyEvent, Error> {
        eventStream { listener in
            try self.native.generateEvents(prompt: prompt, options: options, listener: listener)
        }
    }

    /// The text of `generateEvents(_:options:)`.
    public func generate(
        _ prompt: String,
        options: TernFFI.TernGenerateOptions = TernFFI.TernGenerateOptions()
    ) -> AsyncThrowingStream<String, Error> {
        texts(of: generateEvents(prompt, options: options))
    }

    /// The last generation's token counts and speeds; `nil` before the first.
    public var stats: TernFFI.TernGenerationStats? { native.stats() }

    /// Whether a generation is running.
    public var isGenerating: Bool { native.isGenerating() }

    /// Context length in tokens.
    public var contextLength: Int { Int(native.contextLength()) }

    /// Positions left in the context (waits for a cancelled generation to end).
    public var tokensLeft: Int {
        get throws { Int(try native.tokensLeft()) }
    }

    /// Forgets the conversation. Waits for a cancelled generation to wind down; throws
    /// `TernError.SessionBusy` while one runs that was not cancelled.
    public func reset() throws { try native.reset() }
}

/// A stream of the events `start` sends to its listener; ending the consuming task cancels.
/// `start` runs on a detached task: after a cancel it waits (within one token) for the
/// previous generation of the same object to wind down.
private func eventStream(
    _ start: @escaping @Sendable (TernFFI.TernReplyListener) throws -> TernFFI.TernGenerationHandle
) -> AsyncThrowingStream<TernFFI.TernReplyEvent, Error> {
    AsyncThrowingStream { continuation in
        let listener = EventListener(continuation)
        let task = Task.detached {
            do {
                let handle = try start(listener)
                continuation.onTermination = { _ in handle.cancel() }
                // The consumer may have gone while `start` ran.
                if Task.isCancelled { handle.cancel() }
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in task.cancel() }
    }
}

/// The text pieces of an event stream.
private func texts(
    of events: AsyncThrowingStream<TernFFI.TernReplyEvent, Error>
) -> AsyncThrowingStream<String, Error> {
    AsyncThrowingStream { continuation in
        let task = Task {
            do {
                for try await event in events {
                    if case .text(let text) = event { continuation.yield(text) }
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in task.cancel() }
    }
}

/// Forwards one generation's events into an `AsyncThrowingStream`.
private final class EventListener: TernFFI.TernReplyListener {
    private let continuation: AsyncThrowingStream<TernFFI.TernReplyEvent, Error>.Continuation

    init(_ continuation: AsyncThrowingStream<TernFFI.TernReplyEvent, Error>.Continuation) {
        self.continuation = continuation
    }

    func onEvent(event: TernFFI.TernReplyEvent) {
        continuation.yield(event)
        if case .done = event { continuation.finish() }
    }

    func onError(error: TernFFI.TernError) {
        continuation.finish(throwing: error)
    }
}

/// Forwards load progress to a closure.
private final class ProgressRelay: TernFFI.TernLoadProgress {
    private let report: @Sendable (Float) -> Void

    init(_ report: @escaping @Sendable (Float) -> Void) {
        self.report = report
    }

    func onProgress(fraction: Float) {
        report(fraction)
    }
}
