"""Writes tests/fixtures/adapters/: LoRA and textual-inversion files for the tiny SD 1.x model (and
one case on tiny SD 2.x) and what diffusers renders with them, for tests/test_adapters.c.

Adapter files (random weights, seeded):
  lora_peft.safetensors   diffusers/peft: peft LoraConfig adapters on the UNet (r 4, lora_alpha 8,
                          attention, feed-forward, proj_in/proj_out) and the text encoder (r 2,
                          lora_alpha 3, q/k/v/out_proj, fc1/fc2), saved by
                          StableDiffusionPipeline.save_lora_weights with the adapter metadata, as
                          diffusers' training scripts save them.
  lora_old.safetensors    the older attention-processor names: unet.<attention>.processor.
                          to_q_lora.down.weight ... to_out_lora.up.weight, text_encoder.<layer>.
                          self_attn.to_q_lora.down.weight ...; no alpha (scale 1).
  lora_kohya_sd2.safetensors  the same for tiny-sd2 (linear proj_in/out, its text encoder).
  lora_kohya.safetensors  kohya-ss sd-scripts names: lora_unet_<module with _>.lora_down.weight /
                          .lora_up.weight / .alpha (rank 4, alpha 2), LoCon 3x3 convs in the
                          resnets (conv1, conv2), time_emb_proj, proj_in (1x1 conv), downsampler
                          conv; lora_te_text_model_encoder_layers_<i>_... with alpha; written here
                          with the key naming kohya uses (networks/lora.py: prefix + module name
                          with '.' as '_').
  emb_cat.safetensors     diffusers learned_embeds: {"<cat-toy>": (1, 32)}.
  style.safetensors       A1111: {"emb_params": (3, 32)}, a 3-vector embedding, loaded in diffusers
                          with token="<style>".

expected.safetensors, per case (metadata "cases": JSON of every case's adapters and call):
  ids.<case> (2, 77) int32     tokenizer ids of the converted prompt and negative prompt
                               (maybe_convert_prompt, then the tokenizer)
  te.<case> (1, 77, 32)        text encoder output for the converted prompt
  unet.<case> (1, 4, 8, 8)     UNet output for unet.sample at t = 981 with te.<case> as context
  image.<case> (1, 64, 64, 3)  uint8 values as float16, StableDiffusionPipeline output
  image.<case>.latents         final latents before the VAE
  te.base.sd1, unet.base.sd1   the same without adapters (so a test sees that adapters change them);
  te.base.sd2, unet.base.sd2   likewise for tiny-sd2
  unet.sample (1, 4, 8, 8)     torch.randn, cpu seed 31

Adapters are loaded the way users load them: pipe.load_lora_weights(file, adapter_name=...),
pipe.set_adapters(names, adapter_weights=scales) (the scale applies to the UNet and the text
encoder), pipe.load_textual_inversion(file[, token=...]). Float32 on the CPU.

Run from anywhere: python3 tests/reference/make_adapter_fixtures.py (deterministic, ~30 s; needs
torch, diffusers, transformers, peft, safetensors).
"""

import json
import os

import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from peft import LoraConfig, inject_adapter_in_model
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
MODELS = {"sd1": os.path.join(FIXTURES, "tiny-sd1"), "sd2": os.path.join(FIXTURES, "tiny-sd2")}
OUT = os.path.join(FIXTURES, "adapters")

UNET_SHAPE, UNET_SEED, TIMESTEP = (1, 4, 8, 8), 31, 981.0
CALL = {"height": 64, "width": 64, "steps": 4, "scheduler": "ddim", "guidance_scale": 7.5}

PROMPT = "a photo of an astronaut riding a horse"
CASES = {
    "peft": {"loras": [["lora_peft.safetensors", 1.0]], "seed": 1},
    "peft_half": {"loras": [["lora_peft.safetensors", 0.5]], "seed": 1},
    "old": {"loras": [["lora_old.safetensors", 1.0]], "seed": 2},
    "kohya": {"loras": [["lora_kohya.safetensors", 0.8]], "seed": 3},
    "two": {"loras": [["lora_peft.safetensors", 0.6], ["lora_kohya.safetensors", -0.7]], "seed": 4},
    "embeddings": {
        "embeddings": [["emb_cat.safetensors", None], ["style.safetensors", "<style>"]],
        "prompt": "a <cat-toy> on a table, painted in <style> style",
        "negative_prompt": "<style>, blurry",
        "seed": 5,
    },
    "embeddings_lora": {
        "loras": [["lora_kohya.safetensors", 1.0]],
        "embeddings": [["style.safetensors", "<style>"]],
        "prompt": "<STYLE> a <style>house",
        "seed": 6,
    },
    # SD 2.x: linear proj_in/proj_out, OpenCLIP-shaped text encoder, v-prediction
    "sd2_kohya": {
        "model": "sd2",
        "loras": [["lora_kohya_sd2.safetensors", 0.9]],
        "embeddings": [["emb_cat.safetensors", None]],
        "prompt": "a <cat-toy> on a table",
        "seed": 7,
    },
}


def randn(shape, gen, std):
    return torch.randn(shape, generator=gen, dtype=torch.float32) * std


def load_pipeline(model="sd1"):
    pipe = StableDiffusionPipeline.from_pretrained(
        MODELS[model],
        torch_dtype=torch.float32,
        safety_checker=None,
        requires_safety_checker=False,
        local_files_only=True,
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    return pipe


def write_peft_lora(path):
    pipe = load_pipeline()
    gen = torch.Generator("cpu").manual_seed(100)
    unet_config = LoraConfig(
        r=4,
        lora_alpha=8,
        init_lora_weights=False,
        target_modules=["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2",
                        "proj_in", "proj_out"],
    )
    te_config = LoraConfig(
        r=2,
        lora_alpha=3,
        init_lora_weights=False,
        target_modules=["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
    )
    pipe.unet.add_adapter(unet_config)
    # peft directly (transformers' add_adapter wants a newer peft than PyPI has)
    inject_adapter_in_model(te_config, pipe.text_encoder)
    with torch.no_grad():
        for model in (pipe.unet, pipe.text_encoder):
            for name, p in sorted(model.named_parameters()):
                if "lora_" in name:
                    p.copy_(randn(p.shape, gen, 0.15))
    StableDiffusionPipeline.save_lora_weights(
        OUT,
        unet_lora_layers=get_peft_model_state_dict(pipe.unet),
        text_encoder_lora_layers=get_peft_model_state_dict(pipe.text_encoder),
        weight_name=os.path.basename(path),
        unet_lora_adapter_metadata=sorted_modules(unet_config.to_dict()),
        text_encoder_lora_adapter_metadata=sorted_modules(te_config.to_dict()),
    )


def sorted_modules(config):
    """peft keeps target_modules as a set: sorted, the metadata does not depend on the hash seed."""
    config["target_modules"] = sorted(config["target_modules"])
    return config


def module_shapes(model, kinds):
    """(name, weight shape) of the model's Linear / Conv2d modules whose name ends with one of
    kinds, sorted by name."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and any(
            name.endswith(k) for k in kinds
        ):
            out.append((name, tuple(m.weight.shape)))
    return sorted(out)


def write_old_lora(path):
    pipe = load_pipeline()
    gen = torch.Generator("cpu").manual_seed(200)
    state = {}
    rank = 4
    old = {"to_q": "to_q_lora", "to_k": "to_k_lora", "to_v": "to_v_lora", "to_out.0": "to_out_lora"}
    for name, shape in module_shapes(pipe.unet, list(old)):
        if name.endswith(".to_out.0"):
            attention, layer = name[: -len(".to_out.0")], "to_out.0"
        else:
            attention, layer = name.rsplit(".", 1)
        base = f"unet.{attention}.processor.{old[layer]}"
        state[f"{base}.down.weight"] = randn((rank, shape[1]), gen, 0.15)
        state[f"{base}.up.weight"] = randn((shape[0], rank), gen, 0.15)
    te_old = {"q_proj": "to_q_lora", "k_proj": "to_k_lora", "v_proj": "to_v_lora",
              "out_proj": "to_out_lora"}
    for name, shape in module_shapes(pipe.text_encoder, list(te_old)):
        attention, layer = name.rsplit(".", 1)
        if not attention.startswith("text_model."):
            attention = "text_model." + attention
        base = f"text_encoder.{attention}.{te_old[layer]}"
        state[f"{base}.down.weight"] = randn((rank, shape[1]), gen, 0.15)
        state[f"{base}.up.weight"] = randn((shape[0], rank), gen, 0.15)
    save_file(state, path)


def write_kohya_lora(path, model="sd1"):
    pipe = load_pipeline(model)
    gen = torch.Generator("cpu").manual_seed(300)
    rank, alpha = 4, 2.0
    state = {}
    kinds = ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in",
             "proj_out", "conv1", "conv2", "time_emb_proj", "downsamplers.0.conv"]
    layers = [("lora_unet_", n, s) for n, s in module_shapes(pipe.unet, kinds)]
    te = module_shapes(pipe.text_encoder, ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"])
    for name, shape in te:
        if not name.startswith("text_model."):
            name = "text_model." + name
        layers.append(("lora_te_", name, shape))
    for prefix, name, shape in layers:
        lora_name = prefix + name.replace(".", "_")
        if len(shape) == 4:  # LoCon: down has the layer's kernel, up is 1x1
            down = randn((rank, shape[1], shape[2], shape[3]), gen, 0.15)
            up = randn((shape[0], rank, 1, 1), gen, 0.15)
        else:
            down = randn((rank, shape[1]), gen, 0.15)
            up = randn((shape[0], rank), gen, 0.15)
        state[f"{lora_name}.lora_down.weight"] = down.half()  # kohya saves fp16
        state[f"{lora_name}.lora_up.weight"] = up.half()
        state[f"{lora_name}.alpha"] = torch.tensor(alpha).half()
    save_file(state, path, metadata={"ss_network_module": "networks.lora"})


def write_embeddings():
    gen = torch.Generator("cpu").manual_seed(400)
    save_file({"<cat-toy>": randn((1, 32), gen, 0.5)}, os.path.join(OUT, "emb_cat.safetensors"))
    save_file({"emb_params": randn((3, 32), gen, 0.5)}, os.path.join(OUT, "style.safetensors"))


def pipeline_for(case):
    pipe = load_pipeline(case.get("model", "sd1"))
    names, scales = [], []
    for i, (file, scale) in enumerate(case.get("loras", [])):
        name = f"lora{i}"
        pipe.load_lora_weights(os.path.join(OUT, file), adapter_name=name)
        names.append(name)
        scales.append(scale)
    if names:
        pipe.set_adapters(names, adapter_weights=scales)
    for file, token in case.get("embeddings", []):
        pipe.load_textual_inversion(os.path.join(OUT, file), token=token)
    return pipe


def stages(pipe, prompt, negative):
    prompt = pipe.maybe_convert_prompt(prompt, pipe.tokenizer)
    negative = pipe.maybe_convert_prompt(negative, pipe.tokenizer)
    ids = pipe.tokenizer([prompt, negative], padding="max_length", max_length=77,
                         truncation=True, return_tensors="pt").input_ids
    sample = torch.randn(UNET_SHAPE, generator=torch.Generator("cpu").manual_seed(UNET_SEED))
    with torch.no_grad():
        context = pipe.text_encoder(ids[:1]).last_hidden_state
        out = pipe.unet(sample, torch.tensor([TIMESTEP]), encoder_hidden_states=context).sample
    return ids.to(torch.int32), context, out, sample


def render(pipe, prompt, negative, seed):
    final = {}

    def keep_latents(p, step, timestep, kwargs):
        final["latents"] = kwargs["latents"].clone()
        return kwargs

    image = pipe(
        prompt,
        negative_prompt=negative or None,
        height=CALL["height"],
        width=CALL["width"],
        num_inference_steps=CALL["steps"],
        guidance_scale=CALL["guidance_scale"],
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np",
        callback_on_step_end=keep_latents,
    ).images
    return torch.from_numpy((image * 255).round().astype("uint8")).half(), final["latents"]


def main():
    os.makedirs(OUT, exist_ok=True)
    write_peft_lora(os.path.join(OUT, "lora_peft.safetensors"))
    write_old_lora(os.path.join(OUT, "lora_old.safetensors"))
    write_kohya_lora(os.path.join(OUT, "lora_kohya.safetensors"))
    write_kohya_lora(os.path.join(OUT, "lora_kohya_sd2.safetensors"), "sd2")
    write_embeddings()
    out, meta = {}, {}
    for model in MODELS:
        base = load_pipeline(model)
        _, out[f"te.base.{model}"], out[f"unet.base.{model}"], out["unet.sample"] = stages(
            base, PROMPT, "")
    for name, case in CASES.items():
        prompt = case.get("prompt", PROMPT)
        negative = case.get("negative_prompt", "")
        pipe = pipeline_for(case)
        out[f"ids.{name}"], out[f"te.{name}"], out[f"unet.{name}"], _ = stages(pipe, prompt,
                                                                               negative)
        out[f"image.{name}"], out[f"image.{name}.latents"] = render(pipe, prompt, negative,
                                                                    case["seed"])
        model = case.get("model", "sd1")
        meta[name] = {"model": f"tiny-{model}", "loras": case.get("loras", []),
                      "embeddings": case.get("embeddings", []), "prompt": prompt,
                      "negative_prompt": negative, "seed": case["seed"], **CALL}
        changed = (out[f"unet.{name}"] - out[f"unet.base.{model}"]).abs().max().item()
        print(f"{name}: unet output moved by {changed:.3g} from the base model")
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(OUT, "expected.safetensors"),
              metadata={"cases": json.dumps(meta), "unet_timestep": str(TIMESTEP)})
    for f in sorted(os.listdir(OUT)):
        print(f, os.path.getsize(os.path.join(OUT, f)))


if __name__ == "__main__":
    main()
