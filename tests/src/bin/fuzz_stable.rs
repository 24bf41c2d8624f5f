//! The fuzz targets on the stable toolchain, without coverage feedback: random mutations of the
//! seed corpus (bit flips, interesting integers, truncations, deletions, duplications, splices)
//! for a given time, each input run under `catch_unwind`. It finds what a panic-on-bad-input
//! bug looks like; `scripts/fuzz.sh` prefers cargo-fuzz (coverage-guided) when nightly is there.
//!
//! ```text
//! fuzz_stable seed                  write the seed corpus into fuzz/corpus/TARGET/
//! fuzz_stable malformed             write the malformed-file corpus into fuzz/malformed/
//! fuzz_stable TARGET SECONDS        mutate fuzz/corpus/TARGET/* for SECONDS
//! fuzz_stable run TARGET FILE       run one input (a crash to reproduce)
//! ```
//! A panicking input is saved to `fuzz/artifacts/TARGET/crash-HASH` and the run exits 1. With
//! `FUZZ_SAVE_CURRENT=1` each input is first written to `fuzz/artifacts/TARGET/current`, so
//! one that aborts the process (a stack overflow) is left there.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tern_tests::fuzz::{self, target, TARGETS};
use tern_tests::malformed;
use tern_tests::rng::Rng;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = tern_tests::root().join("fuzz");
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["seed"] => {
            write_seeds(&root.join("corpus"));
            ExitCode::SUCCESS
        }
        ["malformed"] => {
            let dir = root.join("malformed");
            std::fs::create_dir_all(&dir).unwrap();
            let mut expected = String::from("# file\texpected error (tern-tests malformed.rs)\n");
            for case in malformed::cases() {
                std::fs::write(dir.join(&case.name), &case.bytes).unwrap();
                expected.push_str(&format!("{}\t{}\n", case.name, case.expected));
            }
            std::fs::write(dir.join("expected.tsv"), expected).unwrap();
            ExitCode::SUCCESS
        }
        ["run", name, file] => {
            let Some(f) = target(name) else {
                eprintln!("unknown target {name} (targets: {})", names());
                return ExitCode::from(2);
            };
            f(&std::fs::read(file).expect("input file reads"));
            println!("{name}: {file}: ran without a panic");
            ExitCode::SUCCESS
        }
        [name, secs] => {
            let (Some(f), Ok(secs)) = (target(name), secs.parse::<f64>()) else {
                eprintln!("usage: fuzz_stable TARGET SECONDS (targets: {})", names());
                return ExitCode::from(2);
            };
            run(name, f, &root, Duration::from_secs_f64(secs))
        }
        _ => {
            eprintln!(
                "usage: fuzz_stable seed | malformed | TARGET SECONDS (targets: {})",
                names()
            );
            ExitCode::from(2)
        }
    }
}

fn names() -> String {
    TARGETS.map(|(n, _)| n).join(", ")
}

/// Writes the seeds of every target as `seed-N` files.
fn write_seeds(dir: &Path) {
    let model = fuzz::tiny_model_bytes();
    let mut session = fuzz::tiny_session();
    session.feed(&[1, 259, 260, 261]).unwrap();
    let mut chat = fuzz::tiny_conversation();
    chat.push(tern_runtime::chat::Message::user("Hello world"));
    chat.push(tern_runtime::chat::Message::assistant("the"));
    let seeds: [(&str, Vec<Vec<u8>>); 5] = [
        (
            "gguf_parse",
            vec![
                model.clone(),
                model[..model.len() / 3].to_vec(),
                b"GGUF".to_vec(),
            ],
        ),
        ("model_load", vec![model]),
        (
            "chat_template",
            vec![
                fuzz::CHATML.as_bytes().to_vec(),
                b"{% for m in messages %}{% if loop.first %}{{ bos_token }}{% endif %}[{{ m.role \
                  | upper }}] {{ m.content | trim }}{% if not loop.last %}\n{% endif %}{% endfor %}"
                    .to_vec(),
                b"{%- set ns = namespace(x=0) -%}{%- for m in messages -%}{%- set ns.x = ns.x + \
                  1 -%}{{ m['content'][:3] ~ ns.x }}{%- endfor -%}{{ raise_exception('no') if \
                  messages|length > 9 }}"
                    .to_vec(),
            ],
        ),
        ("session_restore", vec![session.save()]),
        ("conversation_restore", vec![chat.save()]),
    ];
    for (name, inputs) in seeds {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for (i, bytes) in inputs.iter().enumerate() {
            std::fs::write(d.join(format!("seed-{i}")), bytes).unwrap();
        }
    }
}

/// Mutates the corpus of `name` for `time`, reporting executions and crashes.
fn run(name: &str, f: fn(&[u8]), root: &Path, time: Duration) -> ExitCode {
    let corpus = tern_tests::fuzz_corpus(name);
    assert!(
        !corpus.is_empty(),
        "no corpus for {name}: run `fuzz_stable seed`"
    );
    let quiet: std::sync::Arc<std::sync::Mutex<Option<String>>> = Default::default();
    let last = quiet.clone();
    std::panic::set_hook(Box::new(move |info| {
        *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(info.to_string());
    }));
    // FUZZ_SEED replays a run (the default seed differs per process).
    let seed = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok());
    let seed = seed.unwrap_or(0x5EED ^ std::process::id() as u64);
    println!("{name}: seed {seed}");
    let mut rng = Rng(seed | 1);
    let current = std::env::var_os("FUZZ_SAVE_CURRENT").map(|_| {
        let dir = root.join("artifacts").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("current")
    });
    let start = Instant::now();
    let (mut execs, mut crashes) = (0u64, 0u64);
    while start.elapsed() < time {
        for _ in 0..64 {
            let (_, base) = &corpus[rng.below(corpus.len())];
            let (_, other) = &corpus[rng.below(corpus.len())];
            let input = mutate(base, other, &mut rng);
            execs += 1;
            if let Some(path) = &current {
                // Before each run, so an abort (stack overflow, OOM) leaves its input behind.
                std::fs::write(path, &input).unwrap();
            }
            if std::panic::catch_unwind(|| f(&input)).is_err() {
                crashes += 1;
                let mut msg = quiet.lock().unwrap().take().unwrap_or_default();
                msg.truncate(msg.floor_char_boundary(300));
                let path = save_crash(root, name, &input);
                eprintln!("crash: {} ({msg})", path.display());
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name}: {execs} executions in {secs:.0} s ({:.0}/s), {crashes} crashes",
        execs as f64 / secs
    );
    if crashes == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn save_crash(root: &Path, name: &str, input: &[u8]) -> PathBuf {
    let dir = root.join("artifacts").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let hash = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let path = dir.join(format!("crash-{hash:016x}"));
    std::fs::write(&path, input).unwrap();
    path
}

/// 1 to 8 random edits of `base`, sometimes spliced with `other`.
fn mutate(base: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    const INTERESTING: [u64; 10] = [
        0,
        1,
        0x7F,
        0xFF,
        0x7FFF_FFFF,
        0xFFFF_FFFF,
        1 << 32,
        1 << 40,
        i64::MAX as u64,
        u64::MAX,
    ];
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(8) {
        let len = v.len().max(1);
        match rng.below(8) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 => {
                // An interesting integer of 1, 2, 4 or 8 bytes at a random place.
                let x = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                let w = [1, 2, 4, 8][rng.below(4)];
                let at = rng.below(len);
                for (k, b) in x[..w].iter().enumerate() {
                    if let Some(slot) = v.get_mut(at + k) {
                        *slot = *b;
                    }
                }
            }
            3 => v.truncate(rng.below(len)),
            4 if !v.is_empty() => {
                let a = rng.below(v.len());
                let b = (a + 1 + rng.below(64)).min(v.len());
                v.drain(a..b);
            }
            5 if !v.is_empty() => {
                let a = rng.below(v.len());
                let b = (a + 1 + rng.below(64)).min(v.len());
                let chunk = v[a..b].to_vec();
                let at = rng.below(v.len());
                v.splice(at..at, chunk);
            }
            6 if !other.is_empty() => {
                let cut = rng.below(v.len() + 1);
                let from = rng.below(other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            _ => {
                let at = rng.below(len);
                if let Some(slot) = v.get_mut(at) {
                    *slot = slot.wrapping_add(1 + rng.below(4) as u8);
                }
            }
        }
    }
    v
}
