# Shared by the benchmark scripts (sourced, not run).

# The address a started process logged ("listening on http://ADDR"), read from
# its log file; waits up to 10 s.
address_of() { # log file
  for _ in $(seq 1 100); do
    a=$(grep -o "listening on http://[0-9.:]*" "$1" | head -1 | sed 's/.*listening on //') || true
    [ -n "$a" ] && { echo "$a"; return; }
    sleep 0.1
  done
  cat "$1" >&2; exit 1
}
