//! Special tokens recognised by their text, as llama.cpp does when loading a vocabulary:
//! end-of-turn / end-of-message / fill-in-the-middle tokens, and the set of tokens that end
//! generation ("EOG"). Tokens found this way are also marked as control tokens.

use alloc::vec::Vec;

use super::vocab::{attr, Vocab};

/// Texts of end-of-turn tokens (used when the GGUF names no EOT id).
const EOT_NAMES: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// Text of the end-of-message token.
const EOM_NAMES: &[&str] = &["<|eom_id|>"];

/// Fill-in-the-middle prefix / suffix / middle tokens: marked control, not EOG.
const FIM_PRE_NAMES: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_NAMES: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_NAMES: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];

/// Fill-in-the-middle pad / repository / file-separator tokens: control and EOG.
const FIM_PAD_NAMES: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_NAMES: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_NAMES: &[&str] = &["<|file_sep|>"];

/// Texts of tokens that end generation.
const EOG_NAMES: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// gpt-oss formatting tokens that llama.cpp always renders (made user-defined).
const ALWAYS_RENDER_NAMES: &[&str] = &["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

/// Special token ids after name-based detection.
#[derive(Clone, Debug, Default)]
pub(crate) struct Detected {
    /// End of turn.
    pub(crate) eot: Option<u32>,
    /// Tokens that end generation, sorted, without duplicates.
    pub(crate) eog: Vec<u32>,
}

/// Lowest id whose text is one of `names`.
fn find(vocab: &Vocab, names: &[&str]) -> Option<u32> {
    names.iter().filter_map(|n| vocab.token(n.as_bytes())).min()
}

/// Every id whose text is one of `names`.
fn find_all(vocab: &Vocab, names: &[&str]) -> Vec<u32> {
    names
        .iter()
        .filter_map(|n| vocab.token(n.as_bytes()))
        .collect()
}

fn mark_control(vocab: &mut Vocab, id: u32) {
    if let Some(a) = vocab.attrs.get_mut(id as usize) {
        *a |= attr::CONTROL;
    }
}

/// Detects special tokens by name (marking them control), and builds the EOG set from
/// them plus `eos` and the given or detected `eot`.
pub(crate) fn detect(vocab: &mut Vocab, eos: Option<u32>, eot: Option<u32>) -> Detected {
    // When several tokens share a role, llama.cpp keeps whichever its hash map yields
    // first; the lowest id is used here. (All of them are EOG anyway.)
    let eot = match eot {
        Some(id) => Some(id),
        None => {
            let found = find(vocab, EOT_NAMES);
            if let Some(id) = found {
                mark_control(vocab, id);
            }
            found
        }
    };
    let eom = find(vocab, EOM_NAMES);
    let mut fim_eog = Vec::new();
    for (names, is_eog) in [
        (FIM_PRE_NAMES, false),
        (FIM_SUF_NAMES, false),
        (FIM_MID_NAMES, false),
        (FIM_PAD_NAMES, true),
        (FIM_REP_NAMES, true),
        (FIM_SEP_NAMES, true),
    ] {
        if let Some(id) = find(vocab, names) {
            mark_control(vocab, id);
            if is_eog {
                fim_eog.push(id);
            }
        }
    }
    if let Some(id) = eom {
        mark_control(vocab, id);
    }

    let mut eog = fim_eog;
    for id in find_all(vocab, EOG_NAMES) {
        mark_control(vocab, id);
        eog.push(id);
    }
    for id in find_all(vocab, ALWAYS_RENDER_NAMES) {
        vocab.attrs[id as usize] = attr::USER_DEFINED;
    }
    eog.extend(eos);
    eog.extend(eot);
    eog.extend(eom);
    eog.retain(|&id| (id as usize) < vocab.len());
    eog.sort_unstable();
    eog.dedup();

    let text_is = |vocab: &Vocab, id: u32, s: &str| vocab.text(id) == Some(s);
    let has = |vocab: &Vocab, eog: &[u32], s: &str| eog.iter().any(|&id| text_is(vocab, id, s));

    // gpt-oss / solar-open: "<|end|>" does not end generation there.
    let (ret, call, flush) = (
        has(vocab, &eog, "<|return|>"),
        has(vocab, &eog, "<|call|>") || has(vocab, &eog, "<|calls|>"),
        has(vocab, &eog, "<|flush|>"),
    );
    if call && (ret || flush) {
        if let Some(pos) = eog.iter().position(|&id| text_is(vocab, id, "<|end|>")) {
            let id = eog.remove(pos);
            vocab.attrs[id as usize] = attr::USER_DEFINED;
        }
    }
    // gemma4 / paddleocr: "</s>" is an ordinary token there.
    if has(vocab, &eog, "<|tool_response>") {
        if let Some(pos) = eog.iter().position(|&id| text_is(vocab, id, "</s>")) {
            let id = eog.remove(pos);
            vocab.attrs[id as usize] = attr::NORMAL;
        }
    }
    Detected { eot, eog }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn smollm_like() {
        let toks = [
            "<|endoftext|>",
            "<|im_start|>",
            "<|im_end|>",
            "<repo_name>",
            "<reponame>",
            "hello",
        ];
        let mut v = Vocab::new(&toks, None, Some(&[3, 3, 3, 3, 3, 1]));
        let d = detect(&mut v, Some(2), None);
        assert_eq!(d.eot, Some(0));
        assert_eq!(d.eog, vec![0, 2, 4]);
    }

    #[test]
    fn marks_control_and_given_eot() {
        let toks = [
            "a",
            "<|eot_id|>",
            "<|eom_id|>",
            "<fim_prefix>",
            "<|end_of_text|>",
        ];
        let mut v = Vocab::new(&toks, None, Some(&[1, 1, 1, 1, 1]));
        let d = detect(&mut v, Some(4), Some(0));
        assert_eq!(d.eot, Some(0));
        assert_eq!(d.eog, vec![0, 1, 2, 4]);
        for id in 1..5 {
            assert!(v.has(id, attr::CONTROL), "{id}");
        }
        assert!(!v.has(0, attr::CONTROL));
    }

    #[test]
    fn harmony_end_is_not_eog() {
        let toks = ["<|return|>", "<|call|>", "<|end|>", "<|start|>"];
        let mut v = Vocab::new(&toks, None, Some(&[3, 3, 3, 3]));
        let d = detect(&mut v, None, None);
        assert_eq!(d.eog, vec![0, 1]);
        assert_eq!(v.attr(2), attr::USER_DEFINED);
        assert_eq!(v.attr(3), attr::USER_DEFINED);
        // "<|end|>" was still picked as EOT by name, as in llama.cpp.
        assert_eq!(d.eot, Some(2));
    }

    #[test]
    fn tool_response_drops_s() {
        let toks = ["</s>", "<|tool_response>", "<eos>"];
        let mut v = Vocab::new(&toks, None, Some(&[3, 3, 3]));
        let d = detect(&mut v, Some(2), None);
        assert_eq!(d.eog, vec![1, 2]);
        assert_eq!(v.attr(0), attr::NORMAL);
    }
}
