#!/usr/bin/env bash
# Fuzz Tayori's parsers with cargo-fuzz (libFuzzer) for longer than CI does.
#
#   ./scripts/fuzz.sh                 every target, 60 s each
#   ./scripts/fuzz.sh job             one target, 60 s
#   ./scripts/fuzz.sh job 600         one target, 10 minutes
#   ./scripts/fuzz.sh all 300         every target, 5 minutes each
#   ./scripts/fuzz.sh list            the targets
#
# Needs the nightly toolchain (rustup toolchain install nightly); installs
# cargo-fuzz if it is missing. Targets are in fuzz/targets/, one file each, put
# together by fuzz/targets.rs (the same bodies tests/fuzz_smoke.rs runs on stable
# in every test run); seeds in fuzz/corpus/{target}/. Inputs the fuzzer finds worth keeping go to
# fuzz/work/{target}/ (ignored by git), crashes to fuzz/artifacts/{target}/.
#
# A crash: reproduce with
#   (cd fuzz && cargo +nightly fuzz run {target} artifacts/{target}/crash-…)
# or on stable, through the same target body, with the smoke harness's input file
# (copy it to fuzz/corpus/{target}/ and run cargo test --test fuzz_smoke {target}).
# then fix it, and keep the input as a seed (fuzz/corpus/{target}/) or a regression
# test (tests/fuzz_smoke.rs). Extra libFuzzer options go after `--`:
#   ./scripts/fuzz.sh dsn 120 -- -max_len=65536 -jobs=2
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

target="${1:-all}"
seconds="${2:-60}"
shift $(( $# > 2 ? 2 : $# ))
[ "${1:-}" = "--" ] && shift
extra=("$@")

targets() { sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^tayori-fuzz$'; }

if [ "$target" = list ]; then
  targets
  exit 0
fi

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: needs the nightly toolchain: rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

if [ "$target" = all ]; then
  mapfile -t run < <(targets)
else
  if ! targets | grep -qx "$target"; then
    echo "fuzz.sh: no target \"$target\"; the targets are:" >&2
    targets >&2
    exit 2
  fi
  run=("$target")
fi

# Build once (address sanitizer, debug assertions, optimized), then run each binary:
# `cargo fuzz run` would rebuild between targets whenever src/ changed meanwhile.
for t in "${run[@]}"; do
  cargo +nightly fuzz build "$t"
done
triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"

failed=()
for t in "${run[@]}"; do
  mkdir -p "work/$t" "corpus/$t" "artifacts/$t"
  echo "== $t: ${seconds}s"
  # -rss_limit_mb: a target that allocates without bound is a finding, not a hang.
  if ! "target/$triple/release/$t" "work/$t" "corpus/$t" -artifact_prefix="artifacts/$t/" \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "${extra[@]}"; then
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: crashes in: ${failed[*]} (see fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz.sh: no crash in ${run[*]}"
