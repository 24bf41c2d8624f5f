// Idiomatic Kotlin over the generated bindings (package dev.tern.ffi): suspend loading, a cold
// Flow of text per generation, Closeable native objects. Pure Kotlin + kotlinx.coroutines, so it
// also runs on a desktop JVM (scripts/test-kotlin.sh); Android-only code is in dev.tern.android.
package dev.tern

import dev.tern.ffi.Conversation
import dev.tern.ffi.GenerationHandle
import dev.tern.ffi.LoadProgress
import dev.tern.ffi.Model
import dev.tern.ffi.ModelSource
import dev.tern.ffi.Session
import dev.tern.ffi.TernException
import dev.tern.ffi.TokenListener
import dev.tern.ffi.loadModel
import java.io.Closeable
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.channels.trySendBlocking
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.withContext

/** Threads, context length, activation precision and resident-memory cap of sessions. */
typealias ModelOptions = dev.tern.ffi.ModelOptions

/** Architecture, parameter count, quantization, context length, bytes per token, ... */
typealias ModelInfo = dev.tern.ffi.ModelInfo

/** Sampling options: max tokens, temperature (0 = greedy), top-k/p, min-p, penalty, seed. */
typealias GenerateOptions = dev.tern.ffi.GenerateOptions

/** Token counts and speeds of a session's last generation. */
typealias GenerationStats = dev.tern.ffi.GenerationStats

/** System prompt, a template to use instead of the model's, stop strings, overflow policy. */
typealias ConversationOptions = dev.tern.ffi.ConversationOptions

/** A [Flow] of the text [start] streams to its listener; cancelling the collector cancels it. */
private fun textFlow(start: (TokenListener) -> GenerationHandle): Flow<String> = callbackFlow {
    val listener = object : TokenListener {
        // Runs on the generation thread: blocking here when the collector is slow is the
        // back-pressure; a closed channel returns at once.
        override fun onToken(text: String) {
            trySendBlocking(text)
        }

        override fun onComplete(stats: GenerationStats) {
            channel.close()
        }

        override fun onError(error: TernException) {
            channel.close(error)
        }
    }
    val handle = start(listener)
    awaitClose {
        handle.cancel()
        handle.close()
    }
}

/**
 * A loaded model: memory-mapped weights, shareable between threads and sessions. [close] it (or
 * `use {}`) when done; sessions still open keep the weights alive until they close.
 */
class TernModel internal constructor(internal val native: Model) : Closeable {
    companion object {
        /** Maps and validates the GGUF file at [path] on [Dispatchers.IO]. */
        suspend fun load(path: String, options: ModelOptions = ModelOptions()): TernModel =
            withContext(Dispatchers.IO) { TernModel(Model(path, options)) }

        /**
         * Loads [path] on a native background thread, calling [onProgress] there with the
         * fraction done (0 to 1; the last call reports 1).
         */
        suspend fun load(
            path: String,
            options: ModelOptions = ModelOptions(),
            onProgress: (fraction: Float) -> Unit,
        ): TernModel {
            val progress = object : LoadProgress {
                override fun onProgress(fraction: Float) = onProgress(fraction)
            }
            return TernModel(loadModel(ModelSource.Path(path), options, progress))
        }

        /**
         * Maps [length] bytes at [offset] of the open file [fd] (for instance an uncompressed
         * asset inside the APK) on [Dispatchers.IO]. [fd] stays the caller's to close.
         */
        suspend fun load(
            fd: Int,
            offset: Long,
            length: Long,
            options: ModelOptions = ModelOptions(),
        ): TernModel = withContext(Dispatchers.IO) {
            TernModel(Model.openFd(fd, offset.toULong(), length.toULong(), options))
        }
    }

    /** What the model is. */
    val info: ModelInfo get() = native.info()

    /**
     * A new, empty conversation with its own KV cache; several can run at once. Throws
     * `TernException.OutOfMemoryBudget` when its context does not fit the memory budget,
     * `TernException.InvalidArgument` for more threads than 4 per core or a resident cap below
     * the model's minimum.
     */
    fun newSession(): TernSession = TernSession(Session(native))

    /**
     * A chat formatted by the model's own template (or [ConversationOptions.template]); throws
     * [TernException.NoChatTemplate] for a model without one.
     */
    fun newConversation(options: ConversationOptions = ConversationOptions()): TernConversation =
        TernConversation(Conversation(native, options))

    /** Releases this handle on the native model. */
    override fun close() = native.close()
}

/** One conversation. One generation runs at a time; [close] it (or `use {}`) when done. */
class TernSession internal constructor(internal val native: Session) : Closeable {
    /**
     * Generates a reply to [prompt], continuing the conversation, as a cold [Flow] of text
     * pieces. Each collection starts one generation on a native background thread; cancelling
     * the collector cancels it within one token. Fails with [TernException.SessionBusy] if
     * another generation of this session is running, and with the generation's error.
     */
    fun generate(prompt: String, options: GenerateOptions = GenerateOptions()): Flow<String> =
        textFlow { listener -> native.generate(prompt, options, listener) }

    /** The last generation's counts and speeds, `null` before the first. */
    val stats: GenerationStats? get() = native.stats()

    /** Whether a generation is running. */
    val isGenerating: Boolean get() = native.isGenerating()

    /** Context length in tokens. */
    val contextLength: Int get() = native.contextLength().toInt()

    /** Forgets the conversation; throws [TernException.SessionBusy] while generating. */
    fun reset() = native.reset()

    /** Releases the session's KV cache once any running generation has stopped. */
    override fun close() = native.close()
}

/**
 * A chat: [send] adds a user message and streams the assistant's reply, which stops at the
 * template's end-of-turn token; earlier turns stay in the KV cache. [close] it when done.
 */
class TernConversation internal constructor(internal val native: Conversation) : Closeable {
    /**
     * Sends [message] and returns the reply as a cold [Flow] of text pieces (one reply per
     * collection; cancelling the collector cancels it within one token, keeping what was said).
     */
    fun send(message: String, options: GenerateOptions = GenerateOptions()): Flow<String> =
        textFlow { listener -> native.send(message, options, listener) }

    /** The last reply's counts and speeds; `promptTokens` counts only that turn's new tokens. */
    val stats: GenerationStats? get() = native.stats()

    /** Messages so far, the system prompt included. */
    val messageCount: Int get() = native.messageCount().toInt()

    /** The conversation as bytes, to resume it later with [restore] (same model). */
    fun save(): ByteArray = native.save()

    /** Restores bytes from [save]; throws [TernException.BadSnapshot] and changes nothing if
     * they do not fit this model. */
    fun restore(bytes: ByteArray) = native.restore(bytes)

    /** Forgets every message but the system prompt. */
    fun reset() = native.reset()

    override fun close() = native.close()
}
