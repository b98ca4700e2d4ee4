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

# Logs in like a browser with TOKEN and prints the session cookie
# ("sms_audit_session=..."), using WORK for its files.
login_cookie() { # address token work
  curl -s -c "$3/jar" "$1/login" >"$3/login.html"
  local csrf
  csrf=$(grep -o 'name="csrf_token" value="[^"]*"' "$3/login.html" | sed 's/.*value="//;s/"$//')
  curl -s -b "$3/jar" -c "$3/jar" --data-urlencode "token=$2" --data "csrf_token=$csrf&next=/" "$1/login" >/dev/null
  echo "sms_audit_session=$(awk '$6 == "sms_audit_session" {print $7}' "$3/jar")"
}
