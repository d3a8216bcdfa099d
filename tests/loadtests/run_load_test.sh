#!/usr/bin/env bash
# Load tests for a served sentiment model with vegeta: the seed's three scenarios.
#
#   constant  10 RPS for 30 s                      -> constant_load_plot.html
#   step      1 -> 20 RPS in steps (1 5 10 15 20)   -> step_load_plot.html
#   spike     50 RPS for 5 s                        -> spike_test_plot.html
#
# Every scenario also writes vegeta's text and JSON reports and a CSV of all results into the output
# directory, then summarize_results.py prints a table, writes summary.md and summary.png (latency over
# time per scenario) and checks the thresholds: the script exits 1 when a scenario's error rate or p99
# latency is above them.
#
# Usage: ./run_load_test.sh [options]       (./run_load_test.sh --help lists them)
# The target defaults to a local model server (http://127.0.0.1:8080, model "distilbert"): the same
# KSA_TARGET_URL / KSA_HOST_HEADER / KSA_MODEL_NAME settings as tests/test_integration_hf.py. Only
# loopback addresses are attacked unless --allow-remote is given.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

url="${KSA_TARGET_URL:-http://127.0.0.1:8080}"
host_header="${KSA_HOST_HEADER:-}"
model="${KSA_MODEL_NAME:-distilbert}"
payload="$HERE/payload.json"
out="${KSA_LOADTEST_OUT:-$HERE/results}"
scenarios="constant step spike"
constant_rate=10
constant_duration=30s
step_rates="1 5 10 15 20"
step_duration=10s
spike_rate=50
spike_duration=5s
request_timeout=10s
max_error_rate=0.01
max_p99=5s
allow_remote=false
print_target=false

usage() {
  cat <<EOF
Usage: $0 [options]

Target (defaults from KSA_TARGET_URL, KSA_HOST_HEADER, KSA_MODEL_NAME):
  --url URL               base URL of the model server or ingress [$url]
  --host NAME             Host header, for an ingress that routes by host name [${host_header:-none}]
  --model NAME            model name: requests go to /v1/models/NAME:predict [$model]
  --payload FILE          request body [$payload]
  --allow-remote          allow a target that is not a loopback address (127.0.0.0/8, ::1, localhost)

Scenarios (durations in vegeta's format: 500ms, 5s, 1m):
  --scenarios "LIST"      which to run, in order [$scenarios]
  --constant-rate RPS     [$constant_rate]      --constant-duration D  [$constant_duration]
  --step-rates "LIST"     [$step_rates]  --step-duration D  per step [$step_duration]
  --spike-rate RPS        [$spike_rate]      --spike-duration D     [$spike_duration]
  --timeout D             per-request timeout [$request_timeout]

Results and thresholds:
  --out DIR               output directory [$out] (KSA_LOADTEST_OUT)
  --max-error-rate R      highest error fraction allowed per scenario, 0..1 [$max_error_rate]
  --max-p99 D             highest p99 latency allowed per scenario [$max_p99]
  --print-target          print the vegeta target (JSON format) for these settings and exit

Exit codes: 0 all scenarios within thresholds, 1 a threshold exceeded, 2 usage or set-up error.
The vegeta binary is \$VEGETA, else vegeta on PATH, else \${KSA_CACHE:-~/.cache/kserve-ansible}/bin/vegeta
(built by: bash devcluster/gotools/build.sh vegeta).
EOF
}

die() {
  echo "run_load_test.sh: $*" >&2
  exit 2
}

need_value() {
  [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value (see --help)"
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --url) need_value "$@"; url="$2"; shift 2 ;;
    --host) need_value "$@"; host_header="$2"; shift 2 ;;
    --model) need_value "$@"; model="$2"; shift 2 ;;
    --payload) need_value "$@"; payload="$2"; shift 2 ;;
    --allow-remote) allow_remote=true; shift ;;
    --scenarios) need_value "$@"; scenarios="$2"; shift 2 ;;
    --constant-rate) need_value "$@"; constant_rate="$2"; shift 2 ;;
    --constant-duration) need_value "$@"; constant_duration="$2"; shift 2 ;;
    --step-rates) need_value "$@"; step_rates="$2"; shift 2 ;;
    --step-duration) need_value "$@"; step_duration="$2"; shift 2 ;;
    --spike-rate) need_value "$@"; spike_rate="$2"; shift 2 ;;
    --spike-duration) need_value "$@"; spike_duration="$2"; shift 2 ;;
    --timeout) need_value "$@"; request_timeout="$2"; shift 2 ;;
    --out) need_value "$@"; out="$2"; shift 2 ;;
    --max-error-rate) need_value "$@"; max_error_rate="$2"; shift 2 ;;
    --max-p99) need_value "$@"; max_p99="$2"; shift 2 ;;
    --print-target) print_target=true; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done

# --- checks ---------------------------------------------------------------------------------------
millis_of() { # vegeta duration (500ms, 5s, 2m, 1h) -> milliseconds
  local value="$1" number unit
  [[ "$value" =~ ^([0-9]+)(ms|s|m|h)$ ]] || die "duration '$value' must look like 500ms, 5s, 2m or 1h"
  number="${BASH_REMATCH[1]}" unit="${BASH_REMATCH[2]}"
  case "$unit" in
    ms) echo "$number" ;;
    s) echo $((number * 1000)) ;;
    m) echo $((number * 60000)) ;;
    h) echo $((number * 3600000)) ;;
  esac
}

seconds_of() { # whole seconds, rounded up
  local millis
  millis="$(millis_of "$1")"
  echo $(((millis + 999) / 1000))
}

positive_integer() {
  [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive whole number of requests per second, got '$2'"
}

for duration in "$constant_duration" "$step_duration" "$spike_duration" "$request_timeout" "$max_p99"; do
  millis_of "$duration" >/dev/null
done
positive_integer --constant-rate "$constant_rate"
positive_integer --spike-rate "$spike_rate"
read -r -a step_rate_list <<<"$step_rates"
[[ ${#step_rate_list[@]} -gt 0 ]] || die "--step-rates needs at least one rate"
for rate in "${step_rate_list[@]}"; do positive_integer --step-rates "$rate"; done
read -r -a scenario_list <<<"$scenarios"
[[ ${#scenario_list[@]} -gt 0 ]] || die "--scenarios needs at least one of: constant step spike"
for scenario in "${scenario_list[@]}"; do
  [[ "$scenario" =~ ^(constant|step|spike)$ ]] || die "unknown scenario '$scenario' (constant, step, spike)"
done
[[ "$max_error_rate" =~ ^(0(\.[0-9]+)?|1(\.0+)?)$ ]] || die "--max-error-rate must be a fraction 0..1, got '$max_error_rate'"
[[ -f "$payload" ]] || die "payload file $payload not found"
[[ "$url" =~ ^https?://([^/]+)(/.*)?$ ]] || die "--url must be an http(s) URL, got '$url'"
url="${url%/}"
authority="${BASH_REMATCH[1]}"
authority="${authority##*@}"
if [[ "$authority" =~ ^\[([^]]+)\] ]]; then # [IPv6]:port
  host="${BASH_REMATCH[1]}"
else
  host="${authority%%:*}"
fi
is_loopback() {
  [[ "$1" == localhost || "$1" == ::1 || "$1" =~ ^127\.[0-9]+\.[0-9]+\.[0-9]+$ ]]
}
if ! is_loopback "$host" && [[ "$allow_remote" != true ]]; then
  die "refusing to load-test '$host': not a loopback address. Load tests send many requests; pass --allow-remote if you mean to load '$url'."
fi

# --- the vegeta target (JSON format, body base64), built from the payload ---------------------------
write_target() {
  local body headers
  body="$(base64 -w0 <"$payload")"
  headers='"Content-Type":["application/json"]'
  [[ -z "$host_header" ]] || headers+=",\"Host\":[\"$host_header\"]"
  printf '{"method":"POST","url":"%s/v1/models/%s:predict","body":"%s","header":{%s}}\n' \
    "$url" "$model" "$body" "$headers"
}

if [[ "$print_target" == true ]]; then
  write_target
  exit 0
fi

# --- tools ----------------------------------------------------------------------------------------
vegeta="${VEGETA:-$(command -v vegeta || echo "${KSA_CACHE:-$HOME/.cache/kserve-ansible}/bin/vegeta")}"
[[ -x "$vegeta" ]] || die "vegeta not found ($vegeta). Build it: bash devcluster/gotools/build.sh vegeta"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then python="$ROOT/.venv/bin/python"; else python=python3; fi
fi

mkdir -p "$out"
target_file="$out/target.json"
write_target >"$target_file"

# One request first: when nothing answers, say so now instead of after a whole attack of errors.
curl_args=(--silent --show-error --output /dev/null --write-out '%{http_code}' --max-time 10
  --request POST --header 'Content-Type: application/json' --data-binary "@$payload")
[[ -z "$host_header" ]] || curl_args+=(--header "Host: $host_header")
if ! status="$(curl "${curl_args[@]}" "$url/v1/models/$model:predict" 2>"$out/precheck.err")"; then
  die "nothing answers at $url${host_header:+ (Host: $host_header)}: $(cat "$out/precheck.err")"
fi
[[ "$status" == 200 ]] || die "POST $url/v1/models/$model:predict answered $status, not 200: check --model and the target"

# --- scenarios --------------------------------------------------------------------------------------
attack() { # attack NAME RATE DURATION RESULT_FILE: bounded by the duration plus the request timeout
  local name="$1" rate="$2" duration="$3" results="$4" limit
  limit=$(($(seconds_of "$duration") + $(seconds_of "$request_timeout") + 30))
  echo "  $name: $rate RPS for $duration" >&2
  timeout --kill-after=10 "$limit" "$vegeta" attack -format=json -targets="$target_file" -name="$name" \
    -rate="$rate/1s" -duration="$duration" -timeout="$request_timeout" -output="$results"
}

report() { # report SCENARIO PLOT_FILE TITLE RESULT_FILE...: text + JSON reports, HTML plot, CSV
  local scenario="$1" plot="$2" title="$3"
  shift 3
  "$vegeta" report -type=text "$@" >"$out/${scenario}_report.txt"
  "$vegeta" report -type=json "$@" >"$out/${scenario}_report.json"
  "$vegeta" plot -title="$title" "$@" >"$out/$plot"
  "$vegeta" encode -to=csv "$@" >"$out/$scenario.csv"
  echo "  -> $out/$plot" >&2
}

run_constant() {
  attack "constant $constant_rate RPS" "$constant_rate" "$constant_duration" "$out/constant.bin"
  report constant constant_load_plot.html "Constant load: $constant_rate RPS for $constant_duration" \
    "$out/constant.bin"
}

run_step() {
  local files=() rate
  for rate in "${step_rate_list[@]}"; do
    attack "step $rate RPS" "$rate" "$step_duration" "$out/step_${rate}rps.bin"
    files+=("$out/step_${rate}rps.bin")
  done
  report step step_load_plot.html "Step load: ${step_rates// / -> } RPS, $step_duration each" "${files[@]}"
}

run_spike() {
  attack "spike $spike_rate RPS" "$spike_rate" "$spike_duration" "$out/spike.bin"
  report spike spike_test_plot.html "Spike: $spike_rate RPS for $spike_duration" "$out/spike.bin"
}

echo "load test: $url/v1/models/$model:predict${host_header:+ (Host: $host_header)} -> $out" >&2
rm -f "$out"/*.bin
for scenario in "${scenario_list[@]}"; do
  echo "scenario $scenario" >&2
  "run_$scenario"
done

"$python" "$HERE/summarize_results.py" "$out" --scenarios "${scenario_list[@]}" \
  --max-error-rate "$max_error_rate" --max-p99-ms "$(millis_of "$max_p99")"
