//! llama.cpp's quantization mixes ("file types" such as `Q4_K_M`): which type each tensor gets.
//!
//! Written from `llama_tensor_get_type` and `tensor_type_fallback` in llama.cpp's
//! `src/llama-quant.cpp` (the version llama-cpp-python 0.3.36 builds), for the file types below,
//! without an importance matrix and without `--pure`, `--output-tensor-type` or
//! `--token-embedding-type`. The rules, in the order llama.cpp applies them to a tensor:
//!
//! 1. Only tensors of 2+ dimensions whose name ends in `weight` are quantized, except norms
//!    (`_norm.weight`), MoE routers (`ffn_gate_inp.weight`), positional / token-type
//!    embeddings and a few small tensors of other architectures ([`NOT_QUANTIZED`]); the rest
//!    are copied.
//! 2. The output head (`output.weight`, or `token_embd.weight` when the model has no separate
//!    head): Q8_0 if its rows do not divide into the mix's base type, else Q6_K.
//! 3. `attn_v` (and fused `attn_qkv`, `attn_kv_b`), counted `i` = 0, 1, … over those tensors in
//!    llama.cpp's order (by layer, then name), `n` of them; `ffn_down` by layer `i` of `n` =
//!    `block_count`; `attn_output`: per the table [`MIXES`]. "more bits" is llama.cpp's
//!    `use_more_bits`: `i < n/8 || i >= 7n/8 || (i − n/8) % 3 == 2`; `gqa ≥ 4` compares
//!    `head_count / head_count_kv`. Every other tensor takes the base type.
//! 4. 70B Llama models (`llama` with 80 layers and grouped-query attention, llama.cpp's
//!    `LLM_TYPE_70B`): an `attn_v` that got Q3_K or Q4_K gets Q5_K.
//! 5. Fallback when a row does not divide into the chosen type's blocks: Q4_K → Q5_0,
//!    Q5_K → Q5_1, Q6_K → Q8_0, Q2_K / Q3_K → Q4_0, IQ4_XS → IQ4_NL; F16 if that does not
//!    divide either (or if a 32-weight type does not).
//! 6. A tensor already in its chosen type is copied.
//!
//! Not followed: the Falcon and mixture-of-experts variants of these rules (such models are
//! refused), and `Q2_K_S` / the IQ1–IQ3 mixes, which need an importance matrix.

use tern_runtime::gguf::{Gguf, TensorInfo};

use super::Target;

/// How one class of tensor picks its type, given its index `i` of `n` and the model's
/// grouped-query ratio.
#[derive(Clone, Copy, Debug)]
enum Rule {
    /// The mix's base type.
    Base,
    /// Always this type.
    To(Target),
    /// The first type if `head_count / head_count_kv ≥ 4`, else the second.
    IfGqa4(Target, Target),
    /// The first type if `i < limit`, else the second.
    Below(Limit, Target, Target),
    /// This type where llama.cpp's `use_more_bits(i, n)` holds, else the base type.
    MoreBits(Target),
}

/// The bound of [`Rule::Below`].
#[derive(Clone, Copy, Debug)]
enum Limit {
    /// A fixed count.
    Count(usize),
    /// `n / d` (integer division).
    Frac(usize),
}

/// One llama.cpp file type: its `--type` name, `llama_ftype` number (`general.file_type`),
/// base type and the rules for `attn_v`, `ffn_down` and `attn_output`.
#[derive(Debug)]
pub struct Mix {
    pub name: &'static str,
    pub ftype: u32,
    base: Target,
    attn_v: Rule,
    ffn_down: Rule,
    attn_output: Rule,
}

use Limit::{Count, Frac};
use Rule::{Base, Below, IfGqa4, MoreBits, To};
use Target::{IQ4_XS, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K};

/// The mixes, from `llama_tensor_get_type_impl` (non-Falcon, at most one expert, no
/// importance matrix).
#[rustfmt::skip]
pub const MIXES: [Mix; 10] = [
    //     name        ftype  base    attn_v                        ffn_down                      attn_output
    mix("q2_k",   10, Q2_K,   IfGqa4(Q4_K, Q3_K),           To(Q3_K),                     To(Q3_K)),
    mix("q3_k_s", 11, Q3_K,   Base,                         Base,                         Base),
    mix("q3_k_m", 12, Q3_K,   Below(Count(2), Q5_K, Q4_K),  Below(Frac(16), Q5_K, Q4_K),  To(Q4_K)),
    mix("q3_k_l", 13, Q3_K,   To(Q5_K),                     To(Q5_K),                     To(Q5_K)),
    mix("q4_k_s", 14, Q4_K,   Below(Count(4), Q5_K, Q4_K),  Below(Frac(8), Q5_K, Q4_K),   Base),
    mix("q4_k_m", 15, Q4_K,   MoreBits(Q6_K),               MoreBits(Q6_K),               Base),
    mix("q5_k_s", 16, Q5_K,   Base,                         Base,                         Base),
    mix("q5_k_m", 17, Q5_K,   MoreBits(Q6_K),               MoreBits(Q6_K),               Base),
    mix("q6_k",   18, Q6_K,   Base,                         Base,                         Base),
    mix("iq4_xs", 30, IQ4_XS, IfGqa4(Q5_K, IQ4_XS),         Below(Frac(8), Q5_K, IQ4_XS), Base),
];

const fn mix(
    name: &'static str,
    ftype: u32,
    base: Target,
    attn_v: Rule,
    ffn_down: Rule,
    attn_output: Rule,
) -> Mix {
    Mix {
        name,
        ftype,
        base,
        attn_v,
        ffn_down,
        attn_output,
    }
}

/// Name fragments of 2-D weights llama.cpp never quantizes (`tensor_allows_quantization`).
/// (llama.cpp's list also names multimodal projector tensors, which text models do not have.)
pub const NOT_QUANTIZED: [&str; 28] = [
    "_norm.weight",
    "ffn_gate_inp.weight",
    "ffn_gate_tid2eid.weight",
    "altup",
    "laurel",
    "per_layer_model_proj",
    "position_embd.weight",
    "token_types.weight",
    "ssm_conv1d",
    "shortconv.conv.weight",
    "attn_rel_b.weight",
    "time_mix_first.weight",
    "time_mix_w0.weight",
    "time_mix_w1.weight",
    "time_mix_w2.weight",
    "time_mix_v0.weight",
    "time_mix_v1.weight",
    "time_mix_v2.weight",
    "time_mix_a0.weight",
    "time_mix_a1.weight",
    "time_mix_a2.weight",
    "time_mix_g1.weight",
    "time_mix_g2.weight",
    "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight",
    "indexer.k_proj.weight",
    "indexer.q_proj.weight",
];

/// What llama.cpp's categories need to know of the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelFacts {
    /// `block_count`.
    pub n_layer: usize,
    /// `head_count / head_count_kv` (llama.cpp's `n_gqa()`), 0 if `head_count_kv` is 0.
    pub n_gqa: u64,
    /// llama.cpp's `LLM_TYPE_70B`.
    pub is_70b: bool,
}

impl ModelFacts {
    /// Reads the facts from `src`'s metadata; refuses models whose rules this module does not
    /// follow (Falcon, mixtures of experts).
    pub fn of(src: &Gguf<'_>) -> Result<ModelFacts, String> {
        let arch = src
            .req_str("general.architecture")
            .map_err(|e| e.to_string())?;
        let key = |k: &str| format!("{arch}.{k}");
        let u = |k: &str| src.opt_u64(&key(k)).map_err(|e| e.to_string());
        if arch == "falcon" {
            return Err(
                "llama.cpp's mixes have Falcon-only rules, which tern quantize does not follow"
                    .into(),
            );
        }
        if u("expert_count")?.unwrap_or(0) > 1 {
            return Err("llama.cpp's mixes have mixture-of-experts rules, which tern quantize does not follow".into());
        }
        let n_layer = u("block_count")?.unwrap_or(0) as usize;
        let n_head = u("attention.head_count")?.unwrap_or(0);
        let n_head_kv = u("attention.head_count_kv")?.unwrap_or(n_head);
        Ok(ModelFacts {
            n_layer,
            n_gqa: n_head.checked_div(n_head_kv).unwrap_or(0),
            is_70b: arch == "llama" && n_layer == 80 && n_head != n_head_kv,
        })
    }
}

impl Mix {
    /// The mix named `name` (lower case), if any.
    pub fn named(name: &str) -> Option<&'static Mix> {
        MIXES.iter().find(|m| m.name == name)
    }

    /// The type llama.cpp gives each tensor of `tensors` (in file order), `None` for a tensor it
    /// does not quantize (copied as it is).
    pub fn choose(&self, tensors: &[TensorInfo<'_>], facts: ModelFacts) -> Vec<Option<Target>> {
        let tied = !tensors.iter().any(|t| t.name == "output.weight");
        // llama.cpp visits tensors by layer (−1 for none), then name; the attn_v counter
        // follows that order.
        let mut order: Vec<usize> = (0..tensors.len()).collect();
        order.sort_by_key(|&k| (layer_of(tensors[k].name), tensors[k].name));
        let n_attn_v = tensors.iter().filter(|t| is_attn_v(t.name)).count();
        let (mut i_attn_v, mut i_ffn_down) = (0usize, 0usize);
        let mut out = vec![None; tensors.len()];
        for &k in &order {
            let t = &tensors[k];
            if !quantized_by_llama(t) {
                continue;
            }
            let row = t.row_len();
            let name = t.name;
            let chosen = if name == "output.weight" || (tied && name == "token_embd.weight") {
                if self.base.fits(row) {
                    Target::Q6_K
                } else {
                    Target::Q8_0
                }
            } else if is_attn_v(name) {
                let mut ty = self.attn_v.pick(self.base, i_attn_v, n_attn_v, facts.n_gqa);
                if facts.is_70b && matches!(ty, Q3_K | Q4_K) {
                    ty = Q5_K;
                }
                i_attn_v += 1;
                ty
            } else if name.contains("attn_k.weight") || name.contains("attn_q.weight") {
                self.base
            } else if name.contains("attn_output.weight") {
                self.attn_output.pick(self.base, 0, 0, facts.n_gqa)
            } else if name.contains("ffn_up") || name.contains("ffn_gate") {
                self.base
            } else if name.contains("ffn_down") {
                let ty = self
                    .ffn_down
                    .pick(self.base, i_ffn_down, facts.n_layer, facts.n_gqa);
                i_ffn_down += 1;
                ty
            } else {
                self.base
            };
            out[k] = Some(fallback(chosen, row));
        }
        out
    }
}

impl Rule {
    fn pick(self, base: Target, i: usize, n: usize, n_gqa: u64) -> Target {
        match self {
            Base => base,
            To(t) => t,
            IfGqa4(yes, no) => {
                if n_gqa >= 4 {
                    yes
                } else {
                    no
                }
            }
            Below(limit, yes, no) => {
                let bound = match limit {
                    Count(c) => c,
                    Frac(d) => n / d,
                };
                if i < bound {
                    yes
                } else {
                    no
                }
            }
            MoreBits(t) => {
                if use_more_bits(i, n) {
                    t
                } else {
                    base
                }
            }
        }
    }
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third one
/// between.
fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// llama.cpp's `tensor_type_fallback`: `ty`, or its smaller-block stand-in when rows of
/// `row_len` do not divide into `ty`'s blocks, or F16 when that does not divide either.
pub fn fallback(ty: Target, row_len: u64) -> Target {
    if ty.fits(row_len) {
        return ty;
    }
    let stand_in = match ty {
        Q4_K => Target::Q5_0,
        Q5_K => Target::Q5_1,
        Q6_K => Target::Q8_0,
        Q2_K | Q3_K | Target::TQ1_0 | Target::TQ2_0 => Target::Q4_0,
        IQ4_XS => Target::IQ4_NL,
        other => other,
    };
    if stand_in.fits(row_len) {
        stand_in
    } else {
        Target::F16
    }
}

/// `attn_v.weight`, `attn_qkv.weight` or `attn_kv_b.weight` (llama.cpp's `category_is_attn_v`).
fn is_attn_v(name: &str) -> bool {
    ["attn_qkv.weight", "attn_kv_b.weight", "attn_v.weight"]
        .iter()
        .any(|s| name.contains(s))
}

/// `N` of a `blk.N.` name, −1 for other tensors (llama.cpp's `weight_name_comparer`).
fn layer_of(name: &str) -> i64 {
    name.strip_prefix("blk.")
        .and_then(|r| r.split('.').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(-1)
}

/// llama.cpp's `tensor_allows_quantization` with default parameters.
fn quantized_by_llama(t: &TensorInfo<'_>) -> bool {
    t.n_dims >= 2 && t.name.ends_with("weight") && !NOT_QUANTIZED.iter().any(|s| t.name.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_runtime::gguf::GgmlType;

    fn t(name: &'static str, row: u64) -> TensorInfo<'static> {
        TensorInfo {
            name,
            dims: [row, 64, 1, 1],
            n_dims: 2,
            ggml_type: GgmlType::F32,
            offset: 0,
            size: 0,
        }
    }

    #[test]
    fn use_more_bits_matches_llama_cpp_for_30_layers() {
        // n/8 = 3, 7n/8 = 26: layers 0–2, 26–29 and 5, 8, …, 23.
        let more: Vec<usize> = (0..30).filter(|&i| use_more_bits(i, 30)).collect();
        assert_eq!(more, [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]);
    }

    #[test]
    fn q4_k_m_on_a_smollm2_shape() {
        let names: Vec<String> = (0..30)
            .flat_map(|i| ["attn_v", "ffn_down", "attn_q"].map(|m| format!("blk.{i}.{m}.weight")))
            .collect();
        let names: Vec<&'static str> = names.into_iter().map(|s| &*s.leak()).collect();
        let mut tensors: Vec<TensorInfo<'static>> = names
            .iter()
            .map(|&n| t(n, if n.contains("ffn_down") { 1536 } else { 576 }))
            .collect();
        tensors.push(t("token_embd.weight", 576));
        let mut norm = t("blk.0.attn_norm.weight", 576);
        norm.n_dims = 1;
        tensors.push(norm);
        let facts = ModelFacts {
            n_layer: 30,
            n_gqa: 3,
            is_70b: false,
        };
        let got = Mix::named("q4_k_m").unwrap().choose(&tensors, facts);
        for (t, ty) in tensors.iter().zip(&got) {
            let layer = layer_of(t.name) as usize;
            let want = if t.n_dims == 1 {
                None
            } else if t.name == "token_embd.weight" {
                // Tied head, 576 not a multiple of 256.
                Some(Target::Q8_0)
            } else if t.name.contains("ffn_down") {
                Some(if use_more_bits(layer, 30) { Q6_K } else { Q4_K })
            } else if t.name.contains("attn_v") {
                // Q6_K and Q4_K fall back on 576-wide rows.
                Some(if use_more_bits(layer, 30) {
                    Target::Q8_0
                } else {
                    Target::Q5_0
                })
            } else {
                Some(Target::Q5_0)
            };
            assert_eq!(*ty, want, "{}", t.name);
        }
    }

    #[test]
    fn fallbacks() {
        assert_eq!(fallback(Q4_K, 576), Target::Q5_0);
        assert_eq!(fallback(Q5_K, 576), Target::Q5_1);
        assert_eq!(fallback(Q6_K, 576), Target::Q8_0);
        assert_eq!(fallback(Q3_K, 576), Target::Q4_0);
        assert_eq!(fallback(Q2_K, 576), Target::Q4_0);
        assert_eq!(fallback(IQ4_XS, 576), Target::IQ4_NL);
        assert_eq!(fallback(Q4_K, 100), Target::F16);
        assert_eq!(fallback(Target::Q8_0, 100), Target::F16);
        assert_eq!(fallback(Q4_K, 1536), Q4_K);
    }

    #[test]
    fn q3_k_m_counts_attn_v_and_layers() {
        let names = [
            "blk.0.attn_v.weight",
            "blk.1.attn_v.weight",
            "blk.2.attn_v.weight",
        ];
        let tensors: Vec<_> = names.iter().map(|&n| t(n, 256)).collect();
        let facts = ModelFacts {
            n_layer: 3,
            n_gqa: 1,
            is_70b: false,
        };
        let got = Mix::named("q3_k_m").unwrap().choose(&tensors, facts);
        assert_eq!(got, [Some(Q5_K), Some(Q5_K), Some(Q4_K)]);
        let got = Mix::named("q2_k").unwrap().choose(&tensors, facts);
        assert_eq!(got, [Some(Q3_K); 3]);
        let gqa4 = ModelFacts { n_gqa: 4, ..facts };
        let got = Mix::named("q2_k").unwrap().choose(&tensors, gqa4);
        assert_eq!(got, [Some(Q4_K); 3]);
    }
}
