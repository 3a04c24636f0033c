#!/usr/bin/env python3
"""Writes the seed inputs of tests/fuzz/corpus/<harness>/ (seed-* files) from the repository's
fixtures: small valid files of each format and a few broken ones. Regression inputs (regress-*,
each a bug a fuzzer or a review found) are committed by hand and left alone here.
Usage: tests/fuzz/make_seeds.py  (from anywhere; needs only the standard library)"""
import gzip
import json
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")


def out_dir(harness):
    path = os.path.join(CORPUS, harness)
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.startswith("seed-"):
            os.remove(os.path.join(path, name))
    return path


def write(harness, name, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(CORPUS, harness, "seed-" + name), "wb") as f:
        f.write(data)


def read(*parts):
    with open(os.path.join(FIXTURES, *parts), "rb") as f:
        return f.read()


def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, bytes)."""
    header, offset, blobs = {}, 0, []
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, blob in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


SIZES = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "I64": 8, "U8": 1, "BOOL": 1, "F64": 8}


def skeleton(path, limit):
    """The keys of a real checkpoint with every dimension cut to at most `limit`: the layout
    scans see real names, the data stays small."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    tensors = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape = [min(d, limit) for d in entry["shape"]]
        count = 1
        for d in shape:
            count *= d
        tensors.append((name, entry["dtype"], shape, bytes(count * SIZES[entry["dtype"]])))
    return safetensors(tensors, header.get("__metadata__"))


def seeds_safetensors():
    out_dir("safetensors")
    write("safetensors", "one-f32.safetensors", safetensors([("w", "F32", [2, 2], bytes(16))]))
    write("safetensors", "dtypes.safetensors", safetensors(
        [("a", "F16", [3], bytes(6)), ("b", "BF16", [1, 1], bytes(2)), ("c", "I32", [], bytes(4)),
         ("position_ids", "I64", [1, 2], bytes(16)), ("e", "U8", [0], b"")],
        {"format": "pt"}))
    write("safetensors", "empty.safetensors", safetensors([]))
    write("safetensors", "truncated.safetensors",
          safetensors([("w", "F32", [4], bytes(16))])[:-4])
    write("safetensors", "tiny-sd1-skeleton.safetensors",
          skeleton(os.path.join(FIXTURES, "tiny-sd1.safetensors"), 2))
    write("safetensors", "tiny-sd2-skeleton.safetensors",
          skeleton(os.path.join(FIXTURES, "tiny-sd2.safetensors"), 2))


def seeds_config_json():
    out_dir("config_json")
    for model in ("tiny-sd1", "tiny-sd2"):
        for part in ("unet/config.json", "vae/config.json", "text_encoder/config.json",
                     "scheduler/scheduler_config.json", "model_index.json",
                     "tokenizer/tokenizer_config.json"):
            write("config_json", model + "-" + part.replace("/", "-"), read(model, part))
    write("config_json", "not-object.json", "[1, 2, 3]")
    write("config_json", "deep.json", "[" * 200 + "]" * 200)


def seeds_ldm_yaml():
    out_dir("ldm_yaml")
    write("ldm_yaml", "tiny-sd1.yaml", read("tiny-sd1.yaml"))
    write("ldm_yaml", "minimal.yaml", "model:\n  params:\n    image_size: 16\n")
    write("ldm_yaml", "anchors.yaml",
          "model:\n  params: &p\n    unet_config: {params: {channel_mult: [1, 2, 2]}}\n"
          "    first_stage_config: *p\n")


def tiny_vocab_merges():
    tok = json.loads(read("tokenizer", "tiny_tokenizer.json"))
    vocab = dict(tok["model"]["vocab"])
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab.setdefault(special, max(vocab.values()) + 1)
    merges = tok["model"]["merges"]
    return tok, vocab, merges


def seeds_tokenizer_files():
    out_dir("tokenizer_files")
    tok, vocab, merges = tiny_vocab_merges()
    lines = [m if isinstance(m, str) else " ".join(m) for m in merges]
    text = json.dumps(vocab, ensure_ascii=False) + "\n#merges.txt#\n#version: 0.2\n" + "\n".join(lines)
    write("tokenizer_files", "tiny-vocab-merges.txt", text)
    tok["model"]["vocab"] = vocab
    write("tokenizer_files", "tiny-tokenizer.json", json.dumps(tok, ensure_ascii=False))
    pairs = json.loads(read("tokenizer", "tiny_tokenizer_pairs.json"))
    pairs["model"]["vocab"].update({k: v for k, v in vocab.items() if k.startswith("<|")})
    write("tokenizer_files", "tiny-tokenizer-pairs.json", json.dumps(pairs, ensure_ascii=False))
    # the first merges of CLIP's own files
    vocab_json = json.loads(read("tiny-sd1", "tokenizer", "vocab.json"))
    merges_txt = read("tiny-sd1", "tokenizer", "merges.txt").decode().split("\n")[:41]
    keep = {k: v for k, v in vocab_json.items() if v < 512 or k.startswith("<|")}
    for line in merges_txt[1:]:
        a, b = line.split(" ")
        keep[a + b] = vocab_json[a + b]
    write("tokenizer_files", "clip-head.txt",
          json.dumps(keep, ensure_ascii=False) + "\n#merges.txt#\n" + "\n".join(merges_txt))


def seeds_bpe_gz():
    out_dir("bpe_gz")
    with open(os.path.join(ROOT, "third_party", "clip", "bpe_simple_vocab_16e6.txt.gz"), "rb") as f:
        text = gzip.decompress(f.read()).decode()
    head = "\n".join(text.split("\n")[:201])
    write("bpe_gz", "clip-head.txt.gz", gzip.compress(head.encode(), mtime=0))
    write("bpe_gz", "two-members.txt.gz",
          gzip.compress(head[:500].encode(), mtime=0) + gzip.compress(head[500:].encode(), mtime=0))
    write("bpe_gz", "header-only.txt.gz", gzip.compress(b"#version: 0.2\n", mtime=0))
    write("bpe_gz", "truncated.txt.gz", gzip.compress(head.encode(), mtime=0)[:100])


def seeds_prompt():
    out_dir("prompt")
    picked = 0
    for case in json.loads(read("tokenizer", "ids.json"))["prompts"]:
        name = case["name"]
        if not name.startswith("random_") or picked < 8:
            write("prompt", name, case["text"])
            picked += name.startswith("random_")
    write("prompt", "empty", "")
    write("prompt", "invalid-utf8", b"a \xff\xfe cat")


def seeds_jobs():
    out_dir("job_yaml")
    jobs = os.path.join(FIXTURES, "jobs")
    for name in sorted(os.listdir(jobs)):
        if name.endswith(".yaml"):
            write("job_yaml", name, read("jobs", name))
    write("job_yaml", "prompts-file.yaml",
          "model: m\noutput: o.h5\nprompts_file: p.txt\nseeds: {start: 5, count: 3}\nsteps: [2, 3]\n"
          "\n#prompts_file#\nfirst prompt\n\n  \nsecond ünïcödé prompt\r\n")
    out_dir("prompts_file")
    write("prompts_file", "synthetic.txt",
          open(os.path.join(ROOT, "jobs", "examples", "synthetic_prompts.txt"), "rb").read())
    write("prompts_file", "bom-crlf.txt", b"\xef\xbb\xbfone\r\ntwo\r\n\r\nthree")
    write("prompts_file", "nul.txt", b"one\ntw\x00o\n")
    write("prompts_file", "bad-utf8.txt", read("jobs", "bad_utf8_prompts.txt"))
    write("prompts_file", "blank.txt", read("jobs", "blank_prompts.txt"))


def lora_subset(path, modules):
    """The first `modules` layers of a LoRA file at rank 1 (down (1, in...), up (out, 1...)):
    still a valid LoRA of the model, a few KB instead of hundreds."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    kept, tensors = [], []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        module = name.split(".lora")[0].split("_lora")[0].rsplit(".alpha", 1)[0]
        if module not in kept:
            if len(kept) == modules:
                continue
            kept.append(module)
        shape = list(entry["shape"])
        if any(part in name for part in ("lora_A", "lora_down", "down.weight")) and shape:
            shape[0] = 1
        elif any(part in name for part in ("lora_B", "lora_up", "up.weight")) and len(shape) > 1:
            shape[1] = 1
        count = 1
        for d in shape:
            count *= d
        tensors.append((name, entry["dtype"], shape, bytes(count * SIZES[entry["dtype"]])))
    return safetensors(tensors, header.get("__metadata__"))


def seeds_adapters():
    """LoRA and embedding files of tests/fixtures/adapters (each a few KB)."""
    out_dir("lora")
    out_dir("embedding")
    adapters = os.path.join(FIXTURES, "adapters")
    for name in sorted(os.listdir(adapters)):
        if name.startswith("lora_"):
            write("lora", name, lora_subset(os.path.join(adapters, name), 6))
        elif name in ("emb_cat.safetensors", "style.safetensors"):
            write("embedding", name, read("adapters", name))
    write("lora", "empty.safetensors", safetensors([]))
    write("embedding", "a1111.safetensors",
          safetensors([("emb_params", "F32", [2, 4], bytes(32))]))


def npy(shape, values=None, descr="<f4", fortran=False, magic=b"\x93NUMPY", version=(1, 0)):
    """A .npy file (format 1.0 / 2.0 header padded to 64 bytes) of float32 values."""
    count = 1
    for d in shape:
        count *= d
    values = values if values is not None else [0.25 * i for i in range(count)]
    dims = ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "")
    header = (f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': ({dims}), }}")
    size_field = 2 if version[0] == 1 else 4
    pad = 64 - (len(magic) + 2 + size_field + len(header) + 1) % 64
    header = header + " " * (pad % 64) + "\n"
    packed = struct.pack("<H" if size_field == 2 else "<I", len(header))
    body = struct.pack(("<" if descr[0] != ">" else ">") + "f" * count, *values)
    return magic + bytes(version) + packed + header.encode("latin-1") + body


def seeds_images():
    """The small PNG and JPEG fixtures of tests/fixtures/images (every PNG colour type and bit
    depth, baseline / progressive / CMYK JPEG, the claimed-huge ones) and small .npy depth maps,
    valid and each way the reader refuses."""
    out_dir("image")
    images = os.path.join(FIXTURES, "images")
    for name in sorted(os.listdir(images)):
        if name.endswith((".png", ".jpg")) and os.path.getsize(os.path.join(images, name)) < 4096:
            write("image", name, read("images", name))
    out_dir("npy")
    write("npy", "hw.npy", npy((3, 4)))
    write("npy", "1hw.npy", npy((1, 2, 5)))
    write("npy", "v2.npy", npy((2, 2), version=(2, 0)))
    write("npy", "1d.npy", npy((6,)))
    write("npy", "bigendian.npy", npy((2, 3), descr=">f4"))
    write("npy", "fortran.npy", npy((2, 3), fortran=True))
    write("npy", "nan.npy", npy((1, 2), values=[1.0, float("nan")]))
    write("npy", "truncated.npy", npy((3, 3))[:-5])


if __name__ == "__main__":
    seeds_safetensors()
    seeds_config_json()
    seeds_ldm_yaml()
    seeds_tokenizer_files()
    seeds_bpe_gz()
    seeds_prompt()
    seeds_jobs()
    seeds_adapters()
    seeds_images()
