"""Reads an sdbatch output file with h5py (pip install h5py) and checks its layout (schema 1, 2 or
3): the root attributes, the datasets' shapes and types, one image per chunk (schema 2: with
HDF5's Fletcher32 checksum, latents too), and that every done item has an image and no failure
reason; schema 3: each item's input, strength and noise level, and the inputs' files and SHA-256
(the inputs are checked against the files on disk when they are there, relative to the job's
folder). Prints a short summary; exits 1 on a problem.

    python tests/reference/check_output_h5py.py OUT.h5

The reading code is the snippet of docs/output.md."""
import hashlib
import os
import sys

import h5py
import numpy as np


def text(value):
    """An attribute's string: schema 1 stores variable-length strings (h5py gives str), schema 2
    fixed-length ones (h5py gives bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def main(path):
    problems = []
    with h5py.File(path, "r") as f:
        a = {k: text(v) if isinstance(v, (str, bytes)) else v for k, v in f.attrs.items()}
        version = int(a["schema_version"])
        if a["format"] != "sdbatch output" or version not in (1, 2, 3):
            problems.append(f"format {a['format']!r} version {version}")
        n, h, w = len(f["status"]), int(a["height"]), int(a["width"])
        print(f"{path}: job {a['job_path']} ({a['job_hash'][:12]}...), model {a['model']}")
        print(f"  created {a['created']}, updated {f['updated'][()].decode() or '-'}, "
              f"sdbatch {a['sdbatch_version']}")
        expect = {"images": ((n, h, w, 3), np.uint8), "prompt_index": ((n,), np.int32),
                  "seed": ((n,), np.int64), "guidance_scale": ((n,), np.float32),
                  "steps": ((n,), np.int32), "status": ((n,), np.uint8)}
        if a["save_latents"]:
            c, lh, lw = int(a["latent_channels"]), int(a["latent_height"]), int(a["latent_width"])
            expect["latents"] = ((n, c, lh, lw), np.float32)
        for name, (shape, dtype) in expect.items():
            d = f[name]
            if d.shape != shape or d.dtype != dtype:
                problems.append(f"{name}: {d.shape} {d.dtype}, expected {shape} {dtype}")
        if f["images"].chunks != (1, h, w, 3):
            problems.append(f"images chunks {f['images'].chunks}")
        if version >= 2:
            for name in ("images", "latents") if a["save_latents"] else ("images",):
                if not f[name].fletcher32:
                    problems.append(f"{name}: no Fletcher32 checksum (schema 2 has one)")

        if version >= 3:
            m = int(a["n_inputs"])
            for name, dtype in (("input_index", np.int32), ("strength", np.float32),
                                ("noise_level", np.int32)):
                if f[name].shape != (n,) or f[name].dtype != dtype:
                    problems.append(f"{name}: {f[name].shape} {f[name].dtype}")
            index = f["input_index"][:]
            if m == 0 and ("inputs" in f or (index != -1).any()):
                problems.append("a job without inputs has inputs")
            if m > 0:
                files = f["inputs"].asstr()[:]  # (M, 3): image, mask, depth map
                sums = f["input_sha256"].asstr()[:]
                if files.shape != (m, 3) or sums.shape != (m, 3) or index.max() >= m:
                    problems.append(f"inputs {files.shape}, input_sha256 {sums.shape}")
                folder = os.path.dirname(a["job_path"])
                for i in range(min(m, 3)):
                    print(f"  input {i}: {' '.join(p or '-' for p in files[i])}")
                    for p, want in zip(files[i], sums[i]):
                        full = os.path.join(folder, p)
                        if p and os.path.isfile(full):
                            got = hashlib.sha256(open(full, "rb").read()).hexdigest()
                            if got != want:
                                problems.append(f"{p}: SHA-256 {got}, the file says {want}")

        status = f["status"][:]
        prompts = f["prompts"].asstr()[:]
        scheduler = f["scheduler"].asstr()[:]
        failure = f["failure"].asstr()[:]
        done = np.flatnonzero(status == 1)
        failed = np.flatnonzero(status == 2)
        print(f"  {n} items: {len(done)} done, {len(failed)} failed, "
              f"{int((status == 0).sum())} pending; {len(prompts)} prompts")
        for i in done[:3]:
            image = f["images"][i]  # (H, W, 3) uint8, one chunk read
            print(f"  item {i}: seed {f['seed'][i]}, cfg {f['guidance_scale'][i]:g}, "
                  f"{f['steps'][i]} steps, {scheduler[i]}, "
                  f"prompt {prompts[f['prompt_index'][i]]!r}, mean pixel {image.mean():.1f}"
                  + (f", input {f['input_index'][i]}, strength {f['strength'][i]:g}, "
                     f"noise level {f['noise_level'][i]}" if version >= 3 else ""))
        for i in failed[:3]:
            print(f"  item {i} failed: {failure[i]}")
        if any(failure[i] for i in done):
            problems.append("a done item has a failure reason")
        if any(not failure[i] for i in failed):
            problems.append("a failed item has no reason")
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
