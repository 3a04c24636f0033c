#!/usr/bin/env bash
# Jobs with input images (docs/jobs.md, "Inputs"): image-to-image over images x strengths x seeds
# on 1 and 3 ranks gives the same file (in a rank group of 2: row bands within 1 level, CFG halves
# bit for bit), each item equal to `sdbatch render` with its inputs; the
# images given as a list, a folder or a list file; inpainting with one mask for all, depth-to-image
# with depth maps or a depth estimator given apart (depth_estimator, render --depth-estimator) and
# the x4 upscaler with a noise-level sweep, each item equal to render; the
# output records each item's input, strength and noise level with the input's SHA-256, and a
# resume refuses a changed input; an input of another size fails its items with the reason; the
# settings that do not apply to a pipeline are refused before the output exists.
# Usage: test_run_inputs.sh SDBATCH RUN_CHECK SOURCE_DIR [MPIEXEC]
SDBATCH=$1 RUN_CHECK=$2 SOURCE_DIR=$3 MPIEXEC=${4:-}
source "$SOURCE_DIR/tests/run_test_lib.sh"

FIX=$SOURCE_DIR/tests/fixtures
mkdir -p in
cp "$FIX/img2img/init.png" in/a.png
cp "$FIX/img2img/init.jpg" in/b.jpg # both 70x45: 64x40 images

# job FILE OUTPUT MODEL [YAML lines...]: a job without the fixture's 64x64 size
job() {
  local file=$1 output=$2 model=$3
  shift 3
  {
    echo "model: $model"
    echo "output: $output"
    for line in "$@"; do echo "$line"; done
  } >"$file"
}

# image-to-image: 2 strengths x 2 images x 1 prompt x 2 seeds = 8 items; index order strength,
# image, prompt, seed
i2i=('prompts: "a red cube"' 'seeds: [3, 4]' 'steps: 4' 'scheduler: ddim' 'strength: [0.5, 1.0]'
     'guidance_scale: 7.5' 'save_latents: true')
job list.yaml list.h5 "$FIX/tiny-sd1" 'images: [in/a.png, in/b.jpg]' "${i2i[@]}" 'batch_size: 1'
expect_status 0 "img2img job, 1 rank" launch 1 run --quiet list.yaml
check "8 items done" "$RUN_CHECK" counts list.h5 8 0 0
ranks=(1)
have_mpi && ranks+=(3)
for n in "${ranks[@]}"; do
  job "r$n.yaml" "r$n.h5" "$FIX/tiny-sd1" 'images: [in/a.png, in/b.jpg]' "${i2i[@]}" 'batch_size: 2'
  expect_status 0 "img2img job, $n ranks, batches of 2" launch "$n" run --quiet "r$n.yaml"
  check "$n ranks equal 1 rank" "$RUN_CHECK" same list.h5 "r$n.h5"
done

# the same job in rank groups (3 ranks: rank 0 and one group of 2): row bands within 1 level of
# one rank, >= 99.9 % exact (test_spatial_images' bound); CFG halves bit for bit
if have_mpi; then
  job g2.yaml g2.h5 "$FIX/tiny-sd1" 'images: [in/a.png, in/b.jpg]' "${i2i[@]}" 'batch_size: 2' \
    'ranks_per_image: 2'
  expect_status 0 "img2img job, ranks_per_image 2 on 3 ranks" launch 3 run g2.yaml 2>g2.log
  check "one group of 2 bands" grep -q "group of ranks 1-2: 2 bands" g2.log
  check "2 bands within 1 level of one rank, >= 99.9 % exact" "$RUN_CHECK" close list.h5 g2.h5 1 99.9
  job cfg.yaml cfg.h5 "$FIX/tiny-sd1" 'images: [in/a.png, in/b.jpg]' "${i2i[@]}" 'batch_size: 2' \
    'ranks_per_image: 2' 'cfg_parallel: true'
  expect_status 0 "img2img job in CFG halves on 3 ranks" launch 3 run --quiet cfg.yaml
  check "CFG halves: bit for bit one rank" "$RUN_CHECK" same list.h5 cfg.h5
fi

render() { "$SDBATCH" render --prompt "a red cube" --steps 4 --device cpu --quiet "$@"; }
# item 0: strength 0.5, a.png, seed 3; item 7: strength 1.0, b.jpg, seed 4
render --model "$FIX/tiny-sd1" --init-image in/a.png --strength 0.5 --seed 3 --scheduler ddim \
  --guidance-scale 7.5 --out i0.png
render --model "$FIX/tiny-sd1" --init-image in/b.jpg --strength 1.0 --seed 4 --scheduler ddim \
  --guidance-scale 7.5 --out i7.png
check "item 0 equals sdbatch render" "$RUN_CHECK" png list.h5 0 i0.png
if have_mpi; then
  # sdbatch render of an init image under mpirun: 2 ranks in CFG halves, bit for bit one rank
  launch 2 render --prompt "a red cube" --steps 4 --device cpu --quiet --model "$FIX/tiny-sd1" \
    --init-image in/a.png --strength 0.5 --seed 3 --scheduler ddim --guidance-scale 7.5 \
    --cfg-parallel --out cfg0.png
  check "render --init-image in CFG halves on 2 ranks equals one rank" cmp i0.png cfg0.png
fi
check "item 7 equals sdbatch render" "$RUN_CHECK" png list.h5 7 i7.png
sha_a=$(sha256sum in/a.png | cut -d' ' -f1)
check "item 0 records input 0, strength 0.5, a.png and its SHA-256" \
  grep -q "^input 0 strength 0.5 noise_level -1 image in/a.png sha256 $sha_a mask - depth_map -$" \
  <("$RUN_CHECK" input list.h5 0)
check "item 7 records input 1, strength 1" grep -q "^input 1 strength 1 noise_level -1 image in/b.jpg" \
  <("$RUN_CHECK" input list.h5 7)

# inspect and the contact sheets show the inputs and the strength sweep
"$SDBATCH" inspect list.h5 >inspect.txt
check "inspect counts the inputs" grep -q "^inputs          2 (input images with their SHA-256; the first: in/a.png)" inspect.txt
check "inspect lists the strengths" grep -q "^  strength        2 values: 0.5, 1" inspect.txt
"$SDBATCH" export list.h5 --grid sheet.png >sheets.txt
check "one sheet per input, columns over strength" \
  grep -q "sheet-002.png (.*): input 1: in/b.jpg | prompt 0: a red cube | .* | rows: seed, columns: strength" sheets.txt
"$SDBATCH" export list.h5 --grid by-input.png --rows input --cols strength >sheets.txt
check "rows over the inputs" grep -q "by-input-001.png .*rows: input, columns: strength" sheets.txt
(cd / && "$SDBATCH" export "$WORK/list.h5" --grid "$WORK/moved.png" >/dev/null 2>"$WORK/moved.log")
check "inputs not found from elsewhere are said once" \
  test "$(grep -c 'its cell says "no input"' moved.log)" -eq 1

# the same images as a folder and as a list file: the same pixels
mkdir -p folder && cp in/a.png in/b.jpg folder/ && touch folder/notes.txt folder/.hidden.png
printf 'a.png\n\nb.jpg\n' >in/list.txt
job folder.yaml folder.h5 "$FIX/tiny-sd1" 'images: folder' "${i2i[@]}"
job listfile.yaml listfile.h5 "$FIX/tiny-sd1" 'images: in/list.txt' "${i2i[@]}"
expect_status 0 "images from a folder" launch 1 run --quiet folder.yaml
expect_status 0 "images from a list file" launch 1 run --quiet listfile.yaml
check "folder item 7 equals render" "$RUN_CHECK" png folder.h5 7 i7.png
check "list file item 0 equals render" "$RUN_CHECK" png listfile.h5 0 i0.png
check "a folder's files are recorded relative to the job" grep -q "image folder/b.jpg" \
  <("$RUN_CHECK" input folder.h5 7)
check "a list file's paths are relative to it" grep -q "image in/a.png" \
  <("$RUN_CHECK" input listfile.h5 0)

# a resume after an input changed is refused, and the file is left as it was
cp list.h5 before.h5
cp "$FIX/img2img/init16.png" in/a.png
expect_status 1 "resume with a changed input" launch 1 run list.yaml 2>changed.log
check "the changed input is named" grep -q "input 0's image 'in/a.png' has changed since" changed.log
check "the file is untouched" cmp -s list.h5 before.h5
cp "$FIX/img2img/init.png" in/a.png
expect_status 0 "resume with the input restored" launch 1 run --quiet list.yaml

# an input of another size: its items fail with the reason, the others are done
cp "$FIX/images/photo444.jpg" in/small.jpg # 37x29: 32x24
job mixed.yaml mixed.h5 "$FIX/tiny-sd1" 'images: [in/a.png, in/small.jpg]' 'prompts: "x"' \
  'seeds: 1' 'steps: 2' 'strength: 0.5'
expect_status 3 "an input of another size" launch 1 run mixed.yaml 2>mixed.log
check "its item failed, the other done" "$RUN_CHECK" counts mixed.h5 1 1 0
check "the reason names the file and both sizes" \
  grep -q "in/small.jpg' (37x29) gives a 32x24 image; this job's images are 64x40" mixed.log

# inpainting with one mask for every image and the job's size (the pipeline resizes to it)
job inpaint.yaml inpaint.h5 "$FIX/tiny-sd1-inpaint" 'images: [in/a.png, in/b.jpg]' \
  "masks: $FIX/img2img/mask-hard.png" 'width: 64' 'height: 64' 'prompts: "a red cube"' \
  'seeds: 5' 'steps: 3' 'scheduler: euler'
expect_status 0 "inpainting job" launch 1 run --quiet inpaint.yaml
render --model "$FIX/tiny-sd1-inpaint" --init-image in/b.jpg --mask "$FIX/img2img/mask-hard.png" \
  --width 64 --height 64 --seed 5 --steps 3 --scheduler euler --out inpaint1.png
check "inpainting item 1 equals render" "$RUN_CHECK" png inpaint.h5 1 inpaint1.png
check "the mask is recorded" grep -q "strength 1 noise_level -1 image in/b.jpg .* mask $FIX/img2img/mask-hard.png" \
  <("$RUN_CHECK" input inpaint.h5 1)

# depth-to-image with a depth map per image
job depth.yaml depth.h5 "$FIX/tiny-sd2-depth" 'images: [in/a.png, in/b.jpg]' \
  "depth_maps: [$FIX/depth2img/depth-a.npy, $FIX/depth2img/depth-c16.png]" 'prompts: "a cube"' \
  'seeds: 2' 'steps: 3' 'strength: 0.75'
expect_status 0 "depth-to-image job" launch 1 run --quiet depth.yaml
render --model "$FIX/tiny-sd2-depth" --prompt "a cube" --init-image in/b.jpg \
  --depth-map "$FIX/depth2img/depth-c16.png" --strength 0.75 --seed 2 --steps 3 --out depth1.png
check "depth item 1 equals render" "$RUN_CHECK" png depth.h5 1 depth1.png

# a depth estimator given apart from the model (what a single-file depth checkpoint needs): a
# transformers DPT folder. The hybrid one is the model's own estimator (the same pixels as
# without it); the ViT one is another, and the job's item equals render with it
mkdir -p dpt-hybrid dpt-vit
cp "$FIX/depth/tiny-dpt-hybrid/"* dpt-hybrid/
cp "$FIX/depth/tiny-dpt-vit/"* dpt-vit/
for d in dpt-hybrid dpt-vit; do cp "$FIX/tiny-sd2-depth/feature_extractor/preprocessor_config.json" "$d/"; done
depth_render=(--model "$FIX/tiny-sd2-depth" --prompt "a cube" --init-image in/a.png --strength 0.75
              --seed 2 --steps 3)
render "${depth_render[@]}" --out own.png
render "${depth_render[@]}" --depth-estimator dpt-vit --out vit.png
job dest.yaml dest.h5 "$FIX/tiny-sd2-depth" 'images: in/a.png' 'depth_estimator: dpt-vit' \
  'prompts: "a cube"' 'seeds: 2' 'steps: 3' 'strength: 0.75'
expect_status 0 "depth job with depth_estimator" launch 1 run --quiet dest.yaml
check "depth_estimator: the item equals render --depth-estimator" "$RUN_CHECK" png dest.h5 0 vit.png
check "depth_estimator: another estimator gives another image" \
  bash -c "! '$RUN_CHECK' png dest.h5 0 own.png >/dev/null 2>&1"
job desth.yaml desth.h5 "$FIX/tiny-sd2-depth" 'images: in/a.png' 'depth_estimator: dpt-hybrid' \
  'prompts: "a cube"' 'seeds: 2' 'steps: 3' 'strength: 0.75'
expect_status 0 "depth job with the model's own estimator given apart" launch 1 run --quiet desth.yaml
check "the model's own estimator given apart: the same pixels" "$RUN_CHECK" png desth.h5 0 own.png
for bad in "/nonexistent:not a folder" "$FIX/tiny-sd1:neither a depth_estimator/ folder nor a DPT folder"; do
  expect_status 1 "render --depth-estimator ${bad%%:*}" render "${depth_render[@]}" \
    --depth-estimator "${bad%%:*}" --out bad.png 2>bad.log
  check "render --depth-estimator ${bad%%:*}: says why" grep -q "${bad#*:}" bad.log
done
expect_status 1 "render --depth-estimator on a model that is not a depth model" \
  render --model "$FIX/tiny-sd1" --prompt x --init-image in/a.png --depth-estimator dpt-vit \
  --out bad.png 2>bad.log
check "not a depth model: says why" grep -q "not a depth-to-image model" bad.log
check "no image written for refused renders" test ! -e bad.png

# the depth estimator's input preprocessed as DPTImageProcessor's torchvision backend does
# (dpt_preprocess / --dpt-preprocess): the job's item equals render, and differs from the default
render "${depth_render[@]}" --dpt-preprocess torchvision --out tv.png
check "render --dpt-preprocess torchvision records it" grep -aq "DPT preprocess: torchvision" tv.png
check "render without --dpt-preprocess records nothing of it" \
  bash -c "! grep -aq 'DPT preprocess' own.png"
job dtv.yaml dtv.h5 "$FIX/tiny-sd2-depth" 'images: in/a.png' 'dpt_preprocess: torchvision' \
  'prompts: "a cube"' 'seeds: 2' 'steps: 3' 'strength: 0.75'
expect_status 0 "depth job with dpt_preprocess: torchvision" launch 1 run --quiet dtv.yaml
check "dpt_preprocess: the item equals render --dpt-preprocess torchvision" \
  "$RUN_CHECK" png dtv.h5 0 tv.png
check "dpt_preprocess: torchvision gives another image than pil" \
  bash -c "! '$RUN_CHECK' png dtv.h5 0 own.png >/dev/null 2>&1"
job dpil.yaml dpil.h5 "$FIX/tiny-sd2-depth" 'images: in/a.png' 'dpt_preprocess: pil' \
  'prompts: "a cube"' 'seeds: 2' 'steps: 3' 'strength: 0.75'
expect_status 0 "depth job with dpt_preprocess: pil" launch 1 run --quiet dpil.yaml
check "dpt_preprocess: pil is the default's pixels" "$RUN_CHECK" png dpil.h5 0 own.png

# the x4 upscaler over a noise-level sweep
job up.yaml up.h5 "$FIX/tiny-upscaler" "images: $FIX/upscale/low-16x12.png" 'prompts: "a cube"' \
  'seeds: 1' 'steps: 3' 'guidance_scale: 9' 'noise_level: [0, 100]'
expect_status 0 "upscaler job" launch 1 run --quiet up.yaml
render --model "$FIX/tiny-upscaler" --prompt "a cube" --init-image "$FIX/upscale/low-16x12.png" \
  --noise-level 100 --guidance-scale 9 --seed 1 --steps 3 --out up1.png
check "upscaler item 1 equals render" "$RUN_CHECK" png up.h5 1 up1.png
check "the noise level is recorded" grep -q "^input 0 strength 1 noise_level 100 " \
  <("$RUN_CHECK" input up.h5 1)

# settings that do not apply: refused before the output exists
refused() {
  local what=$1 message=$2
  shift 2
  job bad.yaml bad.h5 "$@"
  expect_status 1 "$what" launch 1 run bad.yaml 2>bad.log
  check "$what: says why" grep -q "$message" bad.log
  check "$what: no output" test ! -e bad.h5
}
refused "depth_estimator for a model that is not a depth model" \
  "depth_estimator: the model .* is not a depth-to-image model" "$FIX/tiny-sd1" \
  'images: in/a.png' 'prompts: "x"' 'seeds: 1' 'depth_estimator: dpt-vit'
refused "depth_estimator with depth_maps" "depth_estimator and depth_maps: give one" \
  "$FIX/tiny-sd2-depth" 'images: in/a.png' "depth_maps: $FIX/depth2img/depth-a.npy" \
  'prompts: "x"' 'seeds: 1' 'depth_estimator: dpt-vit'
refused "dpt_preprocess for a model that is not a depth model" \
  "dpt_preprocess: the model .* is not a depth-to-image model" "$FIX/tiny-sd1" \
  'images: in/a.png' 'prompts: "x"' 'seeds: 1' 'dpt_preprocess: torchvision'
refused "dpt_preprocess with depth_maps" "dpt_preprocess is for the depth estimator" \
  "$FIX/tiny-sd2-depth" 'images: in/a.png' "depth_maps: $FIX/depth2img/depth-a.npy" \
  'prompts: "x"' 'seeds: 1' 'dpt_preprocess: torchvision'
refused "depth_estimator that is not a folder" "depth_estimator: cannot access" \
  "$FIX/tiny-sd2-depth" 'images: in/a.png' 'prompts: "x"' 'seeds: 1' 'depth_estimator: nothere'
refused "noise_level for img2img" "noise_level is for x4 upscalers" "$FIX/tiny-sd1" \
  'images: in/a.png' 'prompts: "x"' 'seeds: 1' 'noise_level: 20'
refused "strength for the upscaler" "strength: the x4 upscaler runs the whole schedule" \
  "$FIX/tiny-upscaler" "images: $FIX/upscale/low-16x12.png" 'prompts: "x"' 'seeds: 1' \
  'strength: 0.5'
refused "noise_level above max_noise_level" "noise_level 351: this upscaler takes 0 to 350" \
  "$FIX/tiny-upscaler" "images: $FIX/upscale/low-16x12.png" 'prompts: "x"' 'seeds: 1' \
  'noise_level: 351'
refused "width for img2img" "width and height: img2img renders at each input's own size" \
  "$FIX/tiny-sd1" 'images: in/a.png' 'prompts: "x"' 'seeds: 1' 'width: 64'
refused "an inpainting model without masks" "this is an inpainting model" \
  "$FIX/tiny-sd1-inpaint" 'images: in/a.png' 'prompts: "x"' 'seeds: 1'
refused "a missing input" "images\[1\]: cannot access '.*in/missing.png'" "$FIX/tiny-sd1" \
  'images: [in/a.png, in/missing.png]' 'prompts: "x"' 'seeds: 1'
finish
