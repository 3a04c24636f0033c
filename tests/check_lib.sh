# The check counting of the shell tests, sourced by run_test_lib.sh and train_test_lib.sh:
# note and fail print a line each (fail counts it), finish exits 1 when a check failed.
FAILURES=0

note() { echo "test: $*"; }
fail() {
  echo "test: FAIL: $*" >&2
  FAILURES=$((FAILURES + 1))
}

# finish: exit status 1 when a check failed.
finish() {
  if [ "$FAILURES" -ne 0 ]; then
    echo "test: $FAILURES check(s) failed" >&2
    exit 1
  fi
  echo "test: all checks passed"
}
