// Idiomatic Kotlin over the generated bindings (package dev.tern.ffi): suspend loading, a cold
// Flow of events (or text) per generation, Closeable native objects that refuse use after close. Pure Kotlin + kotlinx.coroutines, so it
// also runs on a desktop JVM (scripts/test-kotlin.sh); Android-only code is in dev.tern.android.
package dev.tern

import dev.tern.ffi.Conversation
import dev.tern.ffi.GenerationHandle
import dev.tern.ffi.LoadProgress
import dev.tern.ffi.Model
import dev.tern.ffi.ModelSource
import dev.tern.ffi.ReplyListener
import dev.tern.ffi.Session
import dev.tern.ffi.loadModel
import java.io.Closeable
import java.util.concurrent.atomic.AtomicLong
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.channels.trySendBlocking
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.flow.flowOn
import kotlinx.coroutines.flow.transform
import kotlinx.coroutines.withContext

private val MODEL_DEFAULTS = dev.tern.ffi.ModelOptions()
private val GENERATE_DEFAULTS = dev.tern.ffi.GenerateOptions()

/** A count the native side takes unsigned: negative values are refused. */
private fun unsigned(name: String, value: Long): ULong {
    if (value < 0) throw dev.tern.ffi.TernException.InvalidArgument("$name must not be negative, got $value")
    return value.toULong()
}

private fun unsigned32(name: String, value: Int): UInt = unsigned(name, value.toLong()).toUInt()

/**
 * How a model's sessions run (the generated `dev.tern.ffi.ModelOptions` with Kotlin's signed
 * types; the defaults are the same).
 */
data class ModelOptions(
    /** Threads each session computes on; 0 uses every core. */
    val threads: Int = MODEL_DEFAULTS.threads.toInt(),
    /** Context length in tokens; 0 uses the model's own, capped at 4096. */
    val contextLength: Int = MODEL_DEFAULTS.contextLength.toInt(),
    /**
     * How activations meet quantized weights; `null` is the runtime's default: INT8 where the CPU
     * has fast int8 dot products (then the weights are repacked at load: see [TernModel.estimateMemory]),
     * F32 elsewhere.
     */
    val activationPrecision: dev.tern.ffi.Precision? = MODEL_DEFAULTS.activationPrecision,
    /** How the KV cache stores keys and values; `null` is the default (F16). */
    val kvCachePrecision: dev.tern.ffi.KvCachePrecision? = MODEL_DEFAULTS.kvCachePrecision,
    /** Cap in bytes on the weights a session keeps resident; 0 is no cap (a cap also turns off repacking). */
    val maxResidentBytes: Long = MODEL_DEFAULTS.maxResidentBytes.toLong(),
    /** Memory in bytes one session may use; 0 is no limit (loading throws OutOfMemoryBudget). */
    val memoryBudgetBytes: Long = MODEL_DEFAULTS.memoryBudgetBytes.toLong(),
    /** Memory bandwidth in GB/s granted to decoding, reported against in the stats. */
    val bandwidthBudgetGbps: Double? = MODEL_DEFAULTS.bandwidthBudgetGbps,
    /**
     * Runs the layer projections it can take on an NPU delegate ([qnnDelegate]); `null` is
     * the CPU only (the default). Loading throws `TernException.DelegateUnavailable` when a
     * library is missing, `TernException.DelegateFailed` when a graph does not compile for the
     * NPU; [TernModel.delegateDecisions] lists what it took.
     */
    val delegate: DelegateOptions? = MODEL_DEFAULTS.delegate,
) {
    internal fun toNative() = dev.tern.ffi.ModelOptions(
        threads = unsigned32("threads", threads),
        contextLength = unsigned32("contextLength", contextLength),
        activationPrecision = activationPrecision,
        kvCachePrecision = kvCachePrecision,
        maxResidentBytes = unsigned("maxResidentBytes", maxResidentBytes),
        memoryBudgetBytes = unsigned("memoryBudgetBytes", memoryBudgetBytes),
        bandwidthBudgetGbps = bandwidthBudgetGbps,
        delegate = delegate,
    )

    internal companion object {
        fun of(o: dev.tern.ffi.ModelOptions) = ModelOptions(
            o.threads.toInt(), o.contextLength.toInt(), o.activationPrecision, o.kvCachePrecision,
            o.maxResidentBytes.toLong(), o.memoryBudgetBytes.toLong(), o.bandwidthBudgetGbps,
            o.delegate,
        )
    }
}

/**
 * Where the NPU delegate's libraries are: `DelegateOptions(kind, ortLibrary, qnnProviderLibrary,
 * qnnBackendLibrary, socModel, cacheDir)`. [qnnDelegate] fills it for an app that bundles
 * `com.microsoft.onnxruntime:onnxruntime-android-qnn`.
 */
typealias DelegateOptions = dev.tern.ffi.DelegateOptions

/**
 * Which delegate: `DelegateKind.QNN` (the Hexagon NPU through ONNX Runtime's QNN provider) or
 * `DelegateKind.ORT_CPU` (the same graphs on ONNX Runtime's CPU provider, for checking).
 */
typealias DelegateKind = dev.tern.ffi.DelegateKind

/** What the delegate decided for one matrix: layer, projection, format, taken, reason. */
typealias DelegateDecision = dev.tern.ffi.DelegateDecision

/**
 * The QNN delegate with the libraries of `onnxruntime-android-qnn` from [nativeLibraryDir]
 * (`context.applicationInfo.nativeLibraryDir`; the libraries must be extracted, e.g.
 * `packaging { jniLibs { useLegacyPackaging = true } }`), compiling for [socModel] (`"57"`:
 * Snapdragon 8 Gen 3) and caching compiled graphs in [cacheDir] (e.g. `"${context.cacheDir}/qnn"`)
 * when given.
 */
fun qnnDelegate(nativeLibraryDir: String, cacheDir: String? = null, socModel: String? = null) =
    DelegateOptions(
        kind = DelegateKind.QNN,
        ortLibrary = "$nativeLibraryDir/libonnxruntime.so",
        qnnProviderLibrary = null,
        qnnBackendLibrary = "$nativeLibraryDir/libQnnHtp.so",
        socModel = socModel,
        cacheDir = cacheDir,
    )

/** Architecture, parameter count, quantization, context length, bytes per token, ... */
typealias ModelInfo = dev.tern.ffi.ModelInfo

/**
 * How to sample one generation (the generated `dev.tern.ffi.GenerateOptions` with Kotlin's
 * signed types; the defaults are the runtime's).
 */
data class GenerateOptions(
    /** Most tokens to generate. */
    val maxTokens: Int = GENERATE_DEFAULTS.maxTokens.toInt(),
    /** Softmax temperature; 0 is greedy. */
    val temperature: Float = GENERATE_DEFAULTS.temperature,
    /** Keep the `topK` most likely tokens; 0 keeps all. */
    val topK: Int = GENERATE_DEFAULTS.topK.toInt(),
    /** Nucleus sampling threshold; 1 keeps all. */
    val topP: Float = GENERATE_DEFAULTS.topP,
    /** Drop tokens less likely than `minP` times the most likely; 0 keeps all. */
    val minP: Float = GENERATE_DEFAULTS.minP,
    /** Repetition penalty; 1 is off. */
    val repeatPenalty: Float = GENERATE_DEFAULTS.repeatPenalty,
    /** How many recent tokens the penalty looks at. */
    val repeatLastN: Int = GENERATE_DEFAULTS.repeatLastN.toInt(),
    /** Seed of the sampler: the same seed gives the same text. */
    val seed: Long = GENERATE_DEFAULTS.seed.toLong(),
    /**
     * A JSON Schema (JSON text) the output must satisfy; generation ends when the document is
     * complete. `null` is free text. Sessions only: a conversation throws
     * `TernException.InvalidArgument`. A schema that does not parse throws
     * `TernException.InvalidSchema` (line and column), one that cannot be enforced
     * `TernException.UnsupportedSchema`.
     */
    val jsonSchema: String? = GENERATE_DEFAULTS.jsonSchema,
) {
    internal fun toNative() = dev.tern.ffi.GenerateOptions(
        maxTokens = unsigned32("maxTokens", maxTokens),
        temperature = temperature,
        topK = unsigned32("topK", topK),
        topP = topP,
        minP = minP,
        repeatPenalty = repeatPenalty,
        repeatLastN = unsigned32("repeatLastN", repeatLastN),
        // Any 64-bit pattern is a seed.
        seed = seed.toULong(),
        jsonSchema = jsonSchema,
    )
}

/** Token counts and speeds of a session's last generation. */
typealias GenerationStats = dev.tern.ffi.GenerationStats

/**
 * System prompt, a template to use instead of the model's, stop strings, overflow policy,
 * initial messages, template variables, and the [Tool]s the assistant may call.
 */
typealias ConversationOptions = dev.tern.ffi.ConversationOptions

/**
 * A function the model may call: `Tool(name, description, parametersJson)`, the parameters as
 * a JSON Schema string (an object schema). Declared in [ConversationOptions.tools]; calls
 * arrive as `ReplyEvent.ToolCall` with arguments valid under the schema. A schema that does
 * not parse throws `TernException.InvalidSchema` (with line and column), one that cannot be
 * enforced `TernException.UnsupportedSchema`.
 */
typealias Tool = dev.tern.ffi.Tool

/** What a tool call returned: the tool's name and its output, for [TernConversation.sendToolResults]. */
typealias ToolResult = dev.tern.ffi.ToolResult

/**
 * Why a call failed: catch `dev.tern.TernException` for all of them. Its cases
 * (`FileNotFound`, `SessionBusy`, `Closed`, `DelegateUnavailable`, `DelegateFailed`, ...) are
 * nested classes, which a Kotlin typealias cannot reach: name them as
 * `dev.tern.ffi.TernException.SessionBusy`.
 */
typealias TernException = dev.tern.ffi.TernException

/**
 * One event of a reply: `Text` pieces and, with tools, `ToolCall(name, argumentsJson)` (or a
 * last `IncompleteToolCall(raw)` when the token limit cut a call off), then one `Done` with
 * the stop reason and the reply's statistics (nested classes of `dev.tern.ffi.ReplyEvent`).
 * Keep an `else` branch in a `when`: later versions may add cases.
 */
typealias ReplyEvent = dev.tern.ffi.ReplyEvent

/** Why a generation ended. */
typealias StopReason = dev.tern.ffi.StopReason

/**
 * One message of a conversation: role (`system`, `user`, `assistant`, `tool`) and text; an
 * assistant message's `toolCalls` (name and arguments JSON, in order) and a `tool` message's
 * `name` (the tool whose result it holds).
 */
typealias ChatMessage = dev.tern.ffi.ChatMessage

/** A tool call as an assistant [ChatMessage] records it: the tool's name and its arguments JSON. */
typealias ToolCallRecord = dev.tern.ffi.ToolCallRecord

/** A variable the chat template reads (e.g. `enable_thinking`), with its value. */
typealias TemplateVariable = dev.tern.ffi.TemplateVariable

/** What one session of a model would take in memory, by part. */
typealias MemoryEstimate = dev.tern.ffi.MemoryEstimate

/**
 * A [Flow] of the events [start] sends to its listener; cancelling the collector cancels the
 * generation. The native call runs on [Dispatchers.IO]: after a cancel it waits (within one
 * token) for the previous generation of the same object to wind down.
 */
private fun eventFlow(start: (ReplyListener) -> GenerationHandle): Flow<ReplyEvent> = callbackFlow {
    val listener = object : ReplyListener {
        // Runs on the generation thread: blocking here when the collector is slow is the
        // back-pressure; a closed channel returns at once.
        override fun onEvent(event: ReplyEvent) {
            trySendBlocking(event)
            if (event is dev.tern.ffi.ReplyEvent.Done) channel.close()
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
}.flowOn(Dispatchers.IO)

/** The text of an event flow: the string-only convenience. */
private fun Flow<ReplyEvent>.texts(): Flow<String> = transform { event ->
    if (event is dev.tern.ffi.ReplyEvent.Text) emit(event.text)
}

/**
 * Keeps a wrapper's native object alive during calls and refuses calls after [close].
 *
 * The generated bindings free a native object on `close()` even while it is an argument of a
 * call being made, and their argument conversion does not check for a closed object (a freed
 * handle reaches Rust: heap corruption). Every use of a wrapper's native object, as receiver
 * or argument, goes through [use]; the native object is closed when the wrapper is closed and
 * no call is in progress.
 */
internal class Liveness(private val name: String, private val release: () -> Unit) {
    // 1 for the wrapper being open, plus one per call in progress; 0 once released.
    private val count = AtomicLong(1)
    private val closed = java.util.concurrent.atomic.AtomicBoolean(false)

    /** Runs [block] with the native object alive; throws [TernException.Closed] after [close]. */
    fun <R> use(block: () -> R): R {
        while (true) {
            val c = count.get()
            if (c == 0L || closed.get()) throw dev.tern.ffi.TernException.Closed(name)
            if (count.compareAndSet(c, c + 1)) break
        }
        try {
            return block()
        } finally {
            if (count.decrementAndGet() == 0L) release()
        }
    }

    /** Throws [TernException.Closed] if closed. */
    fun check() = use {}

    /** Closes the wrapper; the native object is freed once the calls in progress return. */
    fun close() {
        if (closed.compareAndSet(false, true) && count.decrementAndGet() == 0L) release()
    }

    val isClosed: Boolean get() = closed.get()
}

/**
 * A loaded model: memory-mapped weights, shareable between threads and sessions. [close] it (or
 * `use {}`) when done; sessions still open keep the weights alive until they close.
 */
class TernModel internal constructor(internal val native: Model) : Closeable {
    internal val live = Liveness("TernModel") { native.close() }

    companion object {
        /** Maps and validates the GGUF file at [path] on [Dispatchers.IO]. */
        suspend fun load(path: String, options: ModelOptions = ModelOptions()): TernModel =
            withContext(Dispatchers.IO) { TernModel(Model(path, options.toNative())) }

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
            return TernModel(loadModel(ModelSource.Path(path), options.toNative(), progress))
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
            TernModel(Model.openFd(fd, offset.toULong(), length.toULong(), options.toNative()))
        }

        /**
         * Like the [fd] load above, on a native background thread, calling [onProgress] there
         * with the fraction done (0 to 1; the last call reports 1).
         */
        suspend fun load(
            fd: Int,
            offset: Long,
            length: Long,
            options: ModelOptions = ModelOptions(),
            onProgress: (fraction: Float) -> Unit,
        ): TernModel {
            val progress = object : LoadProgress {
                override fun onProgress(fraction: Float) = onProgress(fraction)
            }
            val source = ModelSource.Fd(fd, offset.toULong(), length.toULong())
            return TernModel(loadModel(source, options.toNative(), progress))
        }

        /**
         * The memory one session of the model at [path] would take with [options], without
         * loading it (the file's header is read): pick a model and context that fit first. With
         * INT8 (the default on most phones) it counts the repacked heap copy of the weights instead
         * of their released file pages; the measured peak is 5–10 % above the total (12–20 % when the
         * file was just written and the page cache holds it in large folios).
         */
        suspend fun estimateMemory(path: String, options: ModelOptions = ModelOptions()): MemoryEstimate =
            withContext(Dispatchers.IO) { dev.tern.ffi.estimateMemory(ModelSource.Path(path), options.toNative()) }
    }

    /** Tokens [text] encodes to as plain text (no BOS; special-token strings stay text). */
    fun countTokens(text: String): Int = live.use { native.countTokens(text).toInt() }

    /** What the model is. Throws [TernException.Closed] after [close], as every member does. */
    val info: ModelInfo get() = live.use { native.info() }

    /** The options the model was loaded with. */
    val options: ModelOptions get() = live.use { ModelOptions.of(native.options()) }

    /**
     * What the NPU delegate of [ModelOptions.delegate] took, per layer (its FFN block, then
     * Q, K, V, O, gate, up, down) and the output head, and why the rest stays on the CPU;
     * empty without a delegate.
     */
    val delegateDecisions: List<DelegateDecision> get() = live.use { native.delegateDecisions() }

    /**
     * A new, empty conversation with its own KV cache; several can run at once. Throws
     * `TernException.OutOfMemoryBudget` when its context does not fit the memory budget,
     * `TernException.InvalidArgument` for more threads than 4 per core or a resident cap below
     * the model's minimum.
     */
    fun newSession(): TernSession = live.use { TernSession(Session(native)) }

    /**
     * A chat formatted by the model's own template (or [ConversationOptions.template]); throws
     * [TernException.NoChatTemplate] for a model without one.
     *
     * Blocks its caller: with [ConversationOptions.tools], the first conversation on a model
     * prepares the vocabulary for the constraint engine (about 1.3 s for a 150k-token model).
     * From a coroutine use [openConversation]; or call [prepareTools] once after loading.
     */
    fun newConversation(options: ConversationOptions = ConversationOptions()): TernConversation =
        live.use { TernConversation(Conversation(native, options)) }

    /**
     * [newConversation] on [Dispatchers.IO]: the caller's thread (the UI's) stays free while
     * the first conversation with tools prepares the constraint vocabulary.
     */
    suspend fun openConversation(options: ConversationOptions = ConversationOptions()): TernConversation =
        withContext(Dispatchers.IO) { newConversation(options) }

    /**
     * Prepares the model's vocabulary for the constraint engine (tool calls, JSON schemas) on
     * [Dispatchers.IO], so that later conversations with tools are made at once. Idempotent.
     */
    suspend fun prepareTools() = withContext(Dispatchers.IO) { live.use { native.prepareTools() } }

    /** Whether [close] was called. */
    val isClosed: Boolean get() = live.isClosed

    /**
     * Releases this handle on the native model (sessions and conversations made from it keep
     * the weights alive until they close). Idempotent.
     */
    override fun close() = live.close()
}

/** One conversation. One generation runs at a time; [close] it (or `use {}`) when done. */
class TernSession internal constructor(internal val native: Session) : Closeable {
    internal val live = Liveness("TernSession") { native.close() }

    /**
     * Generates a reply to [prompt], continuing the conversation, as a cold [Flow] of events:
     * text pieces, then [ReplyEvent.Done] with the stop reason and this reply's statistics. Each
     * collection starts one generation on a native background thread; cancelling the collector
     * cancels it within one token, and a generation started right after waits for the
     * cancelled one to wind down. Fails with [TernException.SessionBusy] only if another
     * generation of this session is running that was not cancelled (genuinely concurrent
     * use), and with the generation's error. Throws [TernException.Closed] after [close].
     */
    fun generateEvents(prompt: String, options: GenerateOptions = GenerateOptions()): Flow<ReplyEvent> {
        live.check()
        return eventFlow { listener -> live.use { native.generateEvents(prompt, options.toNative(), listener) } }
    }

    /** The text of [generateEvents]: a cold [Flow] of text pieces. */
    fun generate(prompt: String, options: GenerateOptions = GenerateOptions()): Flow<String> =
        generateEvents(prompt, options).texts()

    /** The last generation's counts and speeds, `null` before the first. */
    val stats: GenerationStats? get() = live.use { native.stats() }

    /** Whether a generation is running. */
    val isGenerating: Boolean get() = live.use { native.isGenerating() }

    /** Context length in tokens. */
    val contextLength: Int get() = live.use { native.contextLength().toInt() }

    /** Positions left in the context (waits for a cancelled generation to end). */
    val tokensLeft: Int get() = live.use { native.tokensLeft().toInt() }

    /**
     * Forgets the conversation. Waits for a cancelled generation to wind down; throws
     * [TernException.SessionBusy] while one runs that was not cancelled.
     */
    fun reset() = live.use { native.reset() }

    /** Whether [close] was called. */
    val isClosed: Boolean get() = live.isClosed

    /** Releases the session's KV cache once any running generation has stopped. Idempotent. */
    override fun close() = live.close()
}

/**
 * A chat: [send] adds a user message and streams the assistant's reply, which stops at the
 * template's end-of-turn token; earlier turns stay in the KV cache. [close] it when done.
 */
class TernConversation internal constructor(internal val native: Conversation) : Closeable {
    internal val live = Liveness("TernConversation") { native.close() }

    /**
     * Sends [message] and returns the reply as a cold [Flow] of events: text pieces, then
     * [ReplyEvent.Done] with the stop reason and the reply's statistics (one reply per
     * collection; cancelling the collector cancels it within one token, keeping what was said,
     * and a message sent right after waits for the cancelled reply to wind down).
     */
    fun sendEvents(message: String, options: GenerateOptions = GenerateOptions()): Flow<ReplyEvent> {
        live.check()
        return eventFlow { listener -> live.use { native.sendEvents(message, options.toNative(), listener) } }
    }

    /** The text of [sendEvents]: a cold [Flow] of text pieces (tool calls are left out). */
    fun send(message: String, options: GenerateOptions = GenerateOptions()): Flow<String> =
        sendEvents(message, options).texts()

    /**
     * Answers the last reply's tool calls with their [results] (one `tool` message each, in
     * order) and returns the assistant's next reply as events like [sendEvents]; it may call
     * tools again. The KV cache is reused up to the new messages (`Done.stats.cachedTokens`).
     */
    fun sendToolResults(
        results: List<ToolResult>,
        options: GenerateOptions = GenerateOptions(),
    ): Flow<ReplyEvent> {
        live.check()
        return eventFlow { listener -> live.use { native.sendToolResults(results, options.toNative(), listener) } }
    }

    /** The last reply's counts and speeds; `promptTokens` counts only that turn's new tokens. */
    val stats: GenerationStats? get() = live.use { native.stats() }

    /** Messages so far, the system prompt included. */
    val messageCount: Int get() = live.use { native.messageCount().toInt() }

    /** Whether a reply is being generated. */
    val isGenerating: Boolean get() = live.use { native.isGenerating() }

    /**
     * The messages so far, the system prompt first; each reply as an `assistant` message with
     * its tool calls, each tool result as a `tool` message: what a chat UI renders, and what
     * [ConversationOptions.messages] takes to render the same prompt again.
     */
    val messages: List<ChatMessage> get() = live.use { native.messages() }

    /** Positions left in the context before older turns are dropped. */
    val tokensLeft: Int get() = live.use { native.tokensLeft().toInt() }

    /**
     * Generates the last reply again (e.g. with another seed), replacing it, as events like
     * [sendEvents]; the KV cache is reused up to where that reply began
     * (`Done.stats.cachedTokens`).
     */
    fun regenerateEvents(options: GenerateOptions = GenerateOptions()): Flow<ReplyEvent> {
        live.check()
        return eventFlow { listener -> live.use { native.regenerateEvents(options.toNative(), listener) } }
    }

    /** The text of [regenerateEvents]. */
    fun regenerate(options: GenerateOptions = GenerateOptions()): Flow<String> =
        regenerateEvents(options).texts()

    /**
     * Removes the last user message and everything after it, returning what was removed; the
     * next turn reuses the KV cache up to there.
     */
    fun removeLastTurn(): List<ChatMessage> = live.use { native.removeLastTurn() }

    /** The conversation rendered by its template as the model sees it. */
    fun prompt(): String = live.use { native.prompt() }

    /** The conversation as bytes, to resume it later with [restore] (same model). */
    fun save(): ByteArray = live.use { native.save() }

    /** Restores bytes from [save]; throws [TernException.BadSnapshot] and changes nothing if
     * they do not fit this model. */
    fun restore(bytes: ByteArray) = live.use { native.restore(bytes) }

    /** Forgets every message but the system prompt (waits for a cancelled reply to end). */
    fun reset() = live.use { native.reset() }

    /** Whether [close] was called. */
    val isClosed: Boolean get() = live.isClosed

    /** Releases the conversation's KV cache once any running reply has stopped. Idempotent. */
    override fun close() = live.close()
}
