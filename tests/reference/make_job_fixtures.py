#!/usr/bin/env python3
"""Writes the job-file fixtures of tests/test_jobs.c into tests/fixtures/jobs/.

Good jobs exercise every key, the defaults, sweeps, prompts files and the job hash; each bad job
holds exactly one problem, whose expected message (file:line:col) is asserted in test_jobs.c.
Most bad jobs are the base job below with one line replaced or added, so their line numbers are
easy to check by eye. Run: python3 tests/reference/make_job_fixtures.py
"""
import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "jobs")

# Line numbers matter: bad jobs replace line N of this text.
BASE = [
    "# sdbatch test job",            # 1
    "model: models/demo",            # 2
    "output: out.h5",                # 3
    'prompts: ["a red cube", "a blue sphere"]',  # 4
    "seeds: [1, 2]",                 # 5
    "width: 512",                    # 6
    "steps: 20",                     # 7
    "guidance_scale: 7.5",           # 8
]


def base(replace=None, append=()):
    lines = list(BASE)
    for number, text in (replace or {}).items():
        lines[number - 1] = text
    lines.extend(append)
    return "\n".join(lines) + "\n"


TEXT = {
    # Every key of schema v1.
    "good_full.yaml": """\
# Every key of schema v1.
model: models/sd15            # relative: to this file's folder
model_config: /abs/v1-inference.yaml
output: results/out.h5
prompts:
  - "a photo of an astronaut riding a horse"
  - 'ein Pferd im Schnee, Ölgemälde'
  - plain text prompt
negative_prompt: "blurry, low quality"
seeds: [42, 7, 18446744073709551615]
width: 768
height: 64
steps: [20, 50]
guidance_scale: [1, 7.5, 12.25]
scheduler: [euler, dpmpp_2m, default]
karras: true
rng: cpu
batch_size: 8
save_latents: true
device: cuda
""",
    # Only the required keys: everything else takes its default.
    "good_minimal.yaml": """\
model: /models/sd15
output: /tmp/out.h5
prompts: a lone prompt
seeds: 5
""",
    # 2 prompts x 3 seeds x 2 steps x 2 guidance scales x 2 schedulers = 48 items.
    "good_sweep.yaml": """\
model: m
output: o.h5
prompts: [p0, p1]
seeds: {start: 10, count: 3}
steps: [10, 20]
guidance_scale: [1.0, 7.5]
scheduler: [ddim, euler]
""",
    # 1,000,000 items from one prompt and a seed range.
    "good_million.yaml": """\
model: m
output: o.h5
prompts: [only]
seeds: {start: 1000, count: 1000000}
""",
    # The largest job: 2^63 - 1 items.
    "good_max_items.yaml": """\
model: m
output: o.h5
prompts: [only]
seeds: {start: 0, count: 9223372036854775807}
""",
    # sd_job_check_paths: the model is this folder, the output's folder exists (or not).
    "paths_ok.yaml": """\
model: .
output: out.h5
prompts: [x]
seeds: [1]
""",
    "paths_no_output_folder.yaml": """\
model: .
output: no-such-folder/out.h5
prompts: [x]
seeds: [1]
""",
    # prompts_file: BOM, CRLF, blank and whitespace-only lines.
    "good_prompts_file.yaml": """\
model: m
output: o.h5
prompts_file: prompts.txt
seeds: [3]
""",
    # The job hash: a and b are the same job written differently; c differs in one seed.
    "hash_a.yaml": """\
model: models/demo
output: a.h5
prompts: ["first prompt", "second prompt"]
negative_prompt: ugly
seeds: [5, 6, 7, 9]
width: 512
height: 512
steps: [20, 30]
guidance_scale: [7.5, 1]
scheduler: [default, euler]
batch_size: 4
""",
    "hash_b.yaml": """\
# the same job as hash_a.yaml: other formatting, key order, output, batch size, device,
# prompts from a file, explicit defaults, a seed list written with a range and a list
batch_size: 16
device: cpu
scheduler:
  - default
  - euler
guidance_scale: [7.50, 1.0]
steps: [20, 30]
height: 512
width: 512
seeds: [5, 6, 7, 9]
negative_prompt: 'ugly'
prompts_file: hash_prompts.txt
output: other/b.h5
model: "models/demo"
karras: false
rng: cuda
save_latents: false
""",
    "hash_c.yaml": """\
model: models/demo
output: a.h5
prompts: ["first prompt", "second prompt"]
negative_prompt: ugly
seeds: [5, 6, 7, 10]
width: 512
height: 512
steps: [20, 30]
guidance_scale: [7.5, 1]
scheduler: [default, euler]
""",
    "hash_range.yaml": """\
model: m
output: o.h5
prompts: [x]
seeds: {start: 3, count: 4}
""",
    "hash_list.yaml": """\
model: m
output: o.h5
prompts: [x]
seeds: [3, 4, 5, 6]
""",
    "hash_prompts.txt": "first prompt\n\nsecond prompt\n",
    "prompts.txt": "\ufefffirst prompt\r\n\r\n   \t\nsecond  prompt, with ümlauts \r\nthird\n\n",
    # Bad jobs: one problem each.
    "bad_steps_string.yaml": base({7: "steps: ten"}),
    "bad_steps_zero_in_list.yaml": base({7: "steps: [20, 0]"}),
    "bad_steps_repeat.yaml": base({7: "steps: [20, 30, 20]"}),
    "bad_steps_empty.yaml": base({7: "steps: []"}),
    "bad_steps_mapping.yaml": base({7: "steps: {a: 1}"}),
    "bad_seed_negative.yaml": base({5: "seeds: -1"}),
    "bad_seed_in_list.yaml": base({5: "seeds: [1, 2.5]"}),
    "bad_seed_repeat.yaml": base({5: "seeds: [4, 9, 1, 9, 4]"}),
    "bad_seed_too_big.yaml": base({5: "seeds: [18446744073709551616]"}),
    "bad_seeds_empty.yaml": base({5: "seeds: []"}),
    "bad_seeds_count_zero.yaml": base({5: "seeds: {start: 0, count: 0}"}),
    "bad_seeds_range_key.yaml": base({5: "seeds: {start: 0, step: 2}"}),
    "bad_seeds_range_missing.yaml": base({5: "seeds: {start: 0}"}),
    "bad_seeds_range_overflow.yaml": base({5: "seeds: {start: 18446744073709551615, count: 2}"}),
    "bad_items_overflow.yaml": base({5: "seeds: {start: 0, count: 9223372036854775807}"}),
    "bad_width_not_multiple.yaml": base({6: "width: 500"}),
    "bad_width_too_small.yaml": base({6: "width: 32"}),
    "bad_height_too_big.yaml": base(append=["height: 8192"]),
    "bad_width_quoted.yaml": base({6: 'width: "512"'}),
    "bad_guidance_word.yaml": base({8: "guidance_scale: high"}),
    "bad_guidance_negative.yaml": base({8: "guidance_scale: [1.0, -2]"}),
    "bad_guidance_nan.yaml": base({8: "guidance_scale: .nan"}),
    "bad_scheduler.yaml": base(append=["scheduler: [ddim, dpm++]"]),
    "bad_karras.yaml": base(append=["scheduler: [euler, ddim]", "karras: true"]),
    "bad_batch_size.yaml": base(append=["batch_size: 0"]),
    "bad_rng.yaml": base(append=["rng: gpu"]),
    "bad_device.yaml": base(append=["device: tpu"]),
    "bad_bool.yaml": base(append=["save_latents: yes"]),
    "bad_prompts_empty.yaml": base({4: "prompts: []"}),
    "bad_prompt_null.yaml": base({4: "prompts: [a cat, ~]"}),
    "bad_prompt_list_in_list.yaml": base({4: "prompts: [a cat, [nested]]"}),
    "bad_prompt_nul.yaml": base({4: 'prompts: ["a\\0b"]'}),
    "bad_both_prompts.yaml": base(append=["prompts_file: prompts.txt"]),
    "bad_prompts_file_missing.yaml": base({4: "prompts_file: no-such-prompts.txt"}),
    "bad_prompts_file_blank.yaml": base({4: "prompts_file: blank_prompts.txt"}),
    "bad_prompts_file_utf8.yaml": base({4: "prompts_file: bad_utf8_prompts.txt"}),
    "blank_prompts.txt": "\n   \n\t\n",
    "bad_model_empty.yaml": base({2: "model:"}),
    "bad_model_list.yaml": base({2: "model: [a, b]"}),
    "bad_missing_model.yaml": base({2: "# no model"}),
    "bad_missing_seeds.yaml": base({5: "# no seeds"}),
    "bad_missing_prompts.yaml": base({4: "# no prompts"}),
    "bad_unknown_key.yaml": base({7: "stpes: 20"}),
    "bad_unknown_key_far.yaml": base(append=["colour: blue"]),
    "bad_duplicate_key.yaml": base(append=["steps: 30"]),
    "bad_nonscalar_key.yaml": base(append=["[a, b]: 1"]),
    "bad_empty.yaml": "",
    "bad_comments_only.yaml": "# nothing here\n\n",
    "bad_top_list.yaml": "- model: m\n- output: o.h5\n",
    "bad_top_scalar.yaml": "just some text\n",
    "bad_tabs.yaml": base({7: "steps:\n\t- 20"}),
    "bad_syntax.yaml": base({4: 'prompts: ["a red cube", "a blue sphere"'}),
    "bad_two_documents.yaml": base() + "---\nmodel: other\n",
    "bad_undefined_alias.yaml": base({7: "steps: *missing"}),
    # Adapters: two LoRAs (2 x 3 scale sets) and two embeddings; 6 sets x 2 seeds = 12 items.
    "good_adapters.yaml": """\
model: m
output: o.h5
prompts: a <style> house
seeds: [1, 2]
loras:
  - {file: a.safetensors, scale: [0.5, -1]}
  - file: /abs/b.safetensors
    scale: [0, 0.25, 1e-1]
  - c.safetensors
embeddings:
  - style.safetensors
  - {file: cat.safetensors, token: "<cat>"}
""",
    "bad_lora_scale.yaml": base(append=["loras:", "  - {file: a.safetensors, scale: strong}"]),
    "bad_lora_key.yaml": base(append=["loras:", "  - {file: a.safetensors, weight: 1}"]),
    "bad_lora_no_file.yaml": base(append=["loras:", "  - {scale: 1}"]),
    "bad_loras_empty.yaml": base(append=["loras: []"]),
    "bad_embedding_token.yaml": base(append=["embeddings:", "  - {file: e.safetensors, token: ''}"]),
}

BYTES = {
    "bad_utf8_prompts.txt": b"fine\n\nalso fine \xc3\xa9\nbroken \xff here\n",
    "bad_yaml_latin1.yaml": base({4: "prompts: [\"caf\xe9\"]"}).encode("latin-1"),
    "bad_garbage.yaml": bytes((i * 73 + 11) % 256 for i in range(200)),
    "bad_utf16.yaml": "model: m\n".encode("utf-16"),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, text in TEXT.items():
        with open(os.path.join(OUT, name), "w", encoding="utf-8", newline="") as f:
            f.write(text)
    for name, data in BYTES.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(TEXT) + len(BYTES)} files to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
