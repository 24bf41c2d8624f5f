#!/usr/bin/env python3
"""Regenerate `llama_cpp_cases.jsonl`: tokenizations by llama.cpp of tricky strings, for
tokenizer variants built from the SmolLM2 vocabulary.

    python3 tokenizer/src/testdata/make_llama_cpp_cases.py

Needs `llama-cpp-python` (0.3.36 was used) and `gguf` (0.19.0), e.g. the venv made by
tests/reference/make_fixtures.sh, and models/smollm2-135m-instruct-q4_1.gguf.

Variants (the Rust test rebuilds the same tokenizers from the SmolLM2 metadata):
  * "smollm"    the model as is (gpt2 / smollm)
  * "llama-bpe", "qwen2", "gpt-2", "starcoder": same vocabulary and merges, other
    `tokenizer.ggml.pre`
  * "nopre"     no `tokenizer.ggml.pre` (llama.cpp's "default" passes)
  * "spm"       a SentencePiece-style ("llama") vocabulary derived from SmolLM2's tokens:
    <unk> <s> </s>, the 256 <0xXX> byte tokens, "[INST]" (control), "<tool>" (user
    defined), "<|im_end|>" (normal), then every SmolLM2 token from id 17 on whose bytes
    are valid UTF-8, with spaces as U+2581, duplicates dropped, scored -1, -2, ...

Each line: {"v": variant, "t": text, "add": add_special, "ps": parse_special,
"ids": llama_tokenize, "dt"/"df": hex of llama_detokenize(ids, remove_special=false,
unparse_special=true/false)}.
"""

import ctypes
import json
import os
import random
import shutil
import tempfile

import llama_cpp
from gguf import GGUFReader, GGUFValueType, GGUFWriter

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../../../.."))
MODEL = os.path.join(ROOT, "models/smollm2-135m-instruct-q4_1.gguf")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "llama_cpp_cases.jsonl")


def field_value(f):
    t = f.types[0]
    if t == GGUFValueType.ARRAY:
        if f.types[1] == GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i][0].item() for i in f.data]
    if t == GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    return f.parts[f.data[0]][0].item()


def main():
    src = GGUFReader(MODEL)
    kv = {k: (f.types, field_value(f)) for k, f in src.fields.items() if not k.startswith("GGUF.")}
    tmp = tempfile.mkdtemp()

    def write(name, overrides, drop=()):
        path = os.path.join(tmp, name + ".gguf")
        w = GGUFWriter(path, arch="llama")
        for k, (types, v) in kv.items():
            if k == "general.architecture" or k in drop or k in overrides:
                continue
            if types[0] == GGUFValueType.ARRAY:
                if types[1] == GGUFValueType.STRING:
                    w.add_array(k, v)
                else:
                    w.add_key_value(k, v, GGUFValueType.ARRAY, sub_type=types[1])
            else:
                w.add_key_value(k, v, types[0])
        for k, (t, v, st) in overrides.items():
            w.add_key_value(k, v, t, sub_type=st) if st is not None else w.add_key_value(k, v, t)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        w.close()
        return path

    S, A = GGUFValueType.STRING, GGUFValueType.ARRAY
    variants = {"smollm": MODEL}
    for pre in ["llama-bpe", "qwen2", "gpt-2", "starcoder"]:
        variants[pre] = write(pre, {"tokenizer.ggml.pre": (S, pre, None)})
    variants["nopre"] = write("nopre", {}, drop=("tokenizer.ggml.pre",))

    direct = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    byte_of, n = {}, 0
    for b in range(256):
        if b in direct:
            byte_of[chr(b)] = b
        else:
            byte_of[chr(256 + n)] = b
            n += 1
    toks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    toks += ["[INST]", "<tool>", "<|im_end|>"]
    types = [2, 3, 3] + [6] * 256 + [3, 4, 1]
    seen = set(toks)
    for t in kv["tokenizer.ggml.tokens"][1][17:]:
        try:
            s = bytes(byte_of[c] for c in t).decode("utf-8").replace(" ", "\u2581")
        except (KeyError, UnicodeDecodeError):
            continue
        if s and s not in seen:
            seen.add(s)
            toks.append(s)
            types.append(1)
    scores = [0.0] * 262 + [-(i + 1.0) for i in range(len(toks) - 262)]
    variants["spm"] = write(
        "spm",
        {
            "tokenizer.ggml.model": (S, "llama", None),
            "tokenizer.ggml.tokens": (A, toks, S),
            "tokenizer.ggml.token_type": (A, types, GGUFValueType.INT32),
            "tokenizer.ggml.scores": (A, scores, GGUFValueType.FLOAT32),
            "tokenizer.ggml.bos_token_id": (GGUFValueType.UINT32, 1, None),
            "tokenizer.ggml.eos_token_id": (GGUFValueType.UINT32, 2, None),
            "tokenizer.ggml.unknown_token_id": (GGUFValueType.UINT32, 0, None),
            "tokenizer.ggml.padding_token_id": (GGUFValueType.UINT32, 0, None),
            "llama.vocab_size": (GGUFValueType.UINT32, len(toks), None),
        },
        drop=(
            "tokenizer.ggml.merges",
            "tokenizer.ggml.pre",
            "tokenizer.ggml.add_space_prefix",
            "tokenizer.ggml.add_bos_token",
            "tokenizer.chat_template",
        ),
    )

    alphabet = list(
        " \t\n\r\x0b\x0c\x85\xa0\u2028\u3000aZé'sSlLrRvVedDmMtT0123456789٣²Ⅻ!?.,$+<=>^~|`("
        "\u0301\u200d我ア한🦀🏽\ufffd\U0010ffff\x1c€_-ß▁"
    ) + ["'s", "'LL", "'re", " ", "  ", "<|im_end|>", "<|im_start|>", "<|endoftext|>",
         "<reponame>", "hello", " world", "\n\n", "ing", "[INST]", "<tool>", "</s>", "<s>",
         " .", " ,", " 's", " ' "]
    rnd = random.Random(5)
    texts = ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 30))) for _ in range(60)]
    texts += [
        "", "Hello world", " Hello", "Bonjour à tous, ça va ?", "東京都は日本の首都です。",
        "def f(x):\n    return x**2  # c\n", "   \n\n\t  x  ", "1234567 89",
        "I'm sure they'll come, DON'T you think it's late?",
        "<|im_start|>user\nHi [INST] <tool>x</s><|im_end|>\n",
    ]
    with open(OUT, "w") as out:
        for name, path in variants.items():
            m = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
            vocab = llama_cpp.llama_model_get_vocab(m.model)

            def detok(ids, unparse):
                arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
                buf = ctypes.create_string_buffer(1 << 16)
                k = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, 1 << 16, False, unparse)
                return buf.raw[:k].hex()

            for t in texts:
                for add, ps in ((False, True), (True, False)):
                    ids = m.tokenize(t.encode("utf-8"), add_bos=add, special=ps)
                    row = {"v": name, "t": t, "add": add, "ps": ps, "ids": ids,
                           "dt": detok(ids, True), "df": detok(ids, False)}
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
    shutil.rmtree(tmp)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
