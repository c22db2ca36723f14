import json
import subprocess
import sys

from steer import __version__
from tests.conftest import REPO, invoke_cli, run_cli


def test_version():
    result = invoke_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"steer {__version__}"


def test_importing_the_cli_and_every_help_leaves_torch_out():
    # Every registered command (and group) prints help without importing torch or transformers.
    code = """
import sys
from typer.main import get_command
import steer.cli as cli
cmd = get_command(cli.app)
paths = [[]]
def walk(group, prefix):
    for name, sub in getattr(group, 'commands', {}).items():
        paths.append(prefix + [name]); walk(sub, prefix + [name])
walk(cmd, [])
for path in paths:
    try:
        cli.app(args=path + ['--help'], prog_name='steer')
    except SystemExit as e:
        assert e.code == 0, (path, e.code)
heavy = [m for m in ('torch', 'transformers', 'datasets', 'vllm', 'peft') if m in sys.modules]
print('HEAVY', heavy, len(paths))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("HEAVY [] "), last
    assert int(last.split()[-1]) >= 3


def test_env_reports_versions_and_device():
    result = invoke_cli("env", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    for key in ("steer", "python", "torch", "transformers", "peft", "datasets", "vllm", "device", "cuda"):
        assert key in info
    assert info["device"] in ("cpu", "mps") or info["device"].startswith("cuda")
    table = invoke_cli("env")
    assert "transformers" in table.stdout and "device" in table.stdout


def test_attrs_resolves_and_renders():
    result = invoke_cli("attrs", "--attr", "verbosity=1", "--preset", "expert")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "helpfulness:4,correctness:4,coherence:4,complexity:4,verbosity:1"
    data = json.loads(invoke_cli("attrs", "--attrs", "humor:3", "--schema", "oasst", "--json").stdout)
    assert data["string"] == "quality:4,toxicity:0,humor:3,creativity:0"
    listing = invoke_cli("attrs", "--schema", "steerlm")
    assert "verbosity" in listing.stdout and "concise" in listing.stdout


def test_bad_attribute_is_one_red_line_and_exit_2():
    result = invoke_cli("attrs", "--attr", "verbosty=1")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "unknown attribute 'verbosty'" in lines[0] and "did you mean 'verbosity'" in lines[0]
    assert "Traceback" not in result.stderr
    for bad, needle in (("verbosity=9", "out of range"), ("verbosity=x", "not an integer")):
        r = invoke_cli("attrs", "--attr", bad)
        assert r.returncode == 2 and needle in r.stderr


def test_steer_debug_shows_the_traceback():
    result = run_cli("attrs", "--attr", "verbosty=1", env={"STEER_DEBUG": "1"})
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "UsageError" in result.stderr


def test_every_command_is_documented_in_the_readme():
    """Every command the CLI registers is shown in the README as ``steer <command>``, and ``--help`` lists it."""
    from typer.main import get_command

    import steer.cli as cli

    readme = (REPO / "README.md").read_text()
    paths = []

    def walk(group, prefix):
        for name, sub in getattr(group, "commands", {}).items():
            if getattr(sub, "commands", None):
                walk(sub, prefix + [name])
            else:
                paths.append(" ".join(prefix + [name]))

    walk(get_command(cli.app), [])
    assert len(paths) >= 18
    assert [p for p in paths if f"steer {p}" not in readme] == []
    listing = invoke_cli("--help").stdout
    assert all(p.split()[0] in listing for p in paths)


def test_recipe_check_prints_resolved_and_fails_cleanly(tmp_path):
    recipe = REPO / "recipes/gpu/helpsteer2-llama3.1-8b-lora.yaml"
    ok = invoke_cli("recipe", "check", str(recipe), "--set", "train.learning_rate=3e-5")
    assert ok.returncode == 0, ok.stderr
    assert "learning_rate: 3.0e-05" in ok.stdout and "save_total_limit" in ok.stdout
    bad = invoke_cli("recipe", "check", str(recipe), "--set", "train.lr=1")
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "unknown key train.lr" in bad.stderr
