#!/usr/bin/env bash
# The newcomer's path: run the README's first command exactly as written, in a copy of the checkout with a fresh
# virtual environment and none of the dev extras, and fail if it fails (the tour exits non-zero when a section fails).
# Usage: bash scripts/newcomer.sh          (WORK=folder to keep the copy; by default a temporary folder)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cmd="$(python3 "$root/scripts/readme_command.py" 1)"
if [ -n "${WORK:-}" ]; then work="$WORK"; else work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT; fi   # a temporary copy is removed at exit
mkdir -p "$work/latent_lm"
# the tracked and untracked-but-not-ignored files, as a fresh clone of this working tree would have them
(cd "$root" && git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d "" f; do [ -e "$f" ] && printf "%s\0" "$f"; done | xargs -0 cp --parents -t "$work/latent_lm/")
cd "$work/latent_lm"
echo "running the README's first command in $work/latent_lm:"
echo "$cmd"
env -u VIRTUAL_ENV PATH="$(echo "$PATH" | tr ':' '\n' | grep -v '/\.venv/bin' | paste -sd:)" bash -euo pipefail -c "$cmd"
test -s runs/tour/report.html
echo "newcomer path: the README's first command exited 0 and wrote runs/tour/report.html"
