"""Fixtures of `sdbatch train`'s instance-image transforms (tests/test_instance_data.c).

train_dreambooth.py's DreamBoothDataset applies, to a PIL image converted to RGB:
  Resize(size, BILINEAR), CenterCrop(size) or RandomCrop(size), ToTensor(), Normalize([0.5], [0.5])
(and other diffusers scripts RandomHorizontalFlip()). torchvision is not installed here, so its
code for PIL inputs is written out below as torchvision 0.2x has it:
  Resize: shorter side -> size, longer -> int(size * long / short), PIL resize(BILINEAR)
  CenterCrop: top = int(round((h - size) / 2.0)), left likewise
  RandomCrop.get_params: i = torch.randint(0, h - size + 1, (1,)).item(), then j for the width
                         (no draw when the image is already size x size)
  RandomHorizontalFlip: torch.rand(1) < 0.5
  ToTensor: uint8 -> float32 / 255; Normalize: (x - 0.5) / 0.5
The random draws come from torch's global generator (torch.manual_seed(seed)), which is
torch.Generator('cpu').manual_seed(seed): sdbatch's sd_rng cpu kind seeded with the same seed must
draw the same crops and flips.

Writes tests/fixtures/train-data/images/{a_wide.png, b_tall.jpg} and want.safetensors:
  center.<name>            (3, 32, 32) CenterCrop result
  random.<name>.<seed>     (3, 32, 32) RandomCrop + RandomHorizontalFlip with torch.manual_seed(seed)
  view.<name>.<seed>       int32 (top, left, flipped)
"""
import os

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

SIZE = 32
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "train-data")


def resize(img):
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(SIZE * long / short)
    new_w, new_h = (SIZE, new_long) if w <= h else (new_long, SIZE)
    return img.resize((new_w, new_h), Image.BILINEAR)


def to_tensor(img):
    x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div(255)
    return (x - 0.5) / 0.5


def main():
    os.makedirs(os.path.join(OUT, "images"), exist_ok=True)
    rng = np.random.default_rng(12)
    # smooth-ish content so that resizing matters, plus noise
    yy, xx = np.mgrid[0:70, 0:100]
    wide = np.stack([(xx * 2.5) % 256, (yy * 3.5) % 256, rng.integers(0, 256, (70, 100))], -1)
    Image.fromarray(wide.astype(np.uint8)).save(os.path.join(OUT, "images", "a_wide.png"))
    yy, xx = np.mgrid[0:77, 0:45]
    tall = np.stack([(xx * 5) % 256, rng.integers(0, 256, (77, 45)), (yy * 3) % 256], -1)
    Image.fromarray(tall.astype(np.uint8)).save(os.path.join(OUT, "images", "b_tall.jpg"),
                                                quality=90)
    with open(os.path.join(OUT, "images", "notes.txt"), "w") as f:
        f.write("not an image: skipped by name\n")
    tensors = {}
    for name in ("a_wide.png", "b_tall.jpg"):
        img = resize(Image.open(os.path.join(OUT, "images", name)).convert("RGB"))
        w, h = img.size
        top, left = int(round((h - SIZE) / 2.0)), int(round((w - SIZE) / 2.0))
        tensors[f"center.{name}"] = to_tensor(img.crop((left, top, left + SIZE, top + SIZE)))
        for seed in range(5):
            torch.manual_seed(seed)
            i = torch.randint(0, h - SIZE + 1, size=(1,)).item()
            j = torch.randint(0, w - SIZE + 1, size=(1,)).item()
            crop = img.crop((j, i, j + SIZE, i + SIZE))
            flip = bool(torch.rand(1) < 0.5)
            if flip:
                crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
            tensors[f"random.{name}.{seed}"] = to_tensor(crop)
            tensors[f"view.{name}.{seed}"] = torch.tensor([i, j, int(flip)], dtype=torch.int32)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "want.safetensors"))
    print("wrote", len(tensors), "tensors")


if __name__ == "__main__":
    main()
