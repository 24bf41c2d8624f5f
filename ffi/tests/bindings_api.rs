//! The Swift layer (`ios/Sources/Tern/Tern.swift`) against the Swift bindings uniffi generates
//! from the built library. No Swift compiler runs here, so this checks by reading: every
//! `TernFFI.Name` the layer uses is declared in the generated file, each generated call the
//! layer makes has the signature it assumes, and the generated defaults are the runtime's.
//! (The Kotlin side is compiled and run for real by `scripts/test-kotlin.sh`.)

use std::path::PathBuf;
use std::sync::OnceLock;

use tern_runtime::SamplerOptions;

/// The cdylib cargo built for this test run: in `deps/`, next to this test's executable (cargo
/// copies it up to the profile folder only on `cargo build`).
fn built_library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let name = format!(
        "{}tern_ffi{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let lib = exe.parent().unwrap().join(name);
    assert!(lib.exists(), "{} was not built", lib.display());
    lib
}

/// Generates the Swift bindings into a fresh directory (once per test binary) and returns the
/// Swift source.
fn generated_swift() -> &'static str {
    static SWIFT: OnceLock<String> = OnceLock::new();
    SWIFT.get_or_init(generate_swift)
}

fn generate_swift() -> String {
    let out = std::env::temp_dir().join(format!("tern-ffi-swift-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let lib = built_library();
    uniffi::generate(uniffi::GenerateOptions {
        languages: vec![uniffi::TargetLanguage::Swift],
        source: lib.try_into().unwrap(),
        out_dir: out.clone().try_into().unwrap(),
        config_override: None,
        format: false,
        crate_filter: None,
        metadata_no_deps: false,
    })
    .expect("uniffi generates Swift bindings");
    let swift = std::fs::read_to_string(out.join("TernFFI.swift")).unwrap();
    assert!(out.join("TernFFIC.h").exists() && out.join("TernFFIC.modulemap").exists());
    std::fs::remove_dir_all(&out).unwrap();
    swift
}

/// Swift source without comments.
fn strip_comments(swift: &str) -> String {
    let mut out = String::with_capacity(swift.len());
    let mut rest = swift;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |i| &after[i + 2..]);
        } else if let Some(after) = rest.strip_prefix("//") {
            rest = after.find('\n').map_or("", |i| &after[i..]);
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Swift source without comments and whitespace, so signatures compare as plain substrings
/// however the generator spaces them.
fn squash(swift: &str) -> String {
    strip_comments(swift)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

/// Generated declarations the wrapper relies on, each with the text that shows the wrapper
/// uses it (so the list cannot drift from the wrapper).
const CALLS: &[(&str, &str)] = &[
    (
        "publicfuncloadModel(source:TernModelSource,options:TernModelOptions=TernModelOptions(),progress:TernLoadProgress?=nil)asyncthrows->TernNativeModel",
        "TernFFI.loadModel(source: .path(path: path), options: options)",
    ),
    ("casepath(path:String)", "TernFFI.TernModelSource.path(path: path)"),
    ("openfuncinfo()->TernModelInfo", "native.info()"),
    ("openfuncprepareTools()throws", "try native.prepareTools()"),
    ("publicconvenienceinit(model:TernNativeModel)", "TernFFI.TernNativeSession(model: native)"),
    (
        "openfuncgenerateEvents(prompt:String,options:TernGenerateOptions,listener:TernReplyListener)throws->TernGenerationHandle",
        "self.native.generateEvents(prompt: prompt, options: options, listener: listener)",
    ),
    ("openfunccancel(){", "handle.cancel()"),
    ("openfuncstats()->TernGenerationStats?", "native.stats()"),
    ("openfuncisGenerating()->Bool", "native.isGenerating()"),
    ("openfuncreset()throws", "try native.reset()"),
    (
        "publicconvenienceinit(model:TernNativeModel,options:TernConversationOptions=TernConversationOptions())throws",
        "try TernFFI.TernNativeConversation(model: native, options: options)",
    ),
    (
        "openfuncsendEvents(message:String,options:TernGenerateOptions,listener:TernReplyListener)throws->TernGenerationHandle",
        "self.native.sendEvents(message: message, options: options, listener: listener)",
    ),
    (
        "openfuncsendToolResults(results:[TernToolResult],options:TernGenerateOptions,listener:TernReplyListener)throws->TernGenerationHandle",
        "self.native.sendToolResults(results: results, options: options, listener: listener)",
    ),
    ("openfuncsave()throws->Data", "try native.save()"),
    ("openfuncrestore(bytes:Data)throws", "try native.restore(bytes: bytes)"),
    ("funconEvent(event:TernReplyEvent)", "func onEvent(event: TernFFI.TernReplyEvent)"),
    ("casetext(text:String)", "case .text(let text) = event"),
    (
        "casedone(stopReason:TernStopReason,stats:TernGenerationStats)",
        "case .done = event",
    ),
    ("funconError(error:TernError)", "func onError(error: TernFFI.TernError)"),
    ("funconProgress(fraction:Float)", "func onProgress(fraction: Float)"),
    ("publicprotocolTernReplyListener:AnyObject,Sendable", "TernFFI.TernReplyListener"),
    ("enumTernError:Swift.Error", "TernError"),
    ("publicinit(threads:UInt32=UInt32(0),", "TernFFI.TernModelOptions()"),
    (
        "openfuncdelegateDecisions()->[TernDelegateDecision]",
        "native.delegateDecisions()",
    ),
    ("delegate:TernDelegateOptions?=nil)", "options.delegate"),
    ("caseDelegateUnavailable(reason:String)", ".DelegateUnavailable"),
    ("caseDelegateFailed(reason:String)", ".DelegateFailed"),
];

#[test]
fn swift_layer_uses_only_what_the_bindings_declare() {
    let generated = squash(generated_swift());
    let wrapper_path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ios/Sources/Tern/Tern.swift");
    let wrapper = std::fs::read_to_string(&wrapper_path).unwrap();

    // Every `TernFFI.Name` the wrapper's code writes is a type or function of the generated
    // module.
    let code = strip_comments(&wrapper);
    let mut names: Vec<&str> = code
        .match_indices("TernFFI.")
        .map(|(i, m)| {
            let rest = &code[i + m.len()..];
            let end = rest
                .find(|c: char| !c.is_alphanumeric() && c != '_')
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 10, "too few TernFFI names found: {names:?}");
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| {
            !["class", "struct", "enum", "protocol", "func"]
                .iter()
                .any(|kind| {
                    let decl = format!("{kind}{name}");
                    generated.match_indices(&decl).any(|(i, _)| {
                        // The name ends there: `classModel` must not match `classModelInfo`.
                        let next = generated[i + decl.len()..].chars().next();
                        !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
                    })
                })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "Tern.swift uses names the bindings lack: {missing:?}"
    );

    for (declaration, usage) in CALLS {
        assert!(
            generated.contains(declaration),
            "the generated Swift has no `{declaration}` (used as `{usage}` in Tern.swift)"
        );
        assert!(
            wrapper.contains(usage),
            "Tern.swift no longer contains `{usage}`: update CALLS"
        );
    }
}

/// Every type the generated Swift declares at the top level is `Tern`-prefixed (the renames in
/// ffi/uniffi.toml): `@_exported import TernFFI` puts them in the app's namespace, where a
/// bare `Model` or `Tool` would collide with the app's own types. Uniffi's public converters
/// (`FfiConverterType…`, which other uniffi modules use) have names no app writes.
#[test]
fn generated_swift_types_do_not_collide_with_app_types() {
    let code = strip_comments(generated_swift());
    let mut public: Vec<&str> = Vec::new();
    for line in code.lines() {
        // Top-level declarations only: `public class X`, `public struct X`, `open class X`, ….
        let mut words = line.split_whitespace();
        let (Some(vis), Some(kind), Some(name)) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        if line.starts_with(char::is_whitespace)
            || !matches!(vis, "public" | "open")
            || !matches!(kind, "class" | "struct" | "enum" | "protocol")
        {
            continue;
        }
        let name = name
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .next()
            .unwrap_or("");
        public.push(name);
    }
    assert!(public.len() >= 20, "too few public types found: {public:?}");
    let bare: Vec<&str> = public
        .iter()
        .copied()
        .filter(|n| !n.starts_with("Tern") && !n.starts_with("FfiConverterType"))
        .collect();
    assert!(
        bare.is_empty(),
        "generated Swift types without the Tern prefix: {bare:?}"
    );
    for wrapped in ["TernModel", "TernSession", "TernConversation"] {
        assert!(
            !public.contains(&wrapped),
            "the generated `{wrapped}` would clash with the wrapper's"
        );
    }
}

#[test]
fn generated_defaults_are_the_runtime_defaults() {
    let generated = squash(generated_swift());
    let d = SamplerOptions::default();
    let init = format!(
        "publicinit(maxTokens:UInt32=UInt32(128),temperature:Float=Float({:?}),topK:UInt32=UInt32({}),\
         topP:Float=Float({:?}),minP:Float=Float({:?}),repeatPenalty:Float=Float({:?}),\
         repeatLastN:UInt32=UInt32({}),seed:UInt64=UInt64({}),jsonSchema:String?=nil)",
        d.temperature, d.top_k, d.top_p, d.min_p, d.repeat_penalty, d.repeat_last_n, d.seed
    );
    assert!(
        generated.contains(&init),
        "GenerateOptions defaults differ from {d:?}"
    );
}

/// Public members of each wrapper class, by class name: `(indent, pattern)` picks member
/// declarations (class bodies are indented 4 spaces, a Kotlin companion's 8).
fn members(
    source: &str,
    class_prefix: &str,
    member: fn(&str) -> Option<String>,
) -> Vec<(String, Vec<String>)> {
    let mut classes: Vec<(String, Vec<String>)> = Vec::new();
    for line in source.lines() {
        if let Some(rest) = line.strip_prefix(class_prefix) {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            classes.push((name, Vec::new()));
        } else if !line.starts_with(' ') && !line.is_empty() && !line.starts_with('}') {
            // Another top-level declaration: no class collects its lines.
            if !line.starts_with("//") && !line.starts_with("/*") && !line.starts_with(" *") {
                classes.push((String::new(), Vec::new()));
            }
        } else if let (Some((_, names)), Some(m)) = (classes.last_mut(), member(line)) {
            if !names.contains(&m) {
                names.push(m);
            }
        }
    }
    classes.retain(|(name, _)| name.starts_with("Tern"));
    for (_, names) in &mut classes {
        names.sort();
    }
    classes.sort();
    classes
}

fn word_after<'a>(line: &'a str, keyword: &str) -> Option<&'a str> {
    let rest = &line[line.find(keyword)? + keyword.len()..];
    let end = rest
        .find(|c: char| !c.is_alphanumeric() && c != '_')
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// `fun name` and `val name` at a member's indentation, not `internal` or `private`.
fn kotlin_member(line: &str) -> Option<String> {
    let indent = line.len() - line.trim_start().len();
    let t = line.trim_start();
    if !(indent == 4 || indent == 8) || t.starts_with("internal") || t.starts_with("private") {
        return None;
    }
    let t = t
        .trim_start_matches("override ")
        .trim_start_matches("suspend ");
    let name = t
        .strip_prefix("fun ")
        .or_else(|| t.strip_prefix("val "))
        .and_then(|_| word_after(t, " "))?;
    Some(name.to_string())
}

/// `public func name`, `public static func name` and `public var name` of a class.
fn swift_member(line: &str) -> Option<String> {
    let indent = line.len() - line.trim_start().len();
    let t = line.trim_start();
    if indent != 4 || !t.starts_with("public ") {
        return None;
    }
    let name = word_after(t, "func ").or_else(|| word_after(t, "var "))?;
    Some(name.to_string())
}

/// Kotlin-only members, with the reason Swift has none.
const KOTLIN_ONLY: &[(&str, &str)] = &[
    (
        "close",
        "Closeable: Swift frees the native object when the last reference goes (ARC)",
    ),
    (
        "isClosed",
        "likewise: a Swift object cannot be closed while referenced",
    ),
];

#[test]
fn kotlin_and_swift_wrappers_have_the_same_members() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let kotlin =
        std::fs::read_to_string(root.join("android/src/main/kotlin/dev/tern/Tern.kt")).unwrap();
    let swift = std::fs::read_to_string(root.join("ios/Sources/Tern/Tern.swift")).unwrap();
    let mut k = members(&kotlin, "class ", kotlin_member);
    let s = members(&swift, "public final class ", swift_member);
    for (_, names) in &mut k {
        names.retain(|n| !KOTLIN_ONLY.iter().any(|(only, _)| only == n));
    }
    assert_eq!(
        k.iter().map(|(c, _)| c).collect::<Vec<_>>(),
        ["TernConversation", "TernModel", "TernSession"]
    );
    assert!(
        k.iter().all(|(_, m)| m.len() >= 5),
        "too few members found: {k:?}"
    );
    assert_eq!(k, s, "Kotlin (left) and Swift (right) wrappers differ");
}
