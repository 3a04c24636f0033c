#!/usr/bin/env python3
"""Fixtures for tests/test_tokenizer.c: the ids of transformers >= 5's CLIPTokenizer (the
`tokenizers` backend), checked against OpenAI CLIP's own SimpleTokenizer.

Writes tests/fixtures/tokenizer/:
  ids.json             ids of each tricky prompt (hand-written cases and seeded random mixes)
                       from CLIPTokenizer with pad "<|endoftext|>" (SD 1.x) and "!" (SD 2.x),
                       stored up to <|endoftext|> (the rest is padding, checked here); OpenAI's
                       ids where they differ and the list of those prompts; size and CRC-32 of
                       vocab.json / merges.txt built from the .gz; the ids of a tiny hand-made
                       tokenizer (tiny_*.json) with max_length 16.
  tiny_tokenizer.json  the tiny tokenizer's tokenizer.json, merges as "a b" strings
  tiny_tokenizer_pairs.json  the same with merges as ["a", "b"] pairs
  unicode.json         the tokenizers library's own character data: Oniguruma's \\s, \\p{L}, \\p{N}
                       (ranges), the Lowercase normalizer on every code point it changes, and
                       NFC on every code point it changes, every canonical decomposition and
                       probes of the canonical ordering and composition around every mark.

Needs transformers >= 5, ftfy, unicodedata2 (the marks of recent Unicode versions) and OpenAI's
`clip` package for clip/simple_tokenizer.py (loaded by path, so torchvision is not needed):
  pip install ftfy unicodedata2 && pip install --no-deps openai-clip
  python3 tests/reference/make_tokenizer_fixtures.py
vocab.json / merges.txt are rebuilt from third_party/clip/bpe_simple_vocab_16e6.txt.gz the way
CLIP builds its vocabulary (tokenizer_files.py; written to a temporary folder, not committed).
"""
import importlib.util
import json
import os
import random
import sys
import tempfile
import unicodedata
import zlib

import unicodedata2
from tokenizers import Regex, normalizers, pre_tokenizers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer_files  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BPE_GZ = os.path.join(ROOT, "third_party", "clip", "bpe_simple_vocab_16e6.txt.gz")
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
MAX_LENGTH = 77
PADS = {"ids_eos_pad": "<|endoftext|>", "ids_bang_pad": "!"}
CODE_POINTS = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


def openai_tokenizer():
    """OpenAI CLIP's SimpleTokenizer (clip/simple_tokenizer.py of the `clip` package)."""
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("OpenAI's clip package is missing: pip install --no-deps openai-clip")
    path = os.path.join(list(spec.submodule_search_locations)[0], "simple_tokenizer.py")
    module_spec = importlib.util.spec_from_file_location("clip_simple_tokenizer", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.SimpleTokenizer(BPE_GZ)


def openai_ids(tok, text):
    """clip.tokenize(text, truncate=True) without the padding."""
    sot, eot = tok.encoder["<|startoftext|>"], tok.encoder["<|endoftext|>"]
    ids = [sot] + tok.encode(text) + [eot]
    if len(ids) > MAX_LENGTH:
        ids = ids[:MAX_LENGTH]
        ids[-1] = eot
    return ids


def file_digest(path):
    data = open(path, "rb").read()
    return {"bytes": len(data), "crc32": zlib.crc32(data)}


def thousand_words():
    words = ("a photo of the cat dog astronaut riding horse on moon under dramatic lighting "
             "highly detailed painting by greg rutkowski trending artstation 4k 8k octane render "
             "cinematic portrait landscape sunset, beautiful; (masterpiece) [best quality] "
             "don't it's café über naïve 東京 🐱").split(" ")
    rng = random.Random(1234)
    return " ".join(rng.choice(words) for _ in range(1000))


def prompts():
    rng = random.Random(99)
    random_word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(600))
    nfc = "Ein Café in Köln, Ångström, crème brûlée, São Paulo, Zürich, Ελληνικά ά, 한국어"
    return [
        ("issue_example", "Ein Café in Köln, 東京の夜景 🌃 — “quoted”"),
        ("plain", "a photograph of an astronaut riding a horse"),
        ("mixed_case", "A PhotoGraph OF an ASTRONAUT Riding a HORSE, Trending on ArtStation"),
        ("whitespace", "  lots   of\tspaces\t\tand tabs\n\nand\r\nnewlines  "),
        ("punctuation", "wow!!! really... a,b;c (x) [y] {z} <q> \"quoted\" 'single' #tag @user "
                        "50% $5 a+b=c ~~~ --- ___ ?!?! :) ^_^ \\o/ `code`"),
        ("contractions", "don't it's we'll I'M you're they've she'd DON'T it'S 'tis o'clock "
                         "rock'n'roll can''t ''' I'D WE'LL"),
        ("numbers", "1234 3.14 2nd 1,000,000 -42 1e10 ½ ² ³ ⅷ ١٢٣ ४५६ 0x1F ①②"),
        ("accents_nfc", nfc),
        ("accents_nfd", unicodedata.normalize("NFD", nfc)),
        ("decomposed", "cafe\u0301 nai\u0308ve A\u030angstro\u0308m"),
        ("german", "Straße STRASSE Fußgängerübergänge ẞ"),
        ("turkish", "İstanbul IĞDIR ılık İı iI"),
        ("greek", "Οδυσσέας ΟΔΥΣΣΕΥΣ σοφός ΣΑΣ. Σ ΑΣ'Σ ἙΛΛΆΣ ΑΣ\u0301 A\u0301Σ"),
        ("cyrillic", "Привет, мир! ЁЛКА Ёжик"),
        ("cjk", "東京タワー 一只猫 中文字符𠀀 㐀 豈 東京の夜景"),
        ("cjk_punctuation", "「こんにちは」、世界。《书名》【注意】～・"),
        ("japanese_mixed", "ラーメン ramen 日本語テキストです ｶﾀｶﾅ"),
        ("korean", "안녕하세요 세계 고양이 한국어 텍스트"),
        ("korean_nfd", unicodedata.normalize("NFD", "안녕하세요 세계 고양이")),
        ("korean_jamo", "\u1100\u1161\u11a8 \uac00\u11a8 \u1112\u1161\u11ab"),
        ("thai", "สวัสดีชาวโลก แมวบนดวงจันทร์ ภาษาไทย"),
        ("arabic", "مرحبا بالعالم قطة على القمر"),
        ("arabic_harakat", "مَرْحَبًا بِالْعَالَمِ ﷺ ﻻ"),
        ("hindi", "नमस्ते दुनिया बिल्ली चाँद पर"),
        ("hebrew", "שָׁלוֹם עולם"),
        ("emoji", "🐱 cat 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇯🇵 🌃"),
        ("emoji_zwj_skin", "👩🏽‍💻 🧑🏿‍🤝‍🧑🏻 👋🏻👋🏼👋🏽👋🏾👋🏿 🏴‍☠️ 1️⃣ #️⃣ 🫶🏾"),
        ("combining", "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇ e\u0301\u0327 \u0301alone "
                      "ᾳ Α\u0345 x\u0345y \u0345"),
        ("combining_order", "a\u0301\u0316 a\u0316\u0301 e\u0327\u0301 o\u031b\u0301\u0323"),
        ("marks_after_unicode_10", "a\u1dfa\u0301 e\u1ac1\u0301 \U00011935\U00011930 \U00011938"),
        ("controls", "a\x01b\x07c\x1bd\x7fe\x85f\u200eg\u202eh\ufeffi\ufffdj\x1ck"),
        ("c0_separators", "a\x1cb\x1dc\x1ed\x1fe"),
        ("unicode_spaces", "no\u00a0break\u2009thin\u3000ideographic\u2028line\u2029para"
                           "\u000bvt\u000cff\u1680ogham\u202fnarrow\u180emongolian\u205fmath"),
        ("zero_width", "zero\u200bwidth\u200cnon\u200djoiner\u2060word\ufeffbom\u00adsoft"),
        ("html_entities", "fish &amp; chips &lt;b&gt;bold&lt;/b&gt; &quot;q&quot; &#39;s "
                          "&nbsp;x &eacute;t&eacute; &#x1F600; &amp;amp; &copy; 2024"),
        ("mojibake", "CafÃ© Ã¼ber naÃ¯ve â€œquotedâ€\x9d donâ€™t ðŸ˜€ Ã¥ngstrÃ¶m"),
        ("special_tokens", "a photo <|endoftext|> of <|startoftext|>a cat<|endoftext|>"),
        ("special_lookalikes", "<|ENDOFTEXT|> <|endoftext |> <|ſtartoftext|> don'ſ !<|endoftext|>"
                               " <|StartOfText|>!! x<|ENDOFTEXT|>y"),
        ("empty", ""),
        ("only_blank", "   \t\n\x01  \u200b "),
        ("exclamations", "hello!!! world! ! !!a!!"),
        ("tokens_75", " ".join(["a"] * 75)),
        ("tokens_76", " ".join(["a"] * 76)),
        ("truncate_in_word", " ".join(["a"] * 73) + " supercalifragilisticexpialidocious"),
        ("truncate_in_cjk", " ".join(["a"] * 70) + " 東京の夜景の写真"),
        ("thousand_words", thousand_words()),
        ("long_word", "a" * 300 + "supercalifragilisticexpialidocious" * 8),
        ("random_letters", random_word),
        ("long_emoji_run", "🌃" * 100),
        ("private_unassigned", "\ue000x\U0010fffd y\u0378z \U000e0001tag"),
        ("quotes_dashes", "«quotes» „German“ ‘single’ “double” — em—dash … ellipsis"),
        ("fullwidth", "ＡＢＣ　ｆｕｌｌ！ １２３"),
        ("special_casing", "K Å ǅ ǈ ﬁ ß ſ ŉ ΐ Ω"),
        ("math", "∑ ∫ √ π ∞ ≠ ≤ x² H₂O 𝔸𝕓𝒸"),
        ("unicode_16_17", "\u1c89 \ua7cb\ua7dc \U00010d50\U00010d51 \U00016ea0 \ua7ce"),
    ]


def random_prompts(count):
    """Seeded mixes of the characters the hand-written prompts are made of, and of any code
    point."""
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
        " \t\n\r\u00a0\u3000\u2028\x0b\x0c",
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
        "àáâãäåçèéêëìíîïñòóôõöøùúûüýÿßÀÉÖÜİıſΣσςΑΩЖжЁё",
        "\u0300\u0301\u0302\u0308\u030a\u0316\u0323\u0327\u0334\u0345\u05b0\u093c\u094d"
        "\u3099\u1dfa\u1ac1",
        "東京夜景猫写真中文字日本語漢字𠀀㐀豈のをはがですタワーラメンｶﾀ",
        "안녕하세요세계고양이\u1100\u1161\u11a8\u1112",
        "สวัสดีชาวโลกแมวบนดวงจันทร์",
        "مرحبابالعالمقطة\u064e\u0650\u0652",
        "🐱👍🏽🏻🏿👨👩👧\u200d\u2640\u2642\ufe0f🌃🇯🇵❤",
        "\x01\x07\x1b\x7f\x85\u200b\u200c\u200e\u2060\ufeff\u00ad\x1c\x1f",
        "&amp;&lt;&#39;&quot;",
        "Ã©Ã¼â€œâ€\x9dðŸ˜€",
    ]
    rng = random.Random(2026)
    out = []
    for i in range(count):
        chars = []
        for _ in range(rng.randint(1, 40)):
            if rng.random() < 0.1:
                c = rng.choice(CODE_POINTS)
                chars.append(chr(c) if c else "a")
            else:
                chars.append(rng.choice(rng.choice(pools)))
        out.append((f"random_{i:03d}", "".join(chars)))
    return out


def tiny_model():
    """A hand-made BPE model: ids scrambled and not contiguous, bytes outside the vocabulary
    (-> the unknown token <|endoftext|>)."""
    merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o</w>"), ("w", "o"), ("r", "l"),
              ("wo", "rl"), ("worl", "d</w>"), ("a", "b"), ("ab", "c</w>"), ("!", "!</w>")]
    tokens = []
    for c in "abcdehlorw!":
        tokens += [c, c + "</w>"]
    tokens += ["he", "ll", "hell", "hello</w>", "wo", "rl", "worl", "world</w>", "ab", "abc</w>",
               "!!</w>", "<|startoftext|>", "<|endoftext|>"]
    rng = random.Random(7)
    ids = rng.sample(range(3, 3 * len(tokens) + 3), len(tokens))
    vocab = dict(zip(tokens, ids))
    texts = ["hello world", "HELLO, World!!", "abc cab abcabc", "wow xyz <|endoftext|>",
             "hello hello hello hello hello hello hello hello hello hello hello hello hello hello",
             "a!!b !", ""]
    return vocab, merges, texts


def tokenizer_json(vocab, merges, pairs):
    return {
        "version": "1.0",
        "added_tokens": [],
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "<|endoftext|>",
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "</w>",
            "fuse_unk": False,
            "vocab": vocab,
            "merges": [list(m) for m in merges] if pairs else [" ".join(m) for m in merges],
        },
    }


def class_ranges(pattern):
    """Ranges of the code points that the Oniguruma class `pattern` matches, as the tokenizers
    library's Split pre-tokenizer (the engine of CLIPTokenizer's patterns) finds them."""
    text = "".join(chr(c) for c in CODE_POINTS)
    split = pre_tokenizers.Split(Regex(pattern), behavior="removed", invert=True)
    hits = sorted(ord(ch) for piece, _ in split.pre_tokenize_str(text) for ch in piece)
    out = []
    for c in hits:
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def nfc_cases():
    """[input, NFC of it] from tokenizers' NFC normalizer: every code point it changes, the
    canonical decomposition of every code point, and around every mark (combining class > 0 in
    the newest Unicode data) the probes 'a' + mark + U+0334 (ccc 1), 'a' + U+0300 (230) + mark
    (canonical ordering) and 'e' + mark + U+0301 (composition across the mark)."""
    norm = normalizers.NFC()
    cases = {}
    for c in CODE_POINTS:
        if c and norm.normalize_str(chr(c)) != chr(c):
            cases[chr(c)] = None
        decomposed = unicodedata2.normalize("NFD", chr(c))
        if decomposed != chr(c):
            cases[decomposed] = None
        if unicodedata2.combining(chr(c)):
            m = chr(c)
            for probe in ("a" + m + "\u0334", "a\u0300" + m, "e" + m + "\u0301"):
                cases[probe] = None
    for probe in ("\u1100\u1161", "\u1100\u1161\u11a8", "\uac00\u11a8", "\u1100\u0301\u1161",
                  "\U00011935\U00011930", "\U00011938", "a\u1dfa\u0301", "e\u0316\u1ac1\u0301"):
        cases[probe] = None
    return [[s, norm.normalize_str(s)] for s in cases]


def unicode_fixture():
    import tokenizers

    lower = normalizers.Lowercase()
    return {
        "tokenizers_version": tokenizers.__version__,
        "space": class_ranges(r"\s"),
        "letter": class_ranges(r"\p{L}"),
        "number": class_ranges(r"\p{N}"),
        "lower": [[c, [ord(x) for x in lower.normalize_str(chr(c))]] for c in CODE_POINTS
                  if c and lower.normalize_str(chr(c)) != chr(c)],
        "nfc": nfc_cases(),
    }


def compact_json(obj):
    """JSON with one prompt / range list per line, small enough to commit and diff."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).replace("},{", "},\n{")


def load(folder, pad, max_length):
    """CLIPTokenizer.from_pretrained(folder), with pad as its pad token unless None."""
    from transformers import CLIPTokenizer

    kwargs = {"pad_token": pad} if pad else {}
    return CLIPTokenizer.from_pretrained(folder, model_max_length=max_length, **kwargs)


def encode(tok, text, max_length, pad):
    """The ids up to <|endoftext|>, after checking that the rest is padding."""
    ids = tok(text, padding="max_length", max_length=max_length, truncation=True).input_ids
    short = tok(text, max_length=max_length, truncation=True).input_ids
    pad_id = tok.convert_tokens_to_ids(pad)
    assert len(ids) == max_length and ids == short + [pad_id] * (max_length - len(short)), text
    return short


def main():
    import transformers

    if int(transformers.__version__.split(".")[0]) < 5:
        sys.exit(f"transformers {transformers.__version__}: the reference is transformers >= 5")
    import ftfy

    clip = openai_tokenizer()
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_files.write_tokenizer(tmp, BPE_GZ, "<|endoftext|>")
        vocab_path, merges_path = os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt")
        toks = {k: load(tmp, p, MAX_LENGTH) for k, p in PADS.items()}
        assert type(toks["ids_eos_pad"]).__name__ == "CLIPTokenizer"
        records, openai_differs = [], []
        for name, text in prompts() + random_prompts(200):
            record = {"name": name, "text": text}
            for key, pad in PADS.items():
                record[key] = encode(toks[key], text, MAX_LENGTH, pad)
            theirs = openai_ids(clip, text)
            if theirs != record["ids_eos_pad"]:
                record["openai"] = theirs
                openai_differs.append(name)
            records.append(record)
        vocab_digest, merges_digest = file_digest(vocab_path), file_digest(merges_path)
        # The committed SD tokenizer folders (their own tokenizer_config.json and pad) agree.
        for folder, key in (("tiny-sd1", "ids_eos_pad"), ("tiny-sd2", "ids_bang_pad")):
            path = os.path.join(ROOT, "tests", "fixtures", folder, "tokenizer")
            from_folder = load(path, None, MAX_LENGTH)
            assert from_folder.pad_token == PADS[key], folder
            assert all(encode(from_folder, r["text"], MAX_LENGTH, PADS[key]) == r[key]
                       for r in records), folder

        vocab, merges, texts = tiny_model()
        tiny_dir, tiny_json_dir = os.path.join(tmp, "tiny"), os.path.join(tmp, "tiny_json")
        os.makedirs(tiny_dir)
        os.makedirs(tiny_json_dir)
        json.dump(vocab, open(os.path.join(tiny_dir, "vocab.json"), "w", encoding="utf-8"),
                  ensure_ascii=False)
        with open(os.path.join(tiny_dir, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "".join(" ".join(m) + "\n" for m in merges))
        json.dump(tokenizer_json(vocab, merges, False),
                  open(os.path.join(tiny_json_dir, "tokenizer.json"), "w", encoding="utf-8"))
        tiny = {"max_length": 16, "prompts": []}
        for text in texts:
            record = {"text": text}
            for key, pad in PADS.items():
                record[key] = encode(load(tiny_dir, pad, 16), text, 16, pad)
                # transformers reads tokenizer.json's vocabulary and merges alike
                assert encode(load(tiny_json_dir, pad, 16), text, 16, pad) == record[key]
            tiny["prompts"].append(record)
    for pairs, name in ((False, "tiny_tokenizer.json"), (True, "tiny_tokenizer_pairs.json")):
        with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
            json.dump(tokenizer_json(vocab, merges, pairs), f, ensure_ascii=False, indent=1)
            f.write("\n")

    fixture = {
        "reference": f"transformers {transformers.__version__} CLIPTokenizer (tokenizers "
                     f"backend); OpenAI CLIP simple_tokenizer with ftfy {ftfy.__version__}",
        "max_length": MAX_LENGTH,
        "vocab_json": vocab_digest,
        "merges_txt": merges_digest,
        "openai_differs": openai_differs,
        "prompts": records,
        "tiny": tiny,
    }
    with open(os.path.join(OUT, "ids.json"), "w", encoding="utf-8") as f:
        f.write(compact_json(fixture) + "\n")
    with open(os.path.join(OUT, "unicode.json"), "w", encoding="utf-8") as f:
        f.write(compact_json(unicode_fixture()).replace('],"', '],\n"') + "\n")
    print(f"wrote {len(records)} prompts; OpenAI's SimpleTokenizer differs on {len(openai_differs)}:"
          f" {openai_differs}")


if __name__ == "__main__":
    main()
