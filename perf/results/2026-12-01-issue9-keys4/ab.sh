#!/usr/bin/env bash
# Interleaved A/B rounds of `rewardpool bench`, keyless then keyed, for each binary in turn.
#   ab.sh ROUNDS "BENCH ARGS" BINARY...
# e.g. ab.sh 5 "--durability memory --pull 10 --draws 50000000" ./rp-main ./rp-change
# Prints: round, binary, keyed flag, M draws/s, same-run baseline M draws/s.
rounds=$1; args=$2; shift 2
for r in $(seq "$rounds"); do for b in "$@"; do for k in "" "--keys"; do
  # shellcheck disable=SC2086 # the bench arguments are split on purpose
  v=$("$b" bench $args $k --json 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); print(round(d['draws_per_sec']/1e6,2), round(d['baseline_draws_per_sec']/1e6,1))")
  echo "$r $(basename "$b") ${k:-nokey} $v"
done; done; done
