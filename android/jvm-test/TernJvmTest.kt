// The Kotlin SDK on a desktop JVM against the x86_64 build of tern-ffi and the real model.
// Run by scripts/test-kotlin.sh: args are the model path, a file holding the text the Rust
// API generates for PROMPT (16 greedy tokens), and a scratch directory; then Gemma 3's path and
// text; then SmolLM2 Q4_0's path and text and ONNX Runtime's library (the NPU delegate).
package dev.tern.test

import dev.tern.ConversationOptions
import dev.tern.DelegateKind
import dev.tern.DelegateOptions
import dev.tern.GenerateOptions
import dev.tern.ModelOptions
import dev.tern.StopReason
import dev.tern.TernModel
import dev.tern.Tool
import dev.tern.ToolResult
import dev.tern.qnnDelegate
import dev.tern.ffi.ChatMessage
import dev.tern.ffi.ReplyEvent
import dev.tern.ffi.TemplateValue
import dev.tern.ffi.TemplateVariable
import dev.tern.ffi.TernException
import dev.tern.ffi.GenerationStats
import dev.tern.ffi.LoadProgress
import dev.tern.ffi.ModelSource
import dev.tern.ffi.TokenListener
import dev.tern.ffi.loadModel
import java.io.ByteArrayOutputStream
import java.io.File
import java.io.PrintStream
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import kotlin.system.exitProcess
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.cancelAndJoin
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import kotlinx.coroutines.yield

const val PROMPT = "The capital of France is"
val OPTIONS = ModelOptions(threads = 2)
fun greedy(n: Int) = GenerateOptions(maxTokens = n, temperature = 0f)

class Failure(message: String) : Exception(message)

/** open(2) and close(2), for a file descriptor as Android's asset loading passes one. */
interface LibC : com.sun.jna.Library {
    fun open(path: String, flags: Int): Int
    fun close(fd: Int): Int

    companion object {
        val INSTANCE: LibC = com.sun.jna.Native.load("c", LibC::class.java)
    }
}

fun check(condition: Boolean, message: () -> String) {
    if (!condition) throw Failure(message())
}

inline fun <reified E : Throwable> expectThrows(block: () -> Any?): E {
    try {
        block()
    } catch (e: Throwable) {
        if (e is E) return e
        throw Failure("expected ${E::class.simpleName}, got $e")
    }
    throw Failure("expected ${E::class.simpleName}, nothing was thrown")
}

// The README's example, verbatim.
suspend fun demo(path: String) {
    TernModel.load(path, ModelOptions(threads = 4)).use { model ->
        println("${model.info.architecture}: ${model.info.parameterCount} parameters")
        model.newSession().use { session ->
            session.generate("The capital of France is", GenerateOptions(maxTokens = 32))
                .collect { print(it) } // cancelling the collector cancels generation
            println("\n${session.stats?.generationTokensPerSecond} tok/s")
        }
    }
}

fun main(args: Array<String>) {
    val modelPath = args[0]
    val expected = File(args[1]).readText()
    val scratch = File(args[2]).apply { mkdirs() }
    var passed = 0
    var failed = 0
    fun test(name: String, timeoutMs: Long = 120_000, body: suspend CoroutineScope.() -> Unit) {
        val start = System.nanoTime()
        try {
            runBlocking { withTimeout(timeoutMs) { body() } }
            println("ok    $name (%.1f s)".format((System.nanoTime() - start) / 1e9))
            passed++
        } catch (e: Throwable) {
            println("FAIL  $name: $e")
            failed++
        }
    }

    val model = runBlocking { TernModel.load(modelPath, OPTIONS) }

    test("model info") {
        val info = model.info
        check(info.architecture == "llama") { "architecture ${info.architecture}" }
        check(info.quantization == "Q4_1") { "quantization ${info.quantization}" }
        check(info.vocabSize == 49152u) { "vocab ${info.vocabSize}" }
        check(info.hasChatTemplate) { "no chat template" }
        check(info.parameterCount in 130_000_000uL..140_000_000uL) { "params ${info.parameterCount}" }
        check(info.bytesPerToken > 50_000_000uL) { "bytes per token ${info.bytesPerToken}" }
    }

    test("16 greedy tokens equal the Rust API's") {
        model.newSession().use { session ->
            val text = session.generate(PROMPT, greedy(16)).toList().joinToString("")
            check(text == expected) { "got '$text', expected '$expected'" }
            val stats = session.stats ?: throw Failure("no stats")
            check(stats.generatedTokens == 16u) { "$stats" }
            check(stats.stopReason == StopReason.MAX_TOKENS) { "$stats" }
            check((stats.generationTokensPerSecond ?: 0.0) > 0.0) { "$stats" }
        }
    }

    test("async nextChunk stream gives the same text") {
        model.newSession().use { session ->
            val stream = session.native.stream(PROMPT, greedy(16).toNative())
            val text = StringBuilder()
            while (true) text.append(stream.nextChunk() ?: break)
            stream.close()
            check(text.toString() == expected) { "got '$text'" }
        }
    }

    test("cancelling the collector from another coroutine stops native generation") {
        model.newSession().use { session ->
            val threeTokens = CompletableDeferred<Unit>()
            var received = 0
            val collector = launch(Dispatchers.Default) {
                session.generate(PROMPT, greedy(400)).collect {
                    received++
                    if (received == 3) threeTokens.complete(Unit)
                }
            }
            launch {
                threeTokens.await()
                collector.cancelAndJoin()
            }.join()
            while (session.isGenerating) delay(5)
            val stats = session.stats ?: throw Failure("no stats")
            check(stats.stopReason == StopReason.CANCELLED) { "$stats" }
            check(stats.generatedTokens < 200u) { "kept generating: $stats" }
            // The session is free again.
            val more = session.generate(" Paris", greedy(2)).toList()
            check(more.isNotEmpty()) { "no text after cancel" }
        }
    }

    test("a second generation on a busy session throws SessionBusy") {
        model.newSession().use { session ->
            val first = CompletableDeferred<Unit>()
            val job = launch(Dispatchers.Default) {
                session.generate(PROMPT, greedy(400)).collect { first.complete(Unit) }
            }
            first.await()
            expectThrows<TernException.SessionBusy> {
                session.generate(PROMPT, greedy(1)).toList()
            }
            expectThrows<TernException.SessionBusy> { session.reset() }
            job.cancelAndJoin()
        }
    }

    test("two sessions generating at once give the right text") {
        val sessions = List(2) { model.newSession() }
        val texts = sessions.map { s ->
            async(Dispatchers.Default) { s.generate(PROMPT, greedy(16)).toList().joinToString("") }
        }.map { it.await() }
        sessions.forEach { it.close() }
        texts.forEach { check(it == expected) { "got '$it'" } }
    }

    test("a bad path throws FileNotFound") {
        val e = expectThrows<TernException.FileNotFound> {
            runBlocking { TernModel.load("$scratch/no-such-model.gguf") }
        }
        check(e.path.endsWith("no-such-model.gguf")) { e.path }
    }

    test("a memory budget too small throws OutOfMemoryBudget; a bandwidth budget shows in stats") {
        val e = expectThrows<TernException.OutOfMemoryBudget> {
            runBlocking { TernModel.load(modelPath, ModelOptions(memoryBudgetBytes = 32L shl 20)) }
        }
        check(e.neededBytes > e.budgetBytes) { "$e" }
        TernModel.load(modelPath, ModelOptions(threads = 2, bandwidthBudgetGbps = 60.0)).use { m ->
            m.newSession().use { s ->
                s.generate(PROMPT, greedy(4)).toList()
                val stats = s.stats ?: throw Failure("no stats")
                check(stats.bytesPerToken > 90_000_000uL) { "$stats" }
                check(stats.budgetFraction!! > 0.0 && stats.budgetCeilingTokensPerSecond!! > 0.0) { "$stats" }
            }
        }
    }

    test("a conversation stops at the end of turn, reuses the cache and restores") {
        val system = ConversationOptions(system = "You are a helpful assistant.")
        model.newConversation(system).use { chat ->
            val first = chat.send("What is the capital of France?", greedy(48)).toList().joinToString("")
            val s1 = chat.stats ?: throw Failure("no stats")
            check(first.isNotBlank() && "<|im_end|>" !in first) { first }
            check(s1.stopReason == StopReason.END_OF_GENERATION) { "$s1" }
            val saved = chat.save()
            val second = chat.send("And of Italy?", greedy(48)).toList().joinToString("")
            val s2 = chat.stats ?: throw Failure("no stats")
            check(s2.promptTokens < 20u && s2.contextTokens > s1.contextTokens + 10u) { "$s1 $s2" }
            model.newConversation(system).use { other ->
                other.restore(saved)
                check(other.messageCount == 3) { "${other.messageCount}" }
                val again = other.send("And of Italy?", greedy(48)).toList().joinToString("")
                check(again == second) { "'$again' != '$second'" }
                expectThrows<TernException.BadSnapshot> { other.restore(ByteArray(8)) }
            }
        }
    }

    test("a file that is not GGUF throws NotGguf") {
        val garbage = File(scratch, "garbage.gguf").apply { writeText("certainly not a model") }
        expectThrows<TernException.NotGguf> { runBlocking { TernModel.load(garbage.path) } }
    }

    test("a truncated model throws Corrupt with an offset") {
        val full = File(modelPath)
        val truncated = File(scratch, "truncated.gguf")
        full.inputStream().use { input ->
            truncated.outputStream().use { out ->
                val buf = ByteArray(1 shl 20)
                var left = full.length() / 2
                while (left > 0) {
                    val n = input.read(buf, 0, minOf(buf.size.toLong(), left).toInt())
                    out.write(buf, 0, n)
                    left -= n
                }
            }
        }
        val e = expectThrows<TernException.Corrupt> {
            runBlocking { TernModel.load(truncated.path) }
        }
        check(e.offset != null) { "no offset: $e" }
    }

    // Rust's panic hook prints the converted exception to stderr during this one.
    test("an exception in a listener becomes TernException.Internal, not a crash") {
        model.newSession().use { session ->
            val errors = LinkedBlockingQueue<TernException>()
            val listener = object : TokenListener {
                override fun onToken(text: String) = throw IllegalStateException("app bug")
                override fun onComplete(stats: GenerationStats) {}
                override fun onError(error: TernException) {
                    errors.put(error)
                }
            }
            val handle = session.native.generate(PROMPT, greedy(8).toNative(), listener)
            val error = errors.poll(60, TimeUnit.SECONDS)
            handle.close()
            check(error is TernException.Internal) { "got $error" }
            check("app bug" in error.toString()) { "message lost: $error" }
        }
    }

    test("async load reports progress") {
        val fractions = mutableListOf<Float>()
        val loaded = TernModel.load(modelPath, OPTIONS) { synchronized(fractions) { fractions += it } }
        loaded.use { check(it.info == model.info) { "different info" } }
        synchronized(fractions) {
            check(fractions.size > 10 && fractions.last() == 1f) { "$fractions" }
            check(fractions.zipWithNext().all { (a, b) -> a <= b }) { "$fractions" }
        }
        val e = expectThrows<TernException.FileNotFound> {
            runBlocking { loadModel(ModelSource.Path("$scratch/missing.gguf"), OPTIONS.toNative(), null) }
        }
        check(e.path.endsWith("missing.gguf")) { e.path }
    }

    test("use {} destroys the native objects") {
        val m = TernModel.load(modelPath, OPTIONS)
        val s = m.use { it.newSession() }
        check(m.native.uniffiIsDestroyed) { "model not destroyed" }
        // The session keeps the weights alive.
        val text = s.use { it.generate(PROMPT, greedy(4)).toList().joinToString("") }
        check(expected.startsWith(text)) { "got '$text'" }
        check(s.native.uniffiIsDestroyed) { "session not destroyed" }
        expectThrows<IllegalStateException> { s.native.stats() }
    }

    // Issue 19's probe: collect, cancelAndJoin after the first piece, send again at once.
    suspend fun CoroutineScope.cancelThenSend(
        tries: Int,
        long: () -> kotlinx.coroutines.flow.Flow<String>,
        short: () -> kotlinx.coroutines.flow.Flow<String>,
    ): Int {
        var failures = 0
        repeat(tries) {
            val first = CompletableDeferred<Unit>()
            val job = launch(Dispatchers.Default) { long().collect { first.complete(Unit) } }
            first.await()
            job.cancelAndJoin()
            try {
                check(short().toList().isNotEmpty()) { "no text" }
            } catch (e: TernException.SessionBusy) {
                failures++
            }
        }
        return failures
    }

    test("cancel then generate at once: 100 tries, 0 SessionBusy (session)", timeoutMs = 600_000) {
        model.newSession().use { session ->
            val failures = cancelThenSend(
                100,
                { session.generate(PROMPT, greedy(400)) },
                { session.generate(" Paris", greedy(1)) },
            )
            check(failures == 0) { "$failures of 100 failed with SessionBusy" }
        }
    }

    // Each round prefills the conversation so far: up to a few seconds a round on a busy
    // 2-core machine, hence the longer limit.
    test("cancel then send at once: 100 tries, 0 SessionBusy (conversation)", timeoutMs = 600_000) {
        model.newConversation().use { chat ->
            var round = 0
            val failures = cancelThenSend(
                100,
                { chat.send("Tell me a long story.", greedy(400)) },
                {
                    if (++round % 5 == 0) chat.reset()
                    chat.send("Hi", greedy(1))
                },
            )
            check(failures == 0) { "$failures of 100 failed with SessionBusy" }
        }
    }

    test("a reply is text events then one Done with the stop reason and stats") {
        model.newSession().use { session ->
            val events = session.generateEvents(PROMPT, greedy(16)).toList()
            val texts = events.dropLast(1).map { (it as ReplyEvent.Text).text }
            check(texts.joinToString("") == expected) { "got $texts" }
            val done = events.last() as? ReplyEvent.Done ?: throw Failure("last: ${events.last()}")
            check(done.stopReason == StopReason.MAX_TOKENS) { "$done" }
            check(done.stats.generatedTokens == 16u && done.stats.stopReason == done.stopReason) { "$done" }
            check(done.stats == session.stats) { "$done vs ${session.stats}" }
        }
        model.newConversation().use { chat ->
            val events = chat.sendEvents("Hi!", greedy(48)).toList()
            val done = events.last() as? ReplyEvent.Done ?: throw Failure("last: ${events.last()}")
            check(done.stopReason == StopReason.END_OF_GENERATION) { "$done" }
            check(events.dropLast(1).all { it is ReplyEvent.Text }) { "$events" }
        }
    }

    test("every member of a closed object throws TernException.Closed") {
        val m = TernModel.load(modelPath, OPTIONS)
        val s = m.newSession()
        val c = m.newConversation()
        m.close()
        m.close() // idempotent
        check(m.isClosed) { "not closed" }
        val modelUses: List<Pair<String, () -> Any?>> = listOf(
            "info" to { m.info },
            "options" to { m.options },
            "newSession" to { m.newSession() },
            "newConversation" to { m.newConversation() },
        )
        for ((name, use) in modelUses) {
            val e = expectThrows<TernException.Closed> { use() }
            check(e.name == "TernModel") { "$name: $e" }
        }
        // Sessions and conversations made before keep the weights alive.
        check(s.generate(PROMPT, greedy(2)).toList().isNotEmpty()) { "session after model close" }
        check(c.send("Hi", greedy(2)).toList().isNotEmpty()) { "conversation after model close" }
        s.close()
        c.close()
        val sessionUses: List<Pair<String, () -> Any?>> = listOf(
            "generate" to { s.generate(PROMPT) },
            "generateEvents" to { s.generateEvents(PROMPT) },
            "stats" to { s.stats },
            "isGenerating" to { s.isGenerating },
            "contextLength" to { s.contextLength },
            "reset" to { s.reset() },
        )
        for ((name, use) in sessionUses) {
            val e = expectThrows<TernException.Closed> { use() }
            check(e.name == "TernSession") { "$name: $e" }
        }
        val conversationUses: List<Pair<String, () -> Any?>> = listOf(
            "send" to { c.send("Hi") },
            "sendEvents" to { c.sendEvents("Hi") },
            "stats" to { c.stats },
            "messageCount" to { c.messageCount },
            "isGenerating" to { c.isGenerating },
            "prompt" to { c.prompt() },
            "save" to { c.save() },
            "restore" to { c.restore(ByteArray(8)) },
            "reset" to { c.reset() },
        )
        for ((name, use) in conversationUses) {
            val e = expectThrows<TernException.Closed> { use() }
            check(e.name == "TernConversation") { "$name: $e" }
        }
        check(m.native.uniffiIsDestroyed && s.native.uniffiIsDestroyed && c.native.uniffiIsDestroyed) {
            "native objects not freed"
        }
    }

    test("closing a model while another thread creates sessions never frees it under them") {
        repeat(20) {
            val m = TernModel.load(modelPath, OPTIONS)
            val made = async(Dispatchers.Default) {
                var n = 0
                try {
                    while (true) {
                        m.newSession().close()
                        n++
                    }
                } catch (e: TernException.Closed) {
                }
                n
            }
            delay(2)
            m.close()
            made.await()
            check(m.native.uniffiIsDestroyed) { "model not freed" }
        }
    }

    test("a conversation seeded with messages reads them back, regenerates and removes turns reusing the cache") {
        val seed = listOf(
            ChatMessage("user", "What is the capital of France?"),
            ChatMessage("assistant", "The capital of France is Paris."),
        )
        model.newConversation(ConversationOptions(system = "You are a helpful assistant.", messages = seed)).use { chat ->
            check(chat.messages == listOf(ChatMessage("system", "You are a helpful assistant.")) + seed) { "${chat.messages}" }
            val left = chat.tokensLeft
            val first = chat.sendEvents("And of Italy?", greedy(24)).toList().last() as ReplyEvent.Done
            val reply = chat.messages.last()
            check(reply.role == "assistant" && chat.messages.size == 5) { "${chat.messages}" }
            check(chat.tokensLeft == left - first.stats.contextTokens.toInt()) { "${chat.tokensLeft} $left ${first.stats}" }
            val events = chat.regenerateEvents(greedy(24)).toList()
            val again = events.last() as ReplyEvent.Done
            val text = events.filterIsInstance<ReplyEvent.Text>().joinToString("") { it.text }
            check(text == reply.content) { "'$text' != '${reply.content}'" }
            // Only the reply is computed again: everything before it comes from the KV cache.
            check(again.stats.promptTokens <= 3u && again.stats.cachedTokens >= first.stats.cachedTokens) {
                "first ${first.stats}\nregenerated ${again.stats}"
            }
            println("      regenerate: ${again.stats.cachedTokens} tokens reused, ${again.stats.promptTokens} processed")
            val removed = chat.removeLastTurn()
            check(removed.map { it.role } == listOf("user", "assistant") && chat.messages.size == 3) { "$removed" }
        }
        model.newConversation(
            ConversationOptions(
                template = "{% for m in messages %}{{ m.content }}{% endfor %}{% if enable_thinking %}+{% else %}-{% endif %}",
                messages = listOf(ChatMessage("user", "Hi")),
                templateVariables = listOf(TemplateVariable("enable_thinking", TemplateValue.Bool(false))),
            ),
        ).use { chat -> check(chat.prompt() == "Hi-") { chat.prompt() } }
    }

    test("options take signed Kotlin types and refuse negative counts") {
        check(GenerateOptions().toNative() == dev.tern.ffi.GenerateOptions()) { "GenerateOptions defaults differ" }
        check(ModelOptions().toNative() == dev.tern.ffi.ModelOptions()) { "ModelOptions defaults differ" }
        check(model.options == OPTIONS) { "${model.options}" }
        expectThrows<TernException.InvalidArgument> { runBlocking { TernModel.load(modelPath, ModelOptions(threads = -1)) } }
        model.newSession().use { s ->
            expectThrows<TernException.InvalidArgument> { s.generate(PROMPT, GenerateOptions(maxTokens = -1)).toList() }
        }
    }

    test("countTokens, tokensLeft and estimateMemory") {
        check(model.countTokens(PROMPT) == 5) { "${model.countTokens(PROMPT)}" }
        check(model.countTokens("") == 0) { "empty" }
        model.newSession().use { s ->
            check(s.tokensLeft == s.contextLength) { "${s.tokensLeft}" }
            s.generate(PROMPT, greedy(4)).toList()
            check(s.tokensLeft == s.contextLength - s.stats!!.contextTokens.toInt()) { "${s.tokensLeft}" }
        }
        val e = TernModel.estimateMemory(modelPath, ModelOptions(contextLength = 512))
        check(e.totalBytes == e.weightsBytes + e.repackedBytes + e.kvCacheBytes + e.scratchBytes) { "$e" }
        // The model's bytes are held as file pages or, where int8 repacks them, as the repacked
        // copy (its file pages released): one or the other, never both.
        check(e.weightsBytes + e.repackedBytes > 50_000_000uL && e.kvCacheBytes > 0uL) { "$e" }
        val big = TernModel.estimateMemory(modelPath, ModelOptions(contextLength = 2048))
        check(big.kvCacheBytes == 4uL * e.kvCacheBytes) { "$e $big" }
    }

    test("an fd load reports progress") {
        val fd = LibC.INSTANCE.open(modelPath, 0) // O_RDONLY
        check(fd >= 0) { "open failed" }
        try {
            val fractions = mutableListOf<Float>()
            TernModel.load(fd, 0L, File(modelPath).length(), OPTIONS) { f ->
                synchronized(fractions) { fractions += f }
            }.use { check(it.info == model.info) { "different info" } }
            synchronized(fractions) {
                check(fractions.size > 10 && fractions.last() == 1f) { "$fractions" }
            }
        } finally {
            LibC.INSTANCE.close(fd)
        }
    }

    test("the README example runs") {
        val out = ByteArrayOutputStream()
        val stdout = System.out
        System.setOut(PrintStream(out, true))
        try {
            demo(modelPath)
        } finally {
            System.setOut(stdout)
        }
        val lines = out.toString().lines()
        check(lines[0].matches(Regex("llama: 1[0-9]{8} parameters"))) { "printed $lines" }
        check(lines.last { it.isNotEmpty() }.endsWith(" tok/s")) { "printed $lines" }
    }

    // Tool calling end to end on the small model: a short ChatML template with `tools` and the
    // Hermes `<tool_call>` syntax (SmolLM2's own has no tools) and a required call, so the
    // constraint guarantees a well-formed call even from a 135M model.
    val toolsTemplate = File("ffi/tests/data/chatml-tools.jinja").readText()
    val weather = Tool(
        name = "get_weather",
        description = "Get the weather forecast for a city.",
        parametersJson = """{"type": "object", "properties": {
            "city": {"type": "string", "minLength": 1, "maxLength": 40},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
          "required": ["city"], "additionalProperties": false}""",
    )
    test("a tool call end to end: request, call event, tool result, answer from the cache") {
        val options = ConversationOptions(template = toolsTemplate, tools = listOf(weather), requireToolCall = true)
        model.newConversation(options).use { chat ->
            val events = chat.sendEvents("What is the weather in Paris?", greedy(40)).toList()
            val call = events.filterIsInstance<ReplyEvent.ToolCall>().firstOrNull()
                ?: throw Failure("no call in $events")
            check(call.name == "get_weather") { "$call" }
            // serde_json's compact form, keys sorted: valid under the schema by construction.
            val valid = Regex("""\{"city":"[^"]{1,40}"(,"unit":"(celsius|fahrenheit)")?\}""")
            check(valid.matches(call.argumentsJson)) { "arguments ${call.argumentsJson}" }
            val first = (events.last() as? ReplyEvent.Done)?.stats ?: throw Failure("$events")

            val result = ToolResult("get_weather", """{"temperature_c": 18, "sky": "cloudy"}""")
            val answer = chat.sendToolResults(listOf(result), greedy(24)).toList()
            val done = answer.last() as? ReplyEvent.Done ?: throw Failure("$answer")
            check(answer.any { it is ReplyEvent.Text }) { "no answer text: $answer" }
            // The first prompt came from the cache (but for its last token, which may merge with
            // the reply's first byte); only the rendered reply, the tool message and the header
            // were processed.
            val firstPrompt = first.promptTokens + first.cachedTokens
            check(done.stats.cachedTokens + 1u >= firstPrompt) { "$first\n${done.stats}" }
            check(done.stats.promptTokens <= first.generatedTokens + 40u) { "$first\n${done.stats}" }
            check(chat.messages.takeLast(2).map { it.role } == listOf("tool", "assistant")) { "${chat.messages}" }
            // The history reads back with the call (name and arguments) and the named result.
            val made = chat.messages.dropLast(2).last()
            val madeCalls = events.filterIsInstance<ReplyEvent.ToolCall>().map { it.name to it.argumentsJson }
            check(made.toolCalls.map { it.name to it.argumentsJson } == madeCalls) { "$made vs $madeCalls" }
            check(chat.messages.dropLast(1).last().name == "get_weather") { "${chat.messages}" }
        }
    }

    test("openConversation makes a tool conversation off the caller's thread") {
        // A fresh model: its constraint vocabulary is not built yet, so the first conversation
        // with tools takes a while to make.
        TernModel.load(modelPath, OPTIONS).use { fresh ->
            val options = ConversationOptions(template = toolsTemplate, tools = listOf(weather))
            val pending = async { fresh.openConversation(options) }
            yield()
            // Had it blocked, it would have run to its end on this (the only) thread before
            // yield returned.
            check(!pending.isCompleted) { "openConversation ran on the caller's thread" }
            pending.await().use { chat -> check(chat.messages.isEmpty()) { "${chat.messages}" } }
        }
        TernModel.load(modelPath, OPTIONS).use { fresh ->
            fresh.prepareTools()
            fresh.prepareTools()
            val options = ConversationOptions(template = toolsTemplate, tools = listOf(weather))
            fresh.newConversation(options).use { chat -> check(chat.messageCount == 0) }
        }
    }

    test("a bad tool schema throws InvalidSchema naming the line and column") {
        val bad = Tool("get_weather", "", "{\"type\": \"object\",\n \"properties\": {,}}")
        val e = expectThrows<TernException.InvalidSchema> {
            model.newConversation(ConversationOptions(template = toolsTemplate, tools = listOf(bad)))
        }
        check(e.line == 2u && e.column == 17u && "get_weather" in e.what) { "$e" }
        expectThrows<TernException.NoToolCallFormat> {
            model.newConversation(ConversationOptions(tools = listOf(weather)))
        }
    }

    test("a JSON Schema option constrains a generation to a valid document") {
        val schema = """{"type": "object", "properties": {
            "city": {"type": "string", "minLength": 1, "maxLength": 20},
            "population": {"type": "integer", "minimum": 0, "maximum": 100000000}},
          "required": ["city", "population"], "additionalProperties": false}"""
        model.newSession().use { session ->
            val options = GenerateOptions(maxTokens = 60, temperature = 0f, jsonSchema = schema)
            val events = session.generateEvents("Paris as JSON with its population:", options).toList()
            val text = events.filterIsInstance<ReplyEvent.Text>().joinToString("") { it.text }
            // The engine writes `", "` and `": "` separators and the schema's property order.
            val valid = Regex("""\{"city": "[^"]{1,20}", "population": (0|[1-9][0-9]{0,7}|100000000)\}""")
            check(valid.matches(text)) { "not valid under the schema: $text" }
            val done = events.last() as? ReplyEvent.Done ?: throw Failure("$events")
            check(done.stopReason == StopReason.END_OF_GENERATION) { "$done" }
            val e = expectThrows<TernException.InvalidSchema> {
                session.generateEvents(PROMPT, GenerateOptions(jsonSchema = "{\n\"type\": }")).toList()
            }
            check(e.line == 2u && e.column == 9u) { "$e" }
        }
    }

    // A second architecture through the same API, unchanged: Gemma 3 (sliding-window layers,
    // GeGLU, 262k-token SentencePiece vocabulary), when the test command passes its file.
    if (args.size >= 5) {
        val gemmaPath = args[3]
        val gemmaExpected = File(args[4]).readText()
        test("Gemma 3 270M: 16 greedy tokens equal the Rust API's") {
            TernModel.load(gemmaPath, OPTIONS).use { gemma ->
                check(gemma.info.architecture == "gemma3") { "architecture ${gemma.info.architecture}" }
                check(gemma.info.vocabSize == 262144u) { "vocab ${gemma.info.vocabSize}" }
                check(!gemma.info.hasChatTemplate) { "a base model has no chat template" }
                gemma.newSession().use { session ->
                    val text = session.generate(PROMPT, greedy(16)).toList().joinToString("")
                    check(text == gemmaExpected) { "got '$text', expected '$gemmaExpected'" }
                }
            }
        }
    }

    // The NPU delegate as a model option, on ONNX Runtime's CPU provider (the same graphs the
    // QNN provider compiles for the NPU): SmolLM2 requantized to Q4_0, whose projections and
    // FFN blocks it takes. The test command always passes these; without them this fails.
    test("NPU delegate: arguments given") {
        check(args.size >= 8) { "no Q4_0 model, expected text and ONNX Runtime library in args" }
    }
    if (args.size >= 8) {
        val q4Path = args[5]
        val q4Expected = File(args[6]).readText()
        val ortLibrary = args[7]
        // First, before any ONNX Runtime is loaded in this process.
        test("NPU delegate: a missing library is DelegateUnavailable") {
            val missing = "/nonexistent/libonnxruntime.so"
            val e = expectThrows<TernException.DelegateUnavailable> {
                TernModel.load(
                    q4Path,
                    OPTIONS.copy(delegate = DelegateOptions(kind = DelegateKind.ORT_CPU, ortLibrary = missing)),
                )
            }
            check(e.reason.contains(missing)) { "$e" }
            val e2 = expectThrows<TernException.DelegateUnavailable> {
                TernModel.load(q4Path, OPTIONS.copy(delegate = qnnDelegate("/nonexistent")))
            }
            check(e2.reason.contains("/nonexistent/")) { "$e2" }
        }
        test("NPU delegate: OrtCpu gives the CPU's 16 greedy tokens and lists its decisions") {
            val delegate = DelegateOptions(kind = DelegateKind.ORT_CPU, ortLibrary = ortLibrary)
            // F32 on both sides (the expected text is `tern run --precision f32`): the default
            // precision is int8 on this CPU, where the CPU and the delegate round differently.
            val f32 = OPTIONS.copy(delegate = delegate, activationPrecision = dev.tern.ffi.Precision.F32)
            TernModel.load(q4Path, f32).use { m ->
                check(m.options.delegate == delegate) { "${m.options}" }
                val decisions = m.delegateDecisions
                val layers = 30
                check(decisions.size == layers * 8 + 1) { "${decisions.size} decisions" }
                val blocks = decisions.filter { it.projection == "ffn" }
                check(blocks.size == layers && blocks.all { it.taken }) { blocks.first().description }
                check(decisions.all { it.taken == (it.reason == null) }) { "taken with a reason" }
                val q = decisions.first { it.projection == "attn_q" }
                check(q.taken && q.format == "Q4_0" && q.layer == 0u) { q.description }
                m.newSession().use { session ->
                    val text = session.generate(PROMPT, greedy(16)).toList().joinToString("")
                    check(text == q4Expected) { "got '$text', expected '$q4Expected'" }
                }
            }
            // Without the option: the CPU, no decisions.
            TernModel.load(q4Path, OPTIONS).use { m ->
                check(m.delegateDecisions.isEmpty()) { "${m.delegateDecisions.size} decisions" }
            }
        }
    }

    model.close()
    println("$passed passed, $failed failed")
    exitProcess(if (failed == 0) 0 else 1)
}
