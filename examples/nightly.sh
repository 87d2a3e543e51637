#!/usr/bin/env bash
# Example nightly job: process today's scans into a dated results folder.
# Exit codes from `retina process`: 0 all images ok, 3 some inputs failed (see report.csv), 4 no images found,
# 2 bad arguments or unusable model. A re-run with the same --out resumes and skips finished images.
set -u
SCANS=${1:-/data/scans/$(date +%F)}
RESULTS=${2:-/data/results/$(date +%F)}
retina process "$SCANS" --out "$RESULTS" --quiet
code=$?
case $code in
  0) echo "retina: all images processed -> $RESULTS" ;;
  3) echo "retina: some images failed; see $RESULTS/report.csv (status=failed)" >&2 ;;
  4) echo "retina: no images found in $SCANS" >&2 ;;
  130) echo "retina: interrupted; run again with the same --out to resume" >&2 ;;
  *) echo "retina: run failed with exit code $code" >&2 ;;
esac
exit $code
