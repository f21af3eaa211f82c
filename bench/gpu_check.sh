#!/usr/bin/env bash
# Everything a lent GPU should run, as one command of at most 8 minutes, from the repository root:
#
#     OUT=/path/to/empty/folder bench/gpu_check.sh
#
# 1. `pytest -m gpu` under a time cap (TESTS_S, default 150 s), its log in $OUT/pytest.log; meanwhile
#    bench/suite/warm.py compiles the evaluator's numba kernels and the model section's compiled step
#    into the caches (its log in $OUT/warm.log), so the suite's sections do not spend their caps on it;
# 2. the GPU suite with what is left of TOTAL_S (default 470 s, less 30 s for its imports and report),
#    its report.json, report.md and traces in $OUT/suite, its output in $OUT/suite.log.
# Exit status: the suite's (0 when every section ran "ok"); pytest's is the last line of pytest.log.
set -u
: "${OUT:?set OUT to an empty folder for the logs and the report}"
TOTAL_S=${TOTAL_S:-470}
TESTS_S=${TESTS_S:-150}
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$PWD/bench/.numba-cache}
mkdir -p "$OUT/suite"
start=$(date +%s)

timeout "$TESTS_S" "$PYTHON" bench/suite/warm.py numba inductor > "$OUT/warm.log" 2>&1 &
warm=$!
timeout "$TESTS_S" "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider tests > "$OUT/pytest.log" 2>&1
echo "pytest exit status $? (124: stopped at the ${TESTS_S} s cap)" >> "$OUT/pytest.log"
wait "$warm"
echo "warm-up exit status $?" >> "$OUT/warm.log"

left=$((TOTAL_S - ($(date +%s) - start) - 30))
if [ "$left" -lt 60 ]; then
    echo "gpu_check: only ${left} s left for the suite; skipped" | tee "$OUT/suite.log"
    exit 1
fi
set -o pipefail
"$PYTHON" bench/gpu_suite.py --out "$OUT/suite" --budget "$left" 2>&1 | tee "$OUT/suite.log"
