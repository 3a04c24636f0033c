"""Writes tests/fixtures/schedulers/cases.json, the reference runs for tests/test_schedulers.c.

Each case builds a diffusers scheduler the way a pipeline gets it: the model's scheduler config
(as its config.json states it) is loaded into its own class, and when another scheduler is asked
for, that class is built with from_config(loaded.config) (use_karras_sigmas=True for karras).
It then runs the StableDiffusionPipeline loop on the CPU in float32 for a (1, 4, 8, 8) latent:

    latents = randn(generator=torch.Generator('cpu').manual_seed(0)) * init_noise_sigma
    for t in timesteps:
        x = scale_model_input(latents, t)
        model_out = c1(t) * x + c2(t) * P           (a fake model the C test reproduces)
        latents = step(model_out, t, latents [, generator=Generator('cpu').manual_seed(1)])

with c1(t) = float32(0.9 - 0.2 cos(t / 300)), c2(t) = float32(0.1 sin(t / 150)) and
P[k] = float32(sin(0.37 k + 0.1)) over the flattened latent. euler_a draws its noise from the
generator passed to step(). Recorded: the timesteps, the sigmas (sigma schedulers),
init_noise_sigma and the latents after every step (float32 little-endian, base64, to keep the file
small); and alphas_cumprod of the beta schedules, which the C code reproduces bit for bit.

Run: python3 tests/reference/make_scheduler_fixtures.py (torch on the CPU, diffusers, scipy)."""

import base64
import json
import math
import os

import diffusers
import numpy as np
import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "schedulers", "cases.json")
SHAPE = (1, 4, 8, 8)

CLASSES = {
    "ddim": diffusers.DDIMScheduler,
    "pndm": diffusers.PNDMScheduler,
    "lms": diffusers.LMSDiscreteScheduler,
    "euler": diffusers.EulerDiscreteScheduler,
    "euler_a": diffusers.EulerAncestralDiscreteScheduler,
    "heun": diffusers.HeunDiscreteScheduler,
    "dpmpp_2m": diffusers.DPMSolverMultistepScheduler,
}

# runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json
SD15 = {
    "_class_name": "PNDMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}
# stabilityai/stable-diffusion-2-1 scheduler/scheduler_config.json
SD21 = {
    "_class_name": "DDIMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}


def with_fields(base, **changes):
    """base with fields changed; a value of None drops the field (not stated)."""
    cfg = dict(base)
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    return cfg


# (name, scheduler asked for, model config, karras, steps)
CASES = [
    ("pndm_sd15_10", "pndm", SD15, False, 10),
    ("pndm_sd15_1", "pndm", SD15, False, 1),
    ("pndm_sd15_2", "pndm", SD15, False, 2),
    ("pndm_sd15_3", "pndm", SD15, False, 3),
    ("pndm_sd15_25", "pndm", SD15, False, 25),
    ("pndm_prk_10", "pndm", with_fields(SD15, skip_prk_steps=None), False, 10),
    ("pndm_sd21_trailing_v_10", "pndm", with_fields(SD21, timestep_spacing="trailing"), False, 10),
    ("pndm_linspace_linear_4", "pndm",
     {"_class_name": "PNDMScheduler", "skip_prk_steps": True, "timestep_spacing": "linspace"}, False, 4),
    ("ddim_sd15_10", "ddim", SD15, False, 10),
    ("ddim_clip_default_10", "ddim", with_fields(SD15, clip_sample=None), False, 10),
    ("ddim_sd21_v_10", "ddim", SD21, False, 10),
    ("ddim_linspace_3", "ddim", with_fields(SD15, timestep_spacing="linspace"), False, 3),
    ("ddim_trailing_clip_range_10", "ddim",
     with_fields(SD15, timestep_spacing="trailing", clip_sample=True, clip_sample_range=1.5,
                 set_alpha_to_one=True), False, 10),
    ("ddim_sample_1", "ddim", with_fields(SD15, prediction_type="sample"), False, 1),
    ("lms_sd15_10", "lms", SD15, False, 10),
    ("lms_karras_10", "lms", SD15, True, 10),
    ("lms_leading_10", "lms", with_fields(SD15, timestep_spacing="leading"), False, 10),
    ("lms_sd21_v_10", "lms", SD21, False, 10),
    ("euler_sd15_10", "euler", SD15, False, 10),
    ("euler_karras_10", "euler", SD15, True, 10),
    ("euler_trailing_v_10", "euler", with_fields(SD21, timestep_spacing="trailing"), False, 10),
    ("euler_leading_10", "euler", with_fields(SD15, timestep_spacing="leading"), False, 10),
    ("euler_sd15_1", "euler", SD15, False, 1),
    ("euler_a_sd15_10", "euler_a", SD15, False, 10),
    ("euler_a_leading_10", "euler_a", with_fields(SD15, timestep_spacing="leading"), False, 10),
    ("euler_a_sd21_v_3", "euler_a", SD21, False, 3),
    ("heun_sd15_10", "heun", SD15, False, 10),
    ("heun_karras_5", "heun", SD15, True, 5),
    ("heun_clip_v_5", "heun", with_fields(SD21, clip_sample=True), False, 5),
    ("heun_class_defaults_3", "heun", {"_class_name": "PNDMScheduler", "skip_prk_steps": True}, False, 3),
    ("dpmpp_2m_sd15_10", "dpmpp_2m", SD15, False, 10),
    ("dpmpp_2m_karras_10", "dpmpp_2m", SD15, True, 10),
    ("dpmpp_2m_sd15_25", "dpmpp_2m", SD15, False, 25),
    ("dpmpp_2m_karras_25", "dpmpp_2m", SD15, True, 25),
    ("dpmpp_2m_sd15_1", "dpmpp_2m", SD15, False, 1),
    ("dpmpp_2m_sd15_2", "dpmpp_2m", SD15, False, 2),
    ("dpmpp_2m_sd15_3", "dpmpp_2m", SD15, False, 3),
    ("dpmpp_2m_trailing_v_10", "dpmpp_2m", with_fields(SD21, timestep_spacing="trailing"), False, 10),
    ("dpmpp_2m_leading_10", "dpmpp_2m", with_fields(SD15, timestep_spacing="leading"), False, 10),
    ("dpmpp_2m_sample_5", "dpmpp_2m", with_fields(SD15, prediction_type="sample"), False, 5),
    ("dpmpp_2m_cosine_10", "dpmpp_2m", with_fields(SD15, beta_schedule="squaredcos_cap_v2"), False, 10),
    ("dpmpp_2m_cosine_karras_3", "dpmpp_2m", with_fields(SD15, beta_schedule="squaredcos_cap_v2"), True, 3),
    ("euler_cosine_karras_10", "euler", with_fields(SD15, beta_schedule="squaredcos_cap_v2"), True, 10),
    ("ddim_linear_defaults_10", "ddim", {"_class_name": "DDIMScheduler"}, False, 10),
]


def pattern():
    values = [np.float32(math.sin(0.37 * k + 0.1)) for k in range(int(np.prod(SHAPE)))]
    return torch.tensor(np.array(values, dtype=np.float32)).reshape(SHAPE)


def fake_model(x, t, p):
    t = float(t)
    c1 = float(np.float32(0.9 - 0.2 * math.cos(t / 300.0)))
    c2 = float(np.float32(0.1 * math.sin(t / 150.0)))
    return c1 * x + c2 * p


def build(kind, model_config, karras):
    loaded = getattr(diffusers, model_config["_class_name"]).from_config(model_config)
    extra = {"use_karras_sigmas": True} if karras else {}
    return CLASSES[kind].from_config(loaded.config, **extra)


def b64(t):
    return base64.b64encode(t.detach().numpy().astype("<f4").tobytes()).decode("ascii")


def run(kind, model_config, karras, steps, noise, p):
    sched = build(kind, model_config, karras)
    sched.set_timesteps(steps)
    init_sigma = sched.init_noise_sigma
    latents = noise * init_sigma
    generator = torch.Generator("cpu").manual_seed(1) if kind == "euler_a" else None
    record = []
    for t in sched.timesteps:
        x = sched.scale_model_input(latents, t)
        model_out = fake_model(x, t, p)
        kwargs = {"generator": generator} if generator is not None else {}
        latents = sched.step(model_out, t, latents, **kwargs).prev_sample
        assert latents.dtype == torch.float32
        record.append(b64(latents))
    sigmas = getattr(sched, "sigmas", None)
    return {
        "timesteps": [float(t) for t in sched.timesteps],
        "sigmas": [float(v) for v in sigmas] if kind not in ("ddim", "pndm") else None,
        "init_noise_sigma": float(init_sigma),
        "latents": record,
    }


def main():
    torch.set_num_threads(1)
    noise = torch.randn(SHAPE, generator=torch.Generator("cpu").manual_seed(0), dtype=torch.float32)
    p = pattern()
    alphas = []
    for schedule, start, end in [("linear", 0.0001, 0.02), ("linear", 0.00085, 0.012),
                                 ("scaled_linear", 0.00085, 0.012), ("squaredcos_cap_v2", 0.0001, 0.02)]:
        sched = diffusers.DDIMScheduler(beta_schedule=schedule, beta_start=start, beta_end=end)
        alphas.append({"beta_schedule": schedule, "beta_start": start, "beta_end": end,
                       "alphas_cumprod": b64(sched.alphas_cumprod)})
    cases = []
    for name, kind, model_config, karras, steps in CASES:
        case = {"name": name, "kind": kind, "config": model_config, "karras": karras, "steps": steps}
        case.update(run(kind, model_config, karras, steps, noise, p))
        cases.append(case)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(
            {
                "torch_version": torch.__version__,
                "diffusers_version": diffusers.__version__,
                "shape": list(SHAPE),
                "noise": b64(noise),
                "alphas_cumprod": alphas,
                "cases": cases,
            },
            f,
            indent=0,
        )
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes, {len(cases)} cases)")


if __name__ == "__main__":
    main()
