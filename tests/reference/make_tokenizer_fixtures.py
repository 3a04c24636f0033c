#!/usr/bin/env python3
"""Fixtures for tests/test_tokenizer.c: the ids of transformers' slow CLIPTokenizer (no ftfy).

Writes tests/fixtures/tokenizer/:
  ids.json             77 ids of each tricky prompt for pad "<|endoftext|>" (SD 1.x) and "!"
                       (SD 2.x); size and CRC-32 of vocab.json / merges.txt built from the .gz;
                       the ids of a tiny hand-made tokenizer (tiny_*.json) with max_length 16.
  tiny_tokenizer.json  tiny tokenizers' tokenizer.json, merges as "a b" strings
  tiny_tokenizer_pairs.json  the same with merges as ["a", "b"] pairs
  unicode.json         Python's character classes over all code points (ranges), str.lower of
                       every code point it changes, and some final-sigma strings.

The reference is transformers' slow CLIPTokenizer, which transformers 5 no longer has, so run
this with transformers < 5 and without ftfy:
  python3 -m venv /tmp/tf4 && /tmp/tf4/bin/pip install "transformers<5"
  /tmp/tf4/bin/python tests/reference/make_tokenizer_fixtures.py
Run with transformers >= 5 installed, it writes nothing and instead reports the prompts on which
that version's CLIPTokenizer (backed by tokenizers) gives other ids than the committed fixture.

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

import regex

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer_files  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BPE_GZ = os.path.join(ROOT, "third_party", "clip", "bpe_simple_vocab_16e6.txt.gz")
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
MAX_LENGTH = 77
PADS = {"ids_eos_pad": "<|endoftext|>", "ids_bang_pad": "!"}


def write_vocab_merges(folder):
    """vocab.json + merges.txt built as CLIP builds its vocabulary (tokenizer_files.py, shared
    with the model fixtures); returns the two paths."""
    tokenizer_files.write_tokenizer(folder, BPE_GZ, "<|endoftext|>")
    return os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")


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
    return [
        ("plain", "a photograph of an astronaut riding a horse"),
        ("mixed_case", "A PhotoGraph OF an ASTRONAUT Riding a HORSE, Trending on ArtStation"),
        ("whitespace", "  lots   of\tspaces\t\tand tabs\n\nand\r\nnewlines  "),
        ("punctuation", "wow!!! really... a,b;c (x) [y] {z} <q> \"quoted\" 'single' #tag @user "
                        "50% $5 a+b=c ~~~ --- ___ ?!?! :) ^_^ \\o/ `code`"),
        ("contractions", "don't it's we'll I'M you're they've she'd DON'T it'S 'tis o'clock "
                         "rock'n'roll can''t '''"),
        ("numbers", "1234 3.14 2nd 1,000,000 -42 1e10 ½ ² ³ ⅷ ١٢٣ ४५६ 0x1F"),
        ("accents", "café naïve Ångström résumé crème brûlée São Paulo Zürich"),
        ("decomposed", "cafe\u0301 nai\u0308ve A\u030angstro\u0308m"),
        ("german", "Straße STRASSE Fußgängerübergänge ẞ"),
        ("turkish", "İstanbul IĞDIR ılık İı iI"),
        ("greek", "Οδυσσέας ΟΔΥΣΣΕΥΣ σοφός ΣΑΣ. Σ ΑΣ'Σ ἙΛΛΆΣ ΑΣ\u0301 A\u0301Σ"),
        ("final_sigma_context", "ªΣ ⅰΣ ⓐΣ Σⓐ Σ.a AΣ.b AΣ:: Aʰ\u0345Σ"),
        ("cyrillic", "Привет, мир! ЁЛКА Ёжик"),
        ("cjk", "東京タワー 一只猫 中文字符𠀀 㐀 豈"),
        ("japanese_mixed", "ラーメン ramen 日本語テキストです"),
        ("korean", "안녕하세요 세계 고양이"),
        ("emoji", "🐱 cat 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇯🇵"),
        ("combining", "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇ e\u0301\u0327 \u0301alone "
                      "ᾳ Α\u0345 x\u0345y \u0345"),
        ("controls", "a\x01b\x07c\x1bd\x7fe\x85f\u200eg\u202eh\ufeffi\ufffdj\x1ck"),
        ("unicode_spaces", "no\u00a0break\u2009thin\u3000ideographic\u2028line\u2029para"
                           "\u000bvt\u000cff\u1680ogham\u202fnarrow"),
        ("zero_width", "zero\u200bwidth\u200cnon\u200djoiner\u2060word"),
        ("special_tokens", "a photo <|endoftext|> of <|startoftext|>a cat<|endoftext|>"),
        ("special_lookalikes", "<|ENDOFTEXT|> <|endoftext |> <|ſtartoftext|> don'ſ !<|endoftext|>"),
        ("empty", ""),
        ("only_blank", "   \t\n\x01  \u200b "),
        ("exclamations", "hello!!! world! ! !!a!!"),
        ("tokens_75", " ".join(["a"] * 75)),
        ("tokens_76", " ".join(["a"] * 76)),
        ("thousand_words", thousand_words()),
        ("long_word", "a" * 300 + "supercalifragilisticexpialidocious" * 8),
        ("random_letters", random_word),
        ("arabic", "مرحبا بالعالم قطة على القمر"),
        ("hindi", "नमस्ते दुनिया बिल्ली चाँद पर"),
        ("thai", "สวัสดีชาวโลก แมวบนดวงจันทร์"),
        ("hebrew", "שָׁלוֹם עולם"),
        ("private_unassigned", "\ue000x\U0010fffd y\u0378z"),
        ("quotes_dashes", "«quotes» „German“ ‘single’ “double” — em—dash … ellipsis"),
        ("fullwidth", "ＡＢＣ　ｆｕｌｌ！ １２３"),
        ("special_casing", "K Å ǅ ǈ ﬁ ß ſ ŉ ΐ"),
        ("math", "∑ ∫ √ π ∞ ≠ ≤ x² H₂O 𝔸𝕓𝒸"),
    ]


def encode(tok, text, max_length):
    return tok(text, padding="max_length", max_length=max_length, truncation=True).input_ids


def tiny_model():
    """A hand-made BPE model: ids scrambled and not contiguous, one merge result ("wo") missing
    from the vocabulary, bytes outside the vocabulary (-> unknown token)."""
    merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o</w>"), ("w", "o"), ("r", "l"),
              ("wo", "rl"), ("worl", "d</w>"), ("a", "b"), ("ab", "c</w>"), ("!", "!</w>")]
    tokens = []
    for c in "abcdehlorw!":
        tokens += [c, c + "</w>"]
    tokens += ["he", "ll", "hell", "hello</w>", "rl", "worl", "world</w>", "ab", "abc</w>",
               "!!</w>", "<|startoftext|>", "<|endoftext|>"]
    rng = random.Random(7)
    ids = rng.sample(range(3, 3 * len(tokens) + 3), len(tokens))
    vocab = dict(zip(tokens, ids))
    texts = ["hello world", "HELLO, World!!", "abc cab abcabc", "wow xyz <|endoftext|>",
             "hello hello hello hello hello hello hello hello hello hello hello hello hello hello",
             "a!!b !"]
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


def ranges(predicate, limit=0x110000):
    out, start = [], None
    for c in range(limit + 1):
        inside = c < limit and not (0xD800 <= c <= 0xDFFF) and predicate(c)
        if inside and start is None:
            start = c
        elif not inside and start is not None:
            out.append([start, c - 1])
            start = None
    return out


def regex_ranges(pattern):
    """Ranges of code points a character class of CLIP's pattern matches (IGNORECASE, as there:
    it changes what the negated class takes)."""
    rx = regex.compile(pattern, regex.IGNORECASE)
    out = []
    for lo, hi in ((0, 0xD800), (0xE000, 0x110000)):
        text = "".join(chr(c) for c in range(lo, hi))
        out += [[lo + m.start(), lo + m.end() - 1] for m in rx.finditer(text)]
    return out


def sigma_class(c):
    """How str.lower's final-sigma rule sees c: 'cased', 'ignorable' or None."""
    ch = chr(c)
    if ("AΣ" + ch).lower()[1] == "σ":
        return "cased"
    if ("A" + ch + "Σ").lower()[-1] == "ς":
        return "ignorable"
    return None


def unicode_fixture():
    from transformers.models.clip.tokenization_clip import BasicTokenizer
    from transformers.tokenization_utils import _is_control, _is_whitespace

    basic = BasicTokenizer()
    classes = {c: sigma_class(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF}
    lower = [[c, [ord(x) for x in chr(c).lower()]] for c in range(0x110000)
             if not 0xD800 <= c <= 0xDFFF and chr(c).lower() != chr(c)]
    sigma_strings = ["ΣΑΣ", "ΑΣ.", "ΑΣ.Β", "Α.Σ", "Σ", "ΑΣ\u0301", "Α\u0301Σ", "ªΣ", "ⅰΣ", "Σⓐ",
                     "AΣ'", "A'Σ'", "AΣ\u00adB", "1Σ", "ΑΣ1", "ʰΣ", "AʰΣ", "İΣ", "AΣİ"]
    return {
        "python_unicode_version": unicodedata.unidata_version,
        "regex_version": regex.__version__,
        "unassigned": ranges(lambda c: unicodedata.category(chr(c)) == "Cn"),
        "control": ranges(lambda c: _is_control(chr(c))),
        "whitespace": ranges(lambda c: _is_whitespace(chr(c))),
        "cjk": ranges(basic._is_chinese_char),
        "isspace": ranges(lambda c: chr(c).isspace()),
        "cased": ranges(lambda c: classes[c] == "cased"),
        "case_ignorable": ranges(lambda c: classes[c] == "ignorable"),
        "letter": regex_ranges(r"[\p{L}]+"),
        "number": regex_ranges(r"[\p{N}]+"),
        "other": regex_ranges(r"[^\s\p{L}\p{N}]+"),
        "regex_space": regex_ranges(r"\s+"),
        "lower": lower,
        "lower_strings": [[s, s.lower()] for s in sigma_strings],
    }


def compact_json(obj):
    """JSON with one prompt / range list per line, small enough to commit and diff."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).replace("},{", "},\n{")


def check_installed_v5(fixture_path):
    from transformers import CLIPTokenizer

    fixture = json.load(open(fixture_path, encoding="utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        write_vocab_merges(tmp)
        for key, pad in PADS.items():
            tok = CLIPTokenizer.from_pretrained(tmp, pad_token=pad)
            differ = [p["name"] for p in fixture["prompts"]
                      if encode(tok, p["text"], MAX_LENGTH) != p[key]]
            print(f"pad {pad!r}: {len(differ)} of {len(fixture['prompts'])} prompts differ "
                  f"from the slow tokenizer: {differ}")


def main():
    import transformers

    if importlib.util.find_spec("ftfy") is not None:
        sys.exit("ftfy is installed: the reference is CLIPTokenizer without ftfy; uninstall it")
    if int(transformers.__version__.split(".")[0]) >= 5:
        print(f"transformers {transformers.__version__} has no slow CLIPTokenizer; comparing its "
              "CLIPTokenizer with the committed fixture instead of writing one")
        check_installed_v5(os.path.join(OUT, "ids.json"))
        return
    from transformers import CLIPTokenizer, CLIPTokenizerFast

    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        vocab_path, merges_path = write_vocab_merges(tmp)
        slow = {k: CLIPTokenizer(vocab_path, merges_path, pad_token=p) for k, p in PADS.items()}
        fast = {k: CLIPTokenizerFast(vocab_path, merges_path, pad_token=p)
                for k, p in PADS.items()}
        assert slow["ids_eos_pad"].fix_text is None, "slow CLIPTokenizer is using ftfy"
        records, fast_differs = [], []
        for name, text in prompts():
            record = {"name": name, "text": text}
            for key in PADS:
                record[key] = encode(slow[key], text, MAX_LENGTH)
                if encode(fast[key], text, MAX_LENGTH) != record[key] and name not in fast_differs:
                    fast_differs.append(name)
            records.append(record)
        vocab_digest, merges_digest = file_digest(vocab_path), file_digest(merges_path)

        vocab, merges, texts = tiny_model()
        tiny_vocab = os.path.join(tmp, "tiny_vocab.json")
        tiny_merges = os.path.join(tmp, "tiny_merges.txt")
        json.dump(vocab, open(tiny_vocab, "w", encoding="utf-8"), ensure_ascii=False)
        with open(tiny_merges, "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "".join(" ".join(m) + "\n" for m in merges))
        tiny = {"max_length": 16, "prompts": []}
        for text in texts:
            record = {"text": text}
            for key, pad in PADS.items():
                tok = CLIPTokenizer(tiny_vocab, tiny_merges, pad_token=pad)
                record[key] = encode(tok, text, tiny["max_length"])
            tiny["prompts"].append(record)
    for pairs, name in ((False, "tiny_tokenizer.json"), (True, "tiny_tokenizer_pairs.json")):
        with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
            json.dump(tokenizer_json(vocab, merges, pairs), f, ensure_ascii=False, indent=1)
            f.write("\n")

    fixture = {
        "reference": f"transformers {transformers.__version__} CLIPTokenizer (slow, no ftfy), "
                     f"Python {sys.version.split()[0]}, Unicode {unicodedata.unidata_version}",
        "max_length": MAX_LENGTH,
        "vocab_json": vocab_digest,
        "merges_txt": merges_digest,
        "fast_differs": fast_differs,
        "prompts": records,
        "tiny": tiny,
    }
    with open(os.path.join(OUT, "ids.json"), "w", encoding="utf-8") as f:
        f.write(compact_json(fixture) + "\n")
    with open(os.path.join(OUT, "unicode.json"), "w", encoding="utf-8") as f:
        f.write(compact_json(unicode_fixture()).replace('],"', '],\n"') + "\n")
    print(f"wrote {len(records)} prompts; CLIPTokenizerFast differs on: {fast_differs}")


if __name__ == "__main__":
    main()
