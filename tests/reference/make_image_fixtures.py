"""Writes tests/fixtures/images/: input image files of every kind sdbatch reads, and
images.safetensors with what PIL makes of them, for tests/test_image.c.

Files (small, odd sizes): PNGs of every colour type and bit depth (gray 1/2/4/8/16 bits,
gray+alpha 8/16, RGB 8/16, RGBA 8/16, palette 1/2/4/8 bits with tRNS, gray and RGB with tRNS,
Adam7-interlaced RGB and 16-bit gray) written by a small encoder here, so every layout exists
whatever PIL can save; JPEGs saved by PIL (4:2:0, 4:2:2, 4:4:4, progressive, gray); a CMYK JPEG
(unsupported) and files whose headers claim absurd sizes.

Tensors (float16 holding uint8 values, exact):
  decode.<file> (H, W, 3): PIL.Image.open(file).convert("RGB"), what diffusers' load_image gives
    (no file here carries EXIF orientation);
  resize.<filter>.<case> (H, W, C): Image.resize((W, H), filter) of the source image
    resize.source.rgb (29, 37, 3) / resize.source.l (29, 37, 1), for each filter and target
    size (down, up, wider and shorter: the one case where Pillow 13 runs the vertical pass first,
    narrower and taller, the same size);
  luma (29, 37, 1): resize.source.rgb converted to "L".
  preprocess.* (float32): diffusers' VaeImageProcessor(vae_scale_factor=8).preprocess of
    load_image(file) (image.<file> at the default size, image.photo420-40x48 resized up) and
    the inpainting mask processor's preprocess of mask-soft.png / mask-hard.png at 32x24
    (mask.<name>), prepare_mask_latents' F.interpolate to latent size (mask_latent.<name>) and
    the masked image init * (mask < 0.5) of photo420 (masked_image.<name>).

Written with Pillow 13.0.0. Run from anywhere: python3 tests/reference/make_image_fixtures.py
(deterministic, ~2 s).
"""

import os
import struct
import zlib

import numpy as np
import torch
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import load_image
from PIL import Image
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "images")
OUT = os.path.join(OUT_DIR, "images.safetensors")

W, H = 23, 17
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def pack_rows(samples, depth):
    """samples (h, w * channels) ints -> filtered scanlines (filter 0) of the given bit depth."""
    out = bytearray()
    for row in samples:
        out.append(0)
        if depth == 16:
            for v in row:
                out += struct.pack(">H", int(v))
        elif depth == 8:
            out += bytes(int(v) for v in row)
        else:
            per = 8 // depth
            for i in range(0, len(row), per):
                byte = 0
                for j in range(per):
                    v = int(row[i + j]) if i + j < len(row) else 0
                    byte |= v << (8 - depth * (j + 1))
                out.append(byte)
    return bytes(out)


def write_png(path, samples, depth, color_type, palette=None, trns=None, interlace=False):
    """samples: (h, w, channels) array of raw sample values."""
    h, w, c = samples.shape
    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, int(interlace)))
    if palette is not None:
        head += chunk(b"PLTE", bytes(np.asarray(palette, dtype=np.uint8).reshape(-1)))
    if trns is not None:
        head += chunk(b"tRNS", trns)
    if interlace:
        raw = b""
        for x0, y0, dx, dy in ADAM7:
            sub = samples[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += pack_rows(sub.reshape(sub.shape[0], -1), depth)
    else:
        raw = pack_rows(samples.reshape(h, -1), depth)
    data = head + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


def picture(rng, h, w):
    """A smooth gradient with noise: content a JPEG encoder meets in photos."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1), (x + y) * 127 / (w + h)], -1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    rng = np.random.default_rng(7)
    files = {}

    def samples(channels, depth):
        return rng.integers(0, 1 << depth, size=(H, W, channels), dtype=np.int64)

    for depth in (1, 2, 4, 8, 16):
        files[f"gray{depth}.png"] = (samples(1, depth), depth, 0, {})
    # 16-bit gray mostly below 256, where PIL's clipping conversion keeps the values
    low16 = rng.integers(0, 300, size=(H, W, 1), dtype=np.int64)
    files["gray16-low.png"] = (low16, 16, 0, {})
    for depth in (8, 16):
        files[f"gray-alpha{depth}.png"] = (samples(2, depth), depth, 4, {})
        files[f"rgb{depth}.png"] = (samples(3, depth), depth, 2, {})
        files[f"rgba{depth}.png"] = (samples(4, depth), depth, 6, {})
    for depth in (1, 2, 4, 8):
        n = 1 << depth
        palette = rng.integers(0, 256, size=(n, 3))
        trns = bytes(rng.integers(0, 256, size=n).astype(np.uint8))
        files[f"palette{depth}.png"] = (samples(1, depth), depth, 3, {"palette": palette, "trns": trns})
    short_palette = rng.integers(0, 256, size=(5, 3))
    files["palette-short.png"] = (rng.integers(0, 5, size=(H, W, 1)), 8, 3, {"palette": short_palette})
    files["gray8-trns.png"] = (samples(1, 8), 8, 0, {"trns": struct.pack(">H", 17)})
    files["rgb8-trns.png"] = (samples(3, 8), 8, 2, {"trns": struct.pack(">HHH", 1, 2, 3)})
    files["rgb8-interlaced.png"] = (samples(3, 8), 8, 2, {"interlace": True})
    files["gray16-interlaced.png"] = (low16, 16, 0, {"interlace": True})
    for name, (data, depth, color_type, extra) in files.items():
        write_png(os.path.join(OUT_DIR, name), data, depth, color_type, **extra)

    photo = picture(rng, 29, 37)
    jpegs = {
        "photo420.jpg": dict(quality=90, subsampling=2),
        "photo422.jpg": dict(quality=85, subsampling=1),
        "photo444.jpg": dict(quality=95, subsampling=0),
        "photo-progressive.jpg": dict(quality=80, progressive=True),
    }
    for name, kwargs in jpegs.items():
        Image.fromarray(photo).save(os.path.join(OUT_DIR, name), "JPEG", **kwargs)
    Image.fromarray(photo[..., 0]).save(os.path.join(OUT_DIR, "gray.jpg"), "JPEG", quality=90)
    Image.fromarray(photo).convert("CMYK").save(os.path.join(OUT_DIR, "cmyk.jpg"), "JPEG")

    y, x = np.mgrid[0:29, 0:37]
    Image.fromarray(np.clip(x * 7 + y * 2, 0, 255).astype(np.uint8)).save(os.path.join(OUT_DIR, "mask-soft.png"))
    hard = np.zeros((29, 37), np.uint8)
    hard[5:20, 9:30] = 255
    Image.fromarray(hard).convert("RGB").save(os.path.join(OUT_DIR, "mask-hard.png"))

    # a PNG whose IHDR claims 100000 x 100000 pixels, and a JPEG claiming 60000 x 60000
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    with open(os.path.join(OUT_DIR, "huge.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    jpeg = bytearray(open(os.path.join(OUT_DIR, "photo420.jpg"), "rb").read())
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)
    with open(os.path.join(OUT_DIR, "huge.jpg"), "wb") as f:
        f.write(bytes(jpeg))

    tensors = {}

    def put(name, array):
        array = np.asarray(array)
        if array.ndim == 2:
            array = array[..., None]
        tensors[name] = torch.from_numpy(array.astype(np.float16)).contiguous()

    for name in sorted(os.listdir(OUT_DIR)):
        if name.endswith((".png", ".jpg")) and not name.startswith(("huge", "cmyk")):
            put(f"decode.{name}", np.array(Image.open(os.path.join(OUT_DIR, name)).convert("RGB")))

    src_rgb = rng.integers(0, 256, size=(29, 37, 3), dtype=np.uint8)
    src_l = rng.integers(0, 256, size=(29, 37), dtype=np.uint8)
    put("resize.source.rgb", src_rgb)
    put("resize.source.l", src_l)
    filters = {
        "lanczos": Image.Resampling.LANCZOS,
        "bicubic": Image.Resampling.BICUBIC,
        "bilinear": Image.Resampling.BILINEAR,
        "box": Image.Resampling.BOX,
        "hamming": Image.Resampling.HAMMING,
    }
    # "tall": both shrink, the height by more than twice the width (Pillow 13 runs the vertical
    # pass first there)
    sizes = {"down": (24, 16), "up": (64, 48), "wide": (80, 8), "mixed": (13, 40), "same": (37, 29),
             "tall": (30, 9)}
    for fname, f in filters.items():
        for sname, size in sizes.items():
            put(f"resize.{fname}.rgb.{sname}", np.array(Image.fromarray(src_rgb).resize(size, f)))
        put(f"resize.{fname}.l.down", np.array(Image.fromarray(src_l).resize((24, 16), f)))
    put("luma", np.array(Image.fromarray(src_rgb).convert("L")))

    processor = VaeImageProcessor(vae_scale_factor=8)
    masker = VaeImageProcessor(vae_scale_factor=8, do_normalize=False, do_binarize=True, do_convert_grayscale=True)
    for name in ("photo420.jpg", "rgb16.png", "gray16-low.png", "palette4.png"):
        tensors[f"preprocess.image.{name}"] = processor.preprocess(load_image(os.path.join(OUT_DIR, name)))[0]
    init = processor.preprocess(load_image(os.path.join(OUT_DIR, "photo420.jpg")), height=48, width=40)
    tensors["preprocess.image.photo420-40x48"] = init[0]
    init = processor.preprocess(load_image(os.path.join(OUT_DIR, "photo420.jpg")), height=24, width=32)
    for name in ("mask-soft", "mask-hard"):
        mask = masker.preprocess(load_image(os.path.join(OUT_DIR, name + ".png")), height=24, width=32)
        tensors[f"preprocess.mask.{name}"] = mask[0]
        tensors[f"preprocess.mask_latent.{name}"] = torch.nn.functional.interpolate(mask, size=(3, 4))[0]
        tensors[f"preprocess.masked_image.{name}"] = (init * (mask < 0.5))[0]
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, OUT)
    total = sum(os.path.getsize(os.path.join(OUT_DIR, n)) for n in os.listdir(OUT_DIR))
    print(f"wrote {len(os.listdir(OUT_DIR))} files to {OUT_DIR} ({total} bytes)")


if __name__ == "__main__":
    main()
