"""Install a built wheel into a fresh virtual environment and import every latent_lm module it ships.

Usage: python tests/check_wheel.py dist/latent_lm-*.whl
Catches packaging mistakes a source checkout hides (a subpackage or data file left out of the wheel)."""
import subprocess, sys, tempfile, venv, zipfile
from pathlib import Path

def main(whl):
    whl = Path(whl).resolve()
    mods = sorted(n[:-3].replace("/", ".").removesuffix(".__init__") for n in zipfile.ZipFile(whl).namelist()
                  if n.startswith("latent_lm/") and n.endswith(".py"))
    assert "latent_lm.core" in mods and "latent_lm.lm" in mods, f"wheel is missing core modules: {mods}"
    with tempfile.TemporaryDirectory() as d:
        venv.create(d, with_pip=True)
        py = str(Path(d) / "bin" / "python")
        subprocess.run([py, "-m", "pip", "install", "-q", "--no-cache-dir", "torch==2.13.0", str(whl)], check=True)
        code = ("import importlib, os, sys\nos.chdir('/')\n"
                f"mods = {mods!r}\n"
                "for m in mods: importlib.import_module(m)\n"
                "import latent_lm; assert 'site-packages' in latent_lm.__file__, latent_lm.__file__\n"
                "print(f'imported {len(mods)} modules from', os.path.dirname(latent_lm.__file__))")
        subprocess.run([py, "-c", code], check=True, cwd="/")
        subprocess.run([str(Path(d) / "bin" / "latent-lm"), "--help"], check=True, stdout=subprocess.DEVNULL)

if __name__ == "__main__": main(sys.argv[1])
