"""python -m torchfunc.coverage: its report, its JSON and its exit status."""
import json
import subprocess
import sys

import pytest
import torch

import torchfunc.coverage as coverage


def test_quick_run_over_a_few_ops(tmp_path, capsys):
    out = tmp_path / "cov.json"
    assert coverage.main(["--quick", "-k", "nn.functional.relu", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "summary:" in printed and "aten ops, by how vmap handles them" in printed
    data = json.loads(out.read_text())
    assert data["torch"] == torch.__version__
    assert {c["transform"] for c in data["cases"]} == set(coverage.TRANSFORMS)
    assert all(row["rate"] == 1.0 for row in data["summary"].values())


def test_min_rate_sets_the_exit_status(capsys):
    assert coverage.main(["--quick", "-k", "nn.functional.relu", "--transforms", "vmap", "--min-rate", "1.01"]) == 1
    assert "below --min-rate 1.01: vmap" in capsys.readouterr().out


def test_a_wrong_transform_is_caught(monkeypatch, capsys):
    monkeypatch.setattr(coverage, "vmap", lambda f, in_dims=0: lambda *a: f(*a) + 1)  # a wrong result
    assert coverage.main(["--quick", "-k", "nn.functional.relu", "--transforms", "vmap", "--min-rate", "0.5"]) == 1


def test_unknown_transform_is_an_argument_error():
    with pytest.raises(SystemExit):
        coverage.main(["--transforms", "vmapp"])


def test_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "torchfunc.coverage", "--quick", "-k", "nn.functional.relu",
                           "--transforms", "vmap,jacrev"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "vmap 100.0%; jacrev 100.0%" in done.stdout
