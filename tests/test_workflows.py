"""The GitHub workflows: they parse, actionlint accepts them, every script they call exists, and the URLs agree."""
import re, shutil, subprocess, tomllib
from pathlib import Path
import pytest, yaml

ROOT = Path(__file__).resolve().parents[1]
WF = ROOT / ".github" / "workflows"
FILES = sorted(WF.glob("*.y*ml"))

def _load(p):
    d = yaml.safe_load(p.read_text())
    d["on"] = d.pop(True, d.get("on"))            # YAML 1.1 reads the key `on` as True
    return d

def test_the_three_workflows_exist():
    assert {p.stem for p in FILES} == {"test", "deploy", "release"}, FILES

@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_workflow_parses(path):
    d = _load(path)
    assert d.get("on") and d.get("jobs"), f"{path.name}: needs `on:` and `jobs:`"
    for name, job in d["jobs"].items():
        assert "runs-on" in job or "uses" in job, f"{path.name}: job {name} has neither runs-on nor uses"

def test_actionlint_accepts_every_workflow():
    exe = shutil.which("actionlint")
    assert exe, "actionlint is missing: it comes with the dev extras (pip install -e '.[dev]')"
    r = subprocess.run([exe, *map(str, FILES)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr

def _run_lines():
    for p in FILES:
        for name, job in _load(p)["jobs"].items():
            for step in job.get("steps", []):
                if "run" in step: yield p.name, name, step["run"]
            if "uses" in job: yield p.name, name, f"uses {job['uses']}"

def test_every_script_a_workflow_calls_exists():
    seen = 0
    for wf, job, run in _run_lines():
        for ref in re.findall(r"(?:bash|python[0-9.]*|sh)\s+((?:\./)?[\w./-]+\.(?:sh|py))", run) + re.findall(r"uses \./(\S+)", run):
            seen += 1
            assert (ROOT / ref).is_file(), f"{wf} job {job} calls {ref}, which is not in the repository"
    assert seen >= 3

def test_ci_and_the_test_workflow_run_the_same_scripts():
    "The workflow's test job runs scripts/test.sh, the script .ci/run runs; its second job runs the README's first command."
    ci = (ROOT / ".ci" / "run").read_text()
    jobs = _load(WF / "test.yaml")["jobs"]
    runs = {n: " ".join(s.get("run", "") for s in j["steps"]) for n, j in jobs.items()}
    for script in ("scripts/test.sh", "scripts/newcomer.sh"):
        assert script in ci and any(script in r for r in runs.values()), script

def test_urls_agree():
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    site = yaml.safe_load((ROOT / "nbs" / "nbdev.yml").read_text())["website"]
    assert proj["Documentation"].rstrip("/") == site["site-url"].rstrip("/")
    assert proj["Repository"].rstrip("/") == site["repo-url"].rstrip("/")
    readme = (ROOT / "README.md").read_text()
    assert proj["Documentation"] in readme and "pypi.org/project/latent_lm" in readme
    for badge in re.findall(r"actions/workflows/([\w.-]+)/badge\.svg", readme):
        assert (WF / badge).is_file(), f"README badge for {badge}, which is not a workflow"
    assert proj["Repository"] + "/actions/workflows/test.yaml" in readme
