//! Multi-turn chat on SmolLM2-135M-Instruct: KV reuse between turns, stop rules, the context
//! policy at the boundary, and saving / restoring a session.

use tern_runtime::chat::{
    Chat, ChatError, ChatOptions, Message, OverflowPolicy, ReplyOptions, ReplyStop,
};
use tern_runtime::sampler::argmax_logits;
use tern_runtime::session::RestoreError;
use tern_runtime::{Flow, GenerateError, SamplerOptions, Session, SessionOptions};
use tern_tests::smollm2;

fn chat_with(context: usize, overflow: OverflowPolicy) -> Chat {
    let session = Session::new(
        smollm2(),
        &SessionOptions {
            context,
            precision: tern_runtime::ActivationPrecision::F32,
            ..Default::default()
        },
    )
    .unwrap();
    let opts = ChatOptions {
        sampling: SamplerOptions::greedy(),
        overflow,
        ..Default::default()
    };
    Chat::with_model_template(session, opts).expect("SmolLM2 has a chat template")
}

fn chat(context: usize) -> Chat {
    chat_with(context, OverflowPolicy::DropOldestTurns)
}

fn limit(max_tokens: usize) -> ReplyOptions {
    ReplyOptions {
        max_tokens,
        ..Default::default()
    }
}

/// Sends `text`, collecting what is streamed, and checks the stream equals the reply.
fn send(
    chat: &mut Chat,
    text: &str,
    opts: &ReplyOptions,
) -> Result<tern_runtime::chat::Reply, ChatError> {
    let mut streamed = String::new();
    let reply = chat.send(text, opts, &mut |piece| {
        streamed.push_str(piece);
        Flow::Continue
    })?;
    assert_eq!(streamed, reply.text, "streamed text differs from the reply");
    Ok(reply)
}

#[test]
fn second_turn_prefills_only_the_new_tokens() {
    let mut c = chat(1024);
    let tok = smollm2();
    let tok = tok.tokenizer();
    let r1 = send(&mut c, "What is the capital of France?", &limit(64)).unwrap();
    assert_eq!(r1.prefill.reused, 0);
    assert_eq!(r1.prefill.new, tok.encode(&r1.prompt, false, true).len());
    assert_eq!(r1.stop, ReplyStop::EndOfTurn, "reply: {:?}", r1.text);
    assert!(
        !r1.text.is_empty() && !r1.text.contains("<|im_end|>"),
        "{:?}",
        r1.text
    );
    // The session holds the prompt and the reply (the end-of-turn token is never fed).
    assert_eq!(c.session().tokens().len(), r1.prefill.new + r1.n_tokens);
    assert_eq!(c.messages().len(), 2);
    assert_eq!(c.messages()[1], Message::assistant(&r1.text));

    let r2 = send(&mut c, "And of Germany?", &limit(64)).unwrap();
    let expected_start = format!("{}{}<|im_end|>\n", r1.prompt, r1.text);
    assert!(
        r2.prompt.starts_with(&expected_start),
        "turn 2 prompt: {:?}",
        r2.prompt
    );
    assert!(r2
        .prompt
        .ends_with("<|im_start|>user\nAnd of Germany?<|im_end|>\n<|im_start|>assistant\n"));
    let n2 = tok.encode(&r2.prompt, false, true).len();
    assert_eq!(r2.prefill.reused + r2.prefill.new, n2);
    // Everything of turn 1 is reused: its prompt and its reply.
    assert!(
        r2.prefill.reused >= r1.prefill.new + r1.n_tokens - 1,
        "{:?}",
        r2.prefill
    );
    // Only the tail is new: `<|im_end|>\n<|im_start|>user\nAnd of Germany?<|im_end|>\n…`.
    let tail = tok.encode(
        "<|im_end|>\n<|im_start|>user\nAnd of Germany?<|im_end|>\n<|im_start|>assistant\n",
        false,
        true,
    );
    assert!(r2.prefill.new <= tail.len() + 1, "{:?}", r2.prefill);
    assert!(!r2.text.contains("<|im_end|>"));
}

#[test]
fn reusing_the_cache_gives_the_same_replies_as_reprocessing() {
    let mut reuse = chat(1024);
    let session = Session::new(
        smollm2(),
        &SessionOptions {
            context: 1024,
            precision: tern_runtime::ActivationPrecision::F32,
            ..Default::default()
        },
    )
    .unwrap();
    let opts = ChatOptions {
        sampling: SamplerOptions::greedy(),
        reuse_cache: false,
        ..Default::default()
    };
    let mut fresh = Chat::with_model_template(session, opts).unwrap();
    for q in ["Name a fruit.", "What colour is it?"] {
        let a = send(&mut reuse, q, &limit(24)).unwrap();
        let b = send(&mut fresh, q, &limit(24)).unwrap();
        assert_eq!(b.prefill.reused, 0);
        assert_eq!(a.prompt, b.prompt);
        // The first token comes from the same logits up to float rounding of the batch
        // split; the texts are compared on their first words, where a near-tie is unlikely.
        let first = |s: &str| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
        assert_eq!(
            first(&a.text),
            first(&b.text),
            "{:?} vs {:?}",
            a.text,
            b.text
        );
    }
}

#[test]
fn truncate_then_feed_equals_a_fresh_feed() {
    let model = smollm2();
    let tok = model.tokenizer();
    let a = tok.encode("<|im_start|>user\nHello there", false, true);
    let b = tok.encode(", general Kenobi", false, true);
    let c = tok.encode(", how are you?", false, true);
    let opts = SessionOptions {
        context: 256,
        precision: tern_runtime::ActivationPrecision::F32,
        ..Default::default()
    };
    let mut s = Session::new(model.clone(), &opts).unwrap();
    s.feed(&[a.clone(), b].concat()).unwrap();
    s.truncate(a.len());
    assert_eq!(s.tokens(), &a[..]);
    assert!(s.logits().is_none());
    s.truncate(1000); // Longer than the context so far: nothing happens.
    assert_eq!(s.tokens(), &a[..]);
    let got = s.feed(&c).unwrap().to_vec();
    let mut fresh = Session::new(model.clone(), &opts).unwrap();
    fresh.feed(&a).unwrap();
    let want = fresh.feed(&c).unwrap().to_vec();
    assert_eq!(
        got, want,
        "same tokens at the same positions give the same logits"
    );
}

#[test]
fn stop_strings_straddling_tokens_are_not_emitted() {
    let question = "List three colours, separated by commas.";
    let mut plain = chat(512);
    let r = send(&mut plain, question, &limit(32)).unwrap();
    // A stop string made of the end of one generated token and the start of the next.
    let tok = smollm2();
    let tok = tok.tokenizer();
    let prompt_len = r.prefill.reused + r.prefill.new;
    let ids = &plain.session().tokens()[prompt_len..];
    let mut at = 0;
    let mut stop = None;
    for id in ids {
        at += tok.token_bytes(*id, false).len();
        let (Some(head), Some(rest)) = (r.text.get(..at), r.text.get(at..)) else {
            continue;
        };
        let (Some(before), Some(after)) = (head.chars().last(), rest.chars().next()) else {
            continue;
        };
        let s = format!("{before}{after}");
        let start = at - before.len_utf8();
        if at > 4 && r.text.find(&s) == Some(start) && !before.is_whitespace() {
            stop = Some((s, start));
            break;
        }
    }
    let (stop, start) = stop.expect("a reply with a token boundary inside a word");
    let mut c = chat(512);
    let opts = ReplyOptions {
        max_tokens: 32,
        stop: vec!["never-generated".into(), stop.clone()],
    };
    let got = send(&mut c, question, &opts).unwrap();
    assert_eq!(got.stop, ReplyStop::StopString(1));
    assert_eq!(got.text, r.text[..start], "stop string {stop:?}");
    assert_eq!(c.messages().last().unwrap().content, got.text);
}

#[test]
fn cancelling_keeps_the_partial_reply() {
    let mut c = chat(512);
    let mut calls = 0;
    let r = c
        .send("Tell me about the sea.", &limit(64), &mut |_| {
            // One call before the prompt's only batch, then one per token.
            calls += 1;
            if calls == 4 {
                Flow::Stop
            } else {
                Flow::Continue
            }
        })
        .unwrap();
    assert_eq!(r.stop, ReplyStop::Cancelled);
    assert_eq!(r.n_tokens, 3);
    assert_eq!(c.messages().last().unwrap().content, r.text);
}

#[test]
fn max_tokens_ends_the_reply() {
    let mut c = chat(512);
    let r = send(&mut c, "Write a long poem about rivers.", &limit(5)).unwrap();
    assert_eq!((r.stop, r.n_tokens), (ReplyStop::MaxTokens, 5));
}

/// Tiny context: the default policy drops the oldest turns, keeps the system prompt and never
/// exceeds the context.
#[test]
fn tiny_context_drops_oldest_turns() {
    let mut c = chat(128);
    c.set_system(Some("Answer in one word."));
    let mut dropped = 0;
    let questions = [
        "Capital of France?",
        "Capital of Spain?",
        "Capital of Italy?",
        "Capital of Peru?",
        "Capital of Japan?",
        "Capital of Chile?",
    ];
    for q in questions {
        let r = send(&mut c, q, &limit(16)).unwrap();
        dropped += r.prefill.dropped_messages;
        assert!(c.session().tokens().len() <= 128);
        assert_eq!(c.messages()[0], Message::system("Answer in one word."));
        assert_eq!(c.messages()[c.messages().len() - 2], Message::user(q));
        if r.prefill.dropped_messages > 0 {
            // The cache keeps at least the system prompt.
            assert!(r.prefill.reused > 0, "{:?}", r.prefill);
        }
    }
    assert!(dropped > 0, "six turns should not fit in 128 tokens");
    assert!(c.messages().len() < 2 * questions.len() + 1);
}

/// A reply that runs into the end of the context ends cleanly, and the conversation goes on.
#[test]
fn reply_reaching_the_context_end_stops_cleanly() {
    let mut c = chat(128);
    let r = send(
        &mut c,
        "Write a very long story about a dragon and a knight.",
        &limit(1000),
    )
    .unwrap();
    assert!(
        matches!(r.stop, ReplyStop::ContextFull | ReplyStop::EndOfTurn),
        "{:?}",
        r.stop
    );
    assert!(c.session().tokens().len() <= 128);
    let r2 = send(&mut c, "Thanks!", &limit(8)).unwrap();
    assert!(c.session().tokens().len() <= 128);
    assert!(r2.prefill.reused + r2.prefill.new <= 128);
}

#[test]
fn refuse_policy_returns_context_full_and_keeps_the_conversation() {
    let mut c = chat_with(128, OverflowPolicy::Refuse);
    let mut refused = false;
    for q in [
        "Capital of France?",
        "Capital of Spain?",
        "Capital of Italy?",
        "Capital of Peru?",
        "Capital of Japan?",
        "Capital of Chile?",
    ] {
        let before = c.messages().to_vec();
        match send(&mut c, q, &limit(16)) {
            Ok(_) => assert!(c.session().tokens().len() <= 128),
            Err(e) => {
                assert!(
                    matches!(
                        e,
                        ChatError::Generate(GenerateError::ContextFull { limit: 128, .. })
                    ),
                    "{e}"
                );
                assert_eq!(c.messages(), &before[..]);
                refused = true;
                break;
            }
        }
    }
    assert!(refused, "six turns should not fit in 128 tokens");
    c.reset();
    assert!(c.messages().is_empty());
    send(&mut c, "Hi", &limit(4)).unwrap();
}

#[test]
fn a_message_longer_than_the_context_is_a_typed_error() {
    let long = "word ".repeat(300);
    for policy in [OverflowPolicy::DropOldestTurns, OverflowPolicy::Refuse] {
        let mut c = chat_with(128, policy);
        send(&mut c, "Hi", &limit(4)).unwrap();
        let before = c.messages().to_vec();
        let err = send(&mut c, &long, &limit(4)).unwrap_err();
        assert!(
            matches!(err, ChatError::Generate(GenerateError::ContextFull { .. })),
            "{policy:?}: {err}"
        );
        assert_eq!(c.messages(), &before[..], "{policy:?}");
        send(&mut c, "Still there?", &limit(4)).unwrap();
    }
}

#[test]
fn restored_session_gives_the_same_next_token() {
    let mut c = chat(512);
    send(&mut c, "What is the capital of France?", &limit(32)).unwrap();
    let original = c.session();
    let bytes = original.save();

    let mut restored = Session::new(
        smollm2(),
        &SessionOptions {
            context: 512,
            precision: tern_runtime::ActivationPrecision::F32,
            ..Default::default()
        },
    )
    .unwrap();
    restored.restore(&bytes).unwrap();
    assert_eq!(restored.tokens(), original.tokens());
    let (a, b) = (original.logits().unwrap(), restored.logits().unwrap());
    assert_eq!(argmax_logits(a), argmax_logits(b));
    assert_eq!(a, b);

    // And the next turn continues identically from either.
    let tok = smollm2();
    let next = tok.tokenizer().encode(
        "<|im_end|>\n<|im_start|>user\nAnd Spain?<|im_end|>\n<|im_start|>assistant\n",
        false,
        true,
    );
    let mut original = c.into_session();
    let a = original.feed(&next).unwrap().to_vec();
    let b = restored.feed(&next).unwrap().to_vec();
    assert_eq!(a, b);
}

#[test]
fn restored_chat_continues_like_the_original() {
    let mut a = chat(512);
    send(&mut a, "What is the capital of France?", &limit(32)).unwrap();
    let saved = a.save();
    let mut b = chat(512);
    b.restore(&saved).unwrap();
    assert_eq!(a.messages(), b.messages());
    let ra = send(&mut a, "And of Spain?", &limit(24)).unwrap();
    let rb = send(&mut b, "And of Spain?", &limit(24)).unwrap();
    // Same reuse from the restored cache (timings aside).
    let same_time = tern_runtime::chat::Prefill {
        time: ra.prefill.time,
        ..rb.prefill
    };
    assert_eq!(same_time, ra.prefill);
    assert_eq!(ra.text, rb.text);
}

/// zlib's CRC-32, to forge snapshots with valid checksums.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                0xEDB8_8320 ^ (crc >> 1)
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn reseal(bytes: &mut [u8]) {
    let n = bytes.len() - 4;
    let crc = crc32(&bytes[..n]);
    bytes[n..].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn restore_rejects_foreign_or_damaged_snapshots() {
    let mut c = chat(512);
    send(&mut c, "Hi!", &limit(8)).unwrap();
    let good = c.session().save();
    let fresh = || {
        Session::new(
            smollm2(),
            &SessionOptions {
                context: 512,
                precision: tern_runtime::ActivationPrecision::F32,
                ..Default::default()
            },
        )
        .unwrap()
    };

    let mut s = fresh();
    s.feed(&[1, 2, 3]).unwrap();
    let check = |s: &Session| {
        assert_eq!(
            s.tokens(),
            &[1, 2, 3],
            "a rejected restore changed the session"
        )
    };

    // Damaged anywhere after the header: checksum.
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    assert!(matches!(
        s.restore(&bad),
        Err(RestoreError::ChecksumMismatch { .. })
    ));
    check(&s);
    // Another format version.
    let mut bad = good.clone();
    bad[8] = 99;
    assert_eq!(
        s.restore(&bad),
        Err(RestoreError::UnsupportedVersion {
            found: 99,
            supported: 1
        })
    );
    // Another model: the fingerprint (bytes 12..20) differs, checksum valid.
    let mut bad = good.clone();
    bad[12] ^= 1;
    reseal(&mut bad);
    assert!(matches!(
        s.restore(&bad),
        Err(RestoreError::ModelMismatch { .. })
    ));
    check(&s);
    // Truncated, empty, or something else entirely.
    for n in [0, 7, 12, 40, good.len() / 3, good.len() - 1] {
        assert!(s.restore(&good[..n]).is_err(), "{n} bytes");
    }
    assert_eq!(
        s.restore(b"not a snapshot at all"),
        Err(RestoreError::NotASnapshot)
    );
    assert_eq!(
        s.restore(&c.save()),
        Err(RestoreError::NotASnapshot),
        "a chat is not a session"
    );
    // A length field that lies, with a valid checksum.
    let mut bad = good.clone();
    bad[44] ^= 1; // token count
    reseal(&mut bad);
    assert!(matches!(
        s.restore(&bad),
        Err(RestoreError::Malformed { .. })
    ));
    check(&s);
    // Too many tokens for this session's context.
    let mut small = Session::new(
        smollm2(),
        &SessionOptions {
            context: 8,
            precision: tern_runtime::ActivationPrecision::F32,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(matches!(
        small.restore(&good),
        Err(RestoreError::ContextTooSmall { limit: 8, .. })
    ));
    assert!(small.tokens().is_empty());
    // The good one still restores.
    s.restore(&good).unwrap();
    assert_eq!(s.tokens(), c.session().tokens());
}

#[test]
fn empty_and_truncated_sessions_round_trip() {
    let model = smollm2();
    let opts = SessionOptions {
        context: 64,
        precision: tern_runtime::ActivationPrecision::F32,
        ..Default::default()
    };
    let mut s = Session::new(model.clone(), &opts).unwrap();
    let mut r = Session::new(model.clone(), &opts).unwrap();
    r.feed(&[7, 8]).unwrap();
    r.restore(&s.save()).unwrap();
    assert!(r.tokens().is_empty() && r.logits().is_none());

    s.feed(&[1, 2, 3, 4]).unwrap();
    s.truncate(2);
    r.restore(&s.save()).unwrap();
    assert_eq!(r.tokens(), &[1, 2]);
    assert!(r.logits().is_none());
    let a = s.feed(&[5]).unwrap().to_vec();
    assert_eq!(r.feed(&[5]).unwrap(), &a[..]);
}

#[test]
fn oversized_session_options_are_clamped_to_the_model() {
    // The Rust API takes any numbers: a context beyond the trained one, or a batch beyond the
    // context, must not size buffers by the request.
    let model = smollm2();
    let trained = model.config().train_context;
    let s = Session::new(
        model.clone(),
        &SessionOptions {
            context: usize::MAX,
            precision: tern_runtime::ActivationPrecision::F32,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(s.context_len(), trained);
    let opts = SessionOptions {
        context: 64,
        batch: usize::MAX,
        precision: tern_runtime::ActivationPrecision::F32,
        ..Default::default()
    };
    let mut s = Session::new(model, &opts).unwrap();
    assert_eq!(s.context_len(), 64);
    let prompt: Vec<u32> = (1..=40).collect();
    assert!(s.feed(&prompt).unwrap().iter().all(|v| v.is_finite()));
}
