# Helpers the bench/run-* scripts share (sourced, not run). They expect to
# run from the top of the checkout (the scripts cd there first).

# Configures build/release (Release, no tests; extra cmake arguments after
# --) and builds the targets named.
#   bench_build referrald referralctl [-- -DREFERRALD_BENCH=ON]
bench_build() {
  local targets=() cmake_args=()
  while (($#)); do
    if [[ $1 == -- ]]; then shift; cmake_args=("$@"); break; fi
    targets+=("$1"); shift
  done
  cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DREFERRALD_TESTS=OFF "${cmake_args[@]}" >/dev/null
  ninja -C build/release -j"${JOBS:-2}" "${targets[@]}" >/dev/null
}

# A TCP port on 127.0.0.1 that nothing listens on right now.
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The sha256: form of an API key, as [http] api_keys takes it.
key_hash() { printf 'sha256:%s' "$(printf %s "$1" | sha256sum | cut -d' ' -f1)"; }

# CPU seconds (user + system) a process has used so far; with "children",
# also what its children that ended used (a server's finished backends).
cpu_secs() {
  awk -v hz="$(getconf CLK_TCK)" -v kids="${2:-}" \
    '{t = $14 + $15; if (kids != "") t += $16 + $17; printf "%.2f", t / hz}' "/proc/$1/stat"
}

# Context switches of process PID so far, every thread, voluntary and not:
# each is a thread that went to sleep or was put aside, so per request it
# counts the hand-offs between threads, whatever the machine's load.
#   switches PID
switches() {
  cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches:/ {n += $2} END {print n + 0}'
}

# The common part of a referrald configuration: [http] on PORT with the
# API key KEY, [rules], [paths] and [log] at LEVEL. The caller appends
# [storage], [delivery], targets and routes.
#   daemon_config_head PORT KEY LEVEL
daemon_config_head() {
  cat <<TOML
[http]
listen = "127.0.0.1:$1"
api_keys = ["$(key_hash "$2")"]
threads = ${HTTP_THREADS:-2}
rate_limit_per_minute = 0

[rules]
file = "$PWD/config/rules.toml"

[paths]
schemas = "$PWD/schemas"
web = "$PWD/web"

[log]
level = "$3"
TOML
}

# Starts referrald with CONFIG, its output appended to LOG, and waits for
# /healthz on PORT; prints its process id. REFERRALD=path runs another build
# of the daemon (an earlier commit's, for a before and after in the same
# conditions).
#   pid=$(start_referrald CONFIG PORT LOG)
start_referrald() {
  "${REFERRALD:-build/release/daemon/referrald}" --config "$1" >>"$3" 2>&1 &
  local pid=$!
  for _ in $(seq 300); do
    if curl -fs "http://127.0.0.1:$2/healthz" >/dev/null 2>&1; then echo "$pid"; return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "referrald ($1) did not start:" >&2; cat "$3" >&2
  kill -9 "$pid" 2>/dev/null || true
  return 1
}

# Stops a process with SIGTERM, after 30 s with SIGKILL, and reaps it.
stop_pid() {
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# "# TITLE, DATE, N cores, commit C" for the first line of a result file.
result_header() {
  echo "# $1, $(date -u +%FT%TZ), $(nproc) cores, commit $(git rev-parse --short HEAD)"
}
