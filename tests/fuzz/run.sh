#!/bin/bash
# Runs each fuzz target of a fuzz build (`make fuzz`) for a bounded number of executions, starting from
# the committed seeds (tests/fuzz/corpus/<target>/, read only: new inputs go to <build>/fuzz/corpus).
# A finding (crash, sanitizer report, timeout, out-of-memory) fails the run and leaves the input in
# <build>/fuzz/artifacts/<target>/. Usage: run.sh <fuzz build dir> [runs] [max seconds per target]
set -u
build=${1:?usage: run.sh <fuzz build dir> [runs] [max seconds]}
runs=${2:-100000}
max_time=${3:-600}
src=$(cd "$(dirname "$0")" && pwd)
status=0
summary=""
for target in fuzz_model fuzz_h5md fuzz_xml; do
  bin="$build/bin/flowforce_$target"
  work="$build/fuzz/corpus/$target"
  artifacts="$build/fuzz/artifacts/$target"
  log="$build/fuzz/$target.log"
  rm -rf "$work" "$artifacts"
  mkdir -p "$work" "$artifacts"
  echo "== $target: up to $runs executions, at most $max_time s (log: $log)"
  dict=()
  [ -f "$src/$target.dict" ] && dict=(-dict="$src/$target.dict")
  # -timeout: one input may take 10 s; -malloc_limit_mb: no single allocation over 512 MB.
  "$bin" "${dict[@]}" -runs="$runs" -max_total_time="$max_time" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$work" "$src/corpus/$target" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  execs=${execs:-0}
  if [ $rc -ne 0 ]; then
    status=1
    echo "!! $target: FINDING (exit $rc) after $execs executions; input(s) in $artifacts/:"
    ls "$artifacts"
    grep -E "ERROR|runtime error|FUZZ FINDING|SUMMARY|Test unit written" "$log" | head -n 10
    summary+=$(printf '\n  %-11s %8s executions  FINDING' "$target" "$execs")
  else
    note=""
    [ "$execs" -lt "$runs" ] && note="  (stopped by the $max_time s time limit before $runs)"
    summary+=$(printf '\n  %-11s %8s executions  ok%s' "$target" "$execs" "$note")
  fi
done
echo "fuzz summary:$summary"
exit $status
