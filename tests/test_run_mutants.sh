#!/usr/bin/env bash
# Damaged output files, as a mutation loop over both schema versions: a small finished output
# (4 items with latents, the tiny model) written in schema 1 (`run --output-schema 1`) and in
# schema 3, each with 1 to 10 bits flipped at random places (deterministic: a fixed-seed LCG;
# every other mutant in its first 8 KiB, where the file's metadata is). On each mutant:
# `sdbatch inspect --verify` (the summary, then every item and prompt read back), and when the
# file opens, `sdbatch export --png --grid` and (every fourth, and every schema 3 mutant whose
# damage is in chunks only) a resuming `sdbatch run`.
# What may happen: a clear error, a report of damaged items, or a normal run. What must not: a
# crash (a signal), a sanitizer report, a hang (a time limit per command), a failure without a
# message. Schema 3 mutants must also have their damage found: every item whose image or latents
# chunk a flip changed is reported by --verify (or the whole file refused), and when only chunks
# were hit, the resume renders those items again, after which the file verifies and equals the
# undamaged one item for item. Schema 1 carries no checksums: most damage still reads as data
# (docs/output.md says what each schema guarantees); there the test proves the absence of
# crashes and hangs, and counts the outcomes.
# Usage: test_run_mutants.sh SDBATCH RUN_CHECK SOURCE_DIR [MPIEXEC]
#   SD_MUTANTS: mutants per schema version (default 128: 256 in all)
SDBATCH=$1 RUN_CHECK=$2 SOURCE_DIR=$3 MPIEXEC=${4:-}
source "$SOURCE_DIR/tests/run_test_lib.sh"

mutants=${SD_MUTANTS:-128}
# damaged sizes make libhdf5 ask malloc for terabytes, which it handles as an error when malloc
# says no; a sanitizer build must say no too rather than abort (what a normal build does)
export ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}allocator_may_return_null=1"
limit=$((60 * ${SD_TEST_TIME_SCALE:-1}))

job_lines=('prompts: ["a lighthouse", "a red cube"]' 'seeds: [1, 2]' 'steps: 2' 'save_latents: true')
for version in 1 3; do
  write_job "job-v$version.yaml" "good-v$version.h5" "${job_lines[@]}"
  expect_status 0 "the schema $version output to damage" launch 1 run --quiet \
    --output-schema "$version" "job-v$version.yaml"
done
# the resumes: the same job (the output's name is not part of the job hash) on mutant.h5
write_job resume.yaml mutant.h5 "${job_lines[@]}"

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
# try KIND M CMD...: runs CMD (the KIND command on mutant M) under the time limit into KIND.log
# and counts the outcome in $outcome (ok, damage found, error); a signal, a hang, a sanitizer
# report or a failure without a message fails the test (outcome "bad")
try() {
  local kind=$1 what="schema $version mutant $2: $1" log=$1.log
  shift 2
  local got=0
  outcome=bad
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
    outcome=ok
  elif [ "$kind" = verify ] && [ "$got" -eq 1 ] && grep -q "^verified .* damaged" "$log"; then
    outcome="damage found"
  elif ! grep -q "error:" "$log"; then
    fail "$what: exit status $got without an error message"
    head -20 "$log" >&2
  else
    outcome=error
    grep -m1 "error:" "$log" | cut -c1-160 >>"errors-v$version.txt"
  fi
  outcomes[v$version $kind $outcome]=$((${outcomes[v$version $kind $outcome]:-0} + 1))
}

# hit_items GOOD MUTANT: the items whose image or latents chunk differs between the two files
# (chunk places from the sound file's index), one per line
hit_items() {
  { cmp -l "$1" "$2" || true; } | awk -v chunks="$chunks" '
    BEGIN { n = split(chunks, line, "\n")
            for (k = 1; k <= n; k++) { split(line[k], f, " "); item[k] = f[2]; lo[k] = f[3]; hi[k] = f[4] } }
    { offset = $1 - 1
      for (k = 1; k <= n; k++) if (offset >= lo[k] && offset <= hi[k]) print item[k] }' | sort -u
}

# outside_chunks GOOD MUTANT: how many changed bytes lie outside every image and latents chunk
outside_chunks() {
  { cmp -l "$1" "$2" || true; } | awk -v chunks="$chunks" '
    BEGIN { n = split(chunks, line, "\n")
            for (k = 1; k <= n; k++) { split(line[k], f, " "); lo[k] = f[3]; hi[k] = f[4] } }
    { offset = $1 - 1; inside = 0
      for (k = 1; k <= n && !inside; k++) if (offset >= lo[k] && offset <= hi[k]) inside = 1
      if (!inside) outside++ }
    END { print outside + 0 }'
}

chunk_mutants=0 healed=0
for version in 1 3; do
  good=good-v$version.h5
  size=$(stat -c %s "$good")
  chunks=$("$RUN_CHECK" chunks "$good")
  for ((m = 0; m < mutants; m++)); do
    cp "$good" mutant.h5
    next
    flips=$((1 + random % 10))
    for ((f = 0; f < flips; f++)); do
      # odd mutants: damage in the first 8 KiB, where the superblock, the root group's header
      # and its attributes are (the rest of the file is mostly image and latent chunks)
      span=$size
      [ $((m % 2)) -eq 1 ] && [ "$size" -gt 8192 ] && span=8192
      next
      offset=$((random % span))
      next
      flip mutant.h5 "$offset" $((random % 8))
    done
    hit=""
    only_chunks=false
    if [ "$version" -ge 2 ]; then
      hit=$(hit_items "$good" mutant.h5 | tr '\n' ' ')
      [ -n "$hit" ] && [ "$(outside_chunks "$good" mutant.h5)" -eq 0 ] && only_chunks=true
    fi

    try verify "$m" "$SDBATCH" inspect --verify mutant.h5
    [ "$outcome" = bad ] && continue
    # a schema 3 chunk changed: reported item by item, or the whole file refused
    if [ "$outcome" != error ]; then
      for item in $hit; do
        grep -q "^  item $item (" verify.log ||
          fail "schema 3 mutant $m: item $item's chunk changed but --verify did not report it"
      done
      [ -n "$hit" ] && [ "$outcome" = ok ] &&
        fail "schema 3 mutant $m: chunks of items $hit changed but --verify passed the file"
    fi
    # a file that does not open is refused by export and run in the same reader function
    grep -q "^file  " verify.log || continue

    rm -rf png
    try export "$m" "$SDBATCH" export mutant.h5 --png png --grid png/sheet.png
    # a resume (which loads the model) on every fourth mutant, and on every one whose damage the
    # resume must repair
    $only_chunks || [ $((m % 4)) -eq 0 ] || continue
    try resume "$m" "$SDBATCH" run --quiet resume.yaml
    if $only_chunks; then
      # only chunks were hit: the resume renders those items again, which restores the file
      chunk_mutants=$((chunk_mutants + 1))
      if [ "$outcome" = ok ] && "$SDBATCH" inspect --verify mutant.h5 >after.log 2>&1 &&
        "$RUN_CHECK" same "$good" mutant.h5 >/dev/null 2>&1; then
        healed=$((healed + 1))
      else
        fail "schema 3 mutant $m: chunks of items $hit damaged; after the resume (outcome" \
          "$outcome) the file does not verify or differs from the undamaged one"
      fi
    fi
  done
done

for key in "${!outcomes[@]}"; do
  note "$key: ${outcomes[$key]}"
done | sort
note "schema 3 mutants damaged in image or latents chunks only: $chunk_mutants, all reported;" \
  "$healed restored by a resume"
[ "$chunk_mutants" -gt 0 ] || fail "no schema 3 mutant hit only chunks: the check above was empty"
for version in 1 3; do
  note "schema $version: $mutants mutants; the errors given, most frequent first:"
  [ -f "errors-v$version.txt" ] && sort "errors-v$version.txt" | uniq -c | sort -rn | head -8
done
finish
