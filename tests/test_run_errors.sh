#!/usr/bin/env bash
# sdbatch run refuses what it must, before any rank starts work, with one clear message from
# rank 0 and a non-zero status on every rank: a bad job file, a missing model, the output file of
# another job (left untouched), a file that is not an output file, a null-model file for a real
# run; and usage errors (status 2).
# Usage: test_run_errors.sh SDBATCH RUN_CHECK SOURCE_DIR [MPIEXEC]
SDBATCH=$1 RUN_CHECK=$2 SOURCE_DIR=$3 MPIEXEC=${4:-}
source "$SOURCE_DIR/tests/run_test_lib.sh"

n=1
have_mpi && n=3

# errors: how many "error:" lines a log has (rank 0 reports once for all ranks)
errors() { grep -c "error:" "$1" || true; }

# one message naming the file, line and column
expect_status 1 "bad job file" launch "$n" run "$SOURCE_DIR/tests/fixtures/jobs/bad_steps_string.yaml" \
  2>bad.log
check "bad job: one error at its line" grep -q "bad_steps_string.yaml:7:8: steps:" bad.log
check "bad job: reported once" test "$(errors bad.log)" -eq 1

write_job nomodel.yaml nomodel.h5 'prompts: "x"' 'seeds: 1'
sed -i "s|^model: .*|model: $WORK/no-such-model|" nomodel.yaml
expect_status 1 "missing model" launch "$n" run nomodel.yaml 2>nomodel.log
check "missing model: named" grep -q "no-such-model" nomodel.log
check "missing model: reported once" test "$(errors nomodel.log)" -eq 1
check "missing model: no output file" test ! -e nomodel.h5

# job a renders into out.h5; job b (other seeds) names the same output: refused, file untouched
write_job a.yaml out.h5 'prompts: "a lighthouse"' 'seeds: [1, 2]' 'steps: 2'
write_job b.yaml out.h5 'prompts: "a lighthouse"' 'seeds: [1, 3]' 'steps: 2'
expect_status 0 "job a" launch "$n" run --quiet a.yaml
cp out.h5 before.h5
expect_status 1 "job b on job a's output" launch "$n" run b.yaml 2>other.log
check "another job: clear error" grep -q "out.h5.*another job" other.log
check "another job: reported once" test "$(errors other.log)" -eq 1
check "another job: file untouched" cmp -s out.h5 before.h5

# a job too big for the disk: refused with both sizes before any file exists
write_job huge.yaml huge.h5 'prompts: "x"' 'seeds: {start: 0, count: 9223372036854775807}'
expect_status 1 "a job too big for the disk" launch "$n" run huge.yaml 2>huge.log
check "too big: both sizes named" grep -q "will take about .* EiB, and its file system has .* free" \
  huge.log
check "too big: reported once" test "$(errors huge.log)" -eq 1
check "too big: no file left" test -z "$(ls huge.h5* 2>/dev/null)"

# a file that is not an output file is refused and left as it was
echo "not an HDF5 file" >text.h5
write_job text.yaml text.h5 'prompts: "x"' 'seeds: 1' 'steps: 1'
expect_status 1 "output path holds another file" launch "$n" run text.yaml 2>text.log
check "other file: untouched" grep -qx "not an HDF5 file" text.h5

# null-model images never count as real renders, nor the other way round
write_job null.yaml null.h5 'prompts: "x"' 'seeds: [1, 2]' 'steps: 1'
expect_status 0 "null model run" launch "$n" run --quiet --null-model null.yaml
expect_status 1 "real run on a null-model file" launch "$n" run --quiet null.yaml

# usage errors: status 2 on every rank, the message once
expect_status 2 "no job file" launch "$n" run 2>usage.log
check "usage: reported once" test "$(grep -c "a job file is required" usage.log)" -eq 1
expect_status 2 "bad --threads" launch "$n" run --threads 0 a.yaml
expect_status 2 "bad --device" launch "$n" run --device tpu a.yaml
expect_status 0 "--help" launch 1 run --help >/dev/null

finish
