#!/usr/bin/env bash
# Damaged output files, as a mutation loop: a small finished output (4 items with latents, the
# tiny model) with 1 to 10 bits flipped at random places (deterministic: a fixed-seed LCG), then
# (every other mutant in its first 8 KiB, where the file's metadata is) then `sdbatch inspect`, `sdbatch export --png --grid` and, on every fourth mutant, a resuming
# `sdbatch run` on each. What may happen: a clear error or a normal run; what must not: a crash
# (a signal), a sanitizer report, a hang (a time limit per command). Schema 1 files carry no
# checksums, so most damage still reads as data (docs/output.md says what each schema
# guarantees); this test proves the absence of crashes and hangs, and counts the outcomes.
# Usage: test_run_mutants.sh SDBATCH RUN_CHECK SOURCE_DIR [MPIEXEC]
#   SD_MUTANTS: how many mutants (default 100)
SDBATCH=$1 RUN_CHECK=$2 SOURCE_DIR=$3 MPIEXEC=${4:-}
source "$SOURCE_DIR/tests/run_test_lib.sh"

mutants=${SD_MUTANTS:-100}
# damaged sizes make libhdf5 ask malloc for terabytes, which it handles as an error when malloc
# says no; a sanitizer build must say no too rather than abort (what a normal build does)
export ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}allocator_may_return_null=1"
limit=$((60 * ${SD_TEST_TIME_SCALE:-1}))

write_job job.yaml good.h5 'prompts: ["a lighthouse", "a red cube"]' 'seeds: [1, 2]' 'steps: 2' \
  'save_latents: true'
expect_status 0 "the output to damage" launch 1 run --quiet job.yaml
size=$(stat -c %s good.h5)

# a 31-bit LCG (glibc's constants): the same mutants on every machine
state=1234
# next: the next value in $random (not in a subshell, which would not advance the state)
next() {
  state=$(((state * 1103515245 + 12345) % 2147483648))
  random=$((state >> 8))
}

# flip FILE OFFSET BIT: one bit of one byte, in place
flip() {
  local byte
  byte=$(od -An -tu1 -j"$2" -N1 "$1" | tr -d ' ')
  printf "\\$(printf '%03o' $((byte ^ (1 << $3))))" |
    dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

declare -A outcomes=()
# try KIND M CMD...: runs CMD (the KIND command on mutant M) under the time limit and counts the
# outcome; a signal, a hang, a sanitizer report or a silent failure fails the test
try() {
  local kind=$1 what="mutant $2: $1" log=$1.log
  shift 2
  local got=0
  timeout "$limit" "$@" >"$log" 2>&1 || got=$?
  if [ "$got" -eq 124 ]; then
    fail "$what: no answer within $limit s"
  elif [ "$got" -gt 128 ]; then
    fail "$what: killed by signal $((got - 128))"
  elif grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$log" &&
    ! grep -q "damaged schema 1 file: reading its variable-length strings" "$log"; then
    # (the exception: libhdf5 crashing in the child process that probes a schema 1 file's
    # strings, which a sanitizer build reports before sdbatch refuses the file)
    fail "$what: sanitizer report"
    head -30 "$log" >&2
  elif [ "$got" -eq 0 ]; then
    outcomes[$kind ok]=$((${outcomes[$kind ok]:-0} + 1))
    return
  elif ! grep -q "error:" "$log"; then
    fail "$what: exit status $got without an error message"
  else
    outcomes[$kind error]=$((${outcomes[$kind error]:-0} + 1))
    grep -m1 "error:" "$log" | cut -c1-160 >>errors.txt
    return
  fi
  head -20 "$log" >&2
}

for ((m = 0; m < mutants; m++)); do
  cp good.h5 mutant.h5
  next
  flips=$((1 + random % 10))
  for ((f = 0; f < flips; f++)); do
    # odd mutants: damage in the first 8 KiB, where the superblock, the root group's header and
    # its attributes are (the rest of the file is mostly image and latent chunks)
    span=$size
    [ $((m % 2)) -eq 1 ] && [ "$size" -gt 8192 ] && span=8192
    next
    offset=$((random % span))
    next
    flip mutant.h5 "$offset" $((random % 8))
  done
  rm -rf png
  try inspect "$m" "$SDBATCH" inspect mutant.h5
  try export "$m" "$SDBATCH" export mutant.h5 --png png --grid png/sheet.png
  if [ $((m % 4)) -eq 0 ]; then
    sed "s|^output: .*|output: mutant.h5|" job.yaml >resume.yaml
    try resume "$m" "$SDBATCH" run --quiet resume.yaml
  fi
done

for key in "${!outcomes[@]}"; do
  note "$key: ${outcomes[$key]}"
done | sort
note "$mutants mutants of a $size-byte output; the errors given, most frequent first:"
[ -f errors.txt ] && sort errors.txt | uniq -c | sort -rn | head -12
finish
