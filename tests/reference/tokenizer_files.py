"""Writes a CLIP tokenizer folder (vocab.json, merges.txt, tokenizer_config.json,
special_tokens_map.json) from OpenAI CLIP's bpe_simple_vocab_16e6.txt.gz, building the vocabulary
the way CLIP's SimpleTokenizer does, so the files equal openai/clip-vit-large-patch14's."""

import gzip
import json
import os

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
NUM_MERGES = 49152 - 256 - 2  # CLIP keeps the first 48894 merges of the file


def byte_unicode_chars():
    """The 256 printable characters GPT-2/CLIP byte-level BPE uses for bytes 0..255, in byte
    order: printable Latin-1 bytes map to themselves, the rest to U+0100 onwards."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\u00a1"), ord("\u00ac") + 1))
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    )
    chars = {}
    extra = 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    # CLIP's vocabulary lists them in bytes_to_unicode()'s insertion order: printable bytes
    # first, then the remapped ones
    return [chars[b] for b in printable] + [chars[b] for b in range(256) if b not in printable]


def load_merges(bpe_gz_path):
    lines = gzip.open(bpe_gz_path).read().decode("utf-8").split("\n")
    merges = lines[1 : NUM_MERGES + 1]
    if len(merges) != NUM_MERGES:
        raise ValueError(f"{bpe_gz_path}: {len(merges)} merges, expected {NUM_MERGES}")
    return merges


def build_vocab(merges):
    units = byte_unicode_chars()
    tokens = units + [u + "</w>" for u in units]
    tokens += ["".join(m.split()) for m in merges]
    tokens += [BOS, EOS]
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != 49408:
        raise ValueError(f"CLIP vocabulary has {len(vocab)} entries, expected 49408")
    return vocab


def write_tokenizer(folder, bpe_gz_path, pad_token):
    """pad_token: "<|endoftext|>" (SD 1.x) or "!" (SD 2.x)."""
    os.makedirs(folder, exist_ok=True)
    merges = load_merges(bpe_gz_path)
    vocab = build_vocab(merges)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        f.write("\n".join(merges))
        f.write("\n")
    special = {"bos_token": BOS, "eos_token": EOS, "pad_token": pad_token, "unk_token": EOS}
    config = dict(special)
    config.update(
        {
            "add_prefix_space": False,
            "do_lower_case": True,
            "errors": "replace",
            "model_max_length": 77,
            "tokenizer_class": "CLIPTokenizer",
        }
    )
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(folder, "special_tokens_map.json"), "w") as f:
        json.dump(special, f, indent=2, sort_keys=True)
        f.write("\n")
