"""Print the N-th command of README.md's "Run it" section (the shell lines of its N-th ```bash block), exactly as written.

Usage: python scripts/readme_command.py 1     (1: set up and run the main job; 2: set up and run the tests)
"""
import re, sys
from pathlib import Path

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1
text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
if len(blocks) < n: sys.exit(f"README.md has {len(blocks)} bash blocks, not {n}")
lines = [l for l in blocks[n - 1].splitlines() if l.strip() and not l.lstrip().startswith("#")]
print("\n".join(lines))
