#!/usr/bin/env bash
# The quick start: installs what is missing, builds, renders one image with the shapes demo model
# that sdbatch trained itself (models/shapes-demo, docs/demo-model.md), then runs the demo batch
# job (jobs/examples/demo.yaml: 8 images) on 3 MPI ranks into out/demo.h5 and writes its contact
# sheets. See README.md for real checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
mkdir -p out
build/sdbatch render --model models/shapes-demo --prompt "a red circle" --seed 42 --steps 20 \
  --guidance-scale 7.5 --width 64 --height 64 --out out/demo.png
echo "quickstart: wrote $(pwd)/out/demo.png (a red circle, 64 x 64)"

# The batch job: rank 0 coordinates and writes out/demo.h5, ranks 1 and 2 render. Running it
# again resumes (items already done are skipped).
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
mpirun -n 3 --oversubscribe build/sdbatch run jobs/examples/demo.yaml
build/sdbatch inspect out/demo.h5
rm -f out/demo-grid*.png
build/sdbatch export out/demo.h5 --grid out/demo-grid.png
echo "quickstart: contact sheets (rows: seeds, columns: guidance scales, one per prompt):"
for sheet in out/demo-grid*.png; do
  echo "  $(pwd)/$sheet"
done
