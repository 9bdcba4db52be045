#!/usr/bin/env bash
# A/B of the CPU pipeline: an older commit against the working tree, alternating runs, quiet and beside
# one busy process, the ViT-Tiny stand-in (or MODEL) on the 60-s 640x360 and 1280x720 clips (docs/speed.md).
#
#   benchmarks/bench_ab.sh OLD_REF WORKDIR [REPEATS] [MODEL]   (MODEL: default the ViT-Tiny stand-in; e.g.
#                                                              mini-xception-fer2013 for the baseline)
#
# WORKDIR must hold the clips and the stand-in made by `benchmarks/bench_speed.py --workdir WORKDIR`.
# SIZES (default "640x360 1280x720") names the clips: e.g. SIZES="640x360_medium 1280x720_medium" for the
# B-frame clips of `benchmarks/bench_decode.py --presets medium`.
# Prints "condition size old|new start-up-s steady-f/s total-s peak-RSS-MB" per run.
set -euo pipefail
old_ref=$1 workdir=$2 repeats=${3:-3} model=${4:-$2/vit_tiny_standin.pth}
root=$(cd "$(dirname "$0")/.." && pwd)
old_tree=$(mktemp -d)
git -C "$root" worktree add -f -q "$old_tree" "$old_ref"
trap 'git -C "$root" worktree remove --force "$old_tree"' EXIT
run() {  # size code-root: one fresh process; the code root goes first on the path (run from /tmp)
  (cd /tmp && PYTHONPATH=$2 "$root/.venv/bin/python" "$root/benchmarks/bench_speed.py" --process-worker \
    "$(date +%s.%N)" "$workdir/clip_60s_$1.mp4" "$model" auto 0 \
    "sqlite:///$workdir/ab.sqlite") |
    python3 -c 'import json, sys; d = json.load(sys.stdin); print("%.2f %.1f %.2f %.0f" % (d["startup_s"], d["steady_fps"], d["total_s"], d["peak_rss_mb"]))'
}
for condition in quiet busy; do
  busy_pid=
  if [ "$condition" = busy ]; then python3 -c "while True: pass" & busy_pid=$!; fi
  for size in ${SIZES:-640x360 1280x720}; do
    for _ in $(seq "$repeats"); do
      echo "$condition $size old $(run "$size" "$old_tree")"
      echo "$condition $size new $(run "$size" "$root")"
    done
  done
  if [ -n "$busy_pid" ]; then kill "$busy_pid"; fi
done
