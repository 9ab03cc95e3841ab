"""The command line: exit codes 0 / 2 / 1, one clear error paragraph, --verbose for the traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from recsys_spark import cli

REPO = Path(__file__).resolve().parent.parent


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recsys_spark", *args], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **(env or {})}, timeout=120)


def test_validate_a_good_config():
    result = run("validate", "--config", "configs/synthetic-ecommerce.yaml")
    assert result.returncode == 0, result.stderr
    assert "configs/synthetic-ecommerce.yaml: valid" in result.stdout
    assert "for-you (user-personalization)" in result.stdout


def test_bad_config_exits_2_with_one_clear_message(write_config):
    path = write_config("dataset_group: {name: x, root: ./w, schemas: {interactions: {fields: []}}}\nextra: 1\n")
    result = run("validate", "--config", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {path}: 2 problems in the config:")
    assert "line 1, dataset_group.schemas.interactions.fields: List should have at least 1 item" in result.stderr
    assert "line 2, extra: unknown key; allowed keys: dataset_group, imports" in result.stderr
    assert "Traceback" not in result.stderr


def test_verbose_shows_the_traceback(tmp_path):
    result = run("--verbose", "validate", "--config", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "config file not found" in result.stderr


def test_usage_errors_exit_2():
    assert run("no-such-command").returncode == 2
    result = run("validate")
    assert result.returncode == 2 and "Missing option '--config'" in result.stderr


def test_version_and_help():
    assert run("--version").stdout.strip() == "recsys-spark, version 0.1.0"
    result = run("--help")
    assert result.returncode == 0 and "validate" in result.stdout and "doctor" in result.stdout


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "recsys-spark"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "Usage: recsys-spark" in result.stdout


def test_unexpected_failure_exits_1_with_a_hint(capsys):
    @click.command("explode")
    def explode():
        raise RuntimeError("disk on fire\nsecond line of a long JVM stack")

    cli.cli.add_command(explode)
    try:
        assert cli.main(["explode"]) == 1
    finally:
        cli.cli.commands.pop("explode")
    err = capsys.readouterr().err
    assert err == "error: RuntimeError: disk on fire\n(run with --verbose for the traceback)\n"


def test_missing_jars_name_the_install_step(tmp_path):
    result = run("doctor", env={"RECSYS_SPARK_M2_REPO": str(tmp_path)})
    assert result.returncode == 2
    assert "Spark jars missing from" in result.stderr and "io.delta:delta-spark_2.13:4.0.1" in result.stderr
    assert "make install" in result.stderr


def test_missing_java_is_a_clear_error(tmp_path):
    result = run("doctor", env={"JAVA_HOME": str(tmp_path / "no-jdk")})
    assert result.returncode == 2
    assert "Spark needs Java 17 or newer" in result.stderr and "JAVA_HOME" in result.stderr


def test_import_source_needs_a_dataset():
    result = run("import", "--config", "configs/synthetic-ecommerce.yaml", "--source", "x.csv")
    assert result.returncode == 2 and "--source needs --dataset" in result.stderr


def test_serve_refuses_other_hosts_without_keys_and_a_config_without_campaigns(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RECSYS_SPARK_SERVE_KEYS", raising=False)
    config = REPO / "configs" / "synthetic-ecommerce.yaml"
    assert cli.main(["serve", "--config", str(config), "--host", "0.0.0.0"]) == 2
    assert "needs key pairs" in capsys.readouterr().err
    bare = tmp_path / "bare.yaml"
    bare.write_text((REPO / "configs" / "movielens.yaml").read_text())
    assert cli.main(["serve", "--config", str(bare)]) == 2
    assert "no campaigns" in capsys.readouterr().err


# Exit codes of every entry point: a plain return on success (launchers that call a function or run a script
# in their own interpreter, such as Databricks' python_wheel_task, may count even SystemExit(0) as a failure),
# a non-zero exit only on failure.
GOOD = ["validate", "--config", str(REPO / "configs" / "synthetic-ecommerce.yaml")]
BAD = ["validate", "--config", str(REPO / "configs" / "no-such-config.yaml")]


def declared_entry_points() -> dict[str, str]:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def test_the_installed_console_scripts_exit_0_on_success_and_2_on_a_user_error():
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's code behind the installed scripts
    for name in declared_entry_points():
        script = Path(sys.executable).parent / name
        ok = subprocess.run([str(script), *GOOD], capture_output=True, text=True, env=env, timeout=120,
                            check=False)
        assert ok.returncode == 0 and "valid" in ok.stdout, (name, ok.stderr)
        bad = subprocess.run([str(script), *BAD], capture_output=True, text=True, env=env, timeout=120,
                            check=False)
        assert bad.returncode == 2 and "config file not found" in bad.stderr, (name, bad.stderr)


def test_the_wheel_entry_point_returns_on_success_and_exits_non_zero_on_failure(monkeypatch, capsys):
    from importlib import import_module

    module, _, function = declared_entry_points()["recsys-spark-job"].partition(":")
    entry = getattr(import_module(module), function)
    monkeypatch.setattr(sys, "argv", ["recsys-spark-job", *GOOD])
    assert entry() is None  # no SystemExit at all
    monkeypatch.setattr(sys, "argv", ["recsys-spark-job", *BAD])
    with pytest.raises(SystemExit) as failed:
        entry()
    assert failed.value.code == 2
    assert "config file not found" in capsys.readouterr().err


def test_python_dash_m_returns_on_success_and_exits_non_zero_on_failure(monkeypatch):
    import runpy

    monkeypatch.setattr(sys, "argv", ["recsys_spark", *GOOD])
    runpy.run_module("recsys_spark", run_name="__main__", alter_sys=True)  # returns: no SystemExit
    monkeypatch.setattr(sys, "argv", ["recsys_spark", *BAD])
    with pytest.raises(SystemExit) as failed:
        runpy.run_module("recsys_spark", run_name="__main__", alter_sys=True)
    assert failed.value.code == 2
    assert run(*GOOD).returncode == 0 and run(*BAD).returncode == 2


@pytest.mark.parametrize("job", sorted((REPO / "jobs").glob("*.py")), ids=lambda p: p.name)
def test_every_job_script_returns_on_success_and_exits_2_on_a_usage_error(job, monkeypatch, capsys):
    import runpy

    monkeypatch.setattr(sys, "argv", [str(job), "--help"])
    runpy.run_path(str(job), run_name="__main__")  # returns: no SystemExit
    assert "--config" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", [str(job), "--no-such-option"])
    with pytest.raises(SystemExit) as failed:
        runpy.run_path(str(job), run_name="__main__")
    assert failed.value.code == 2


def test_a_job_script_exits_with_its_command_s_code():
    job = str(REPO / "jobs" / "validate_config.py")
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's package, as spark-submit's --py-files would
    ok = subprocess.run([sys.executable, job, *GOOD[1:]], capture_output=True, text=True, env=env, timeout=120,
                        check=False)
    assert ok.returncode == 0 and "valid" in ok.stdout, ok.stderr
    bad = subprocess.run([sys.executable, job, *BAD[1:]], capture_output=True, text=True, env=env, timeout=120,
                         check=False)
    assert bad.returncode == 2 and "config file not found" in bad.stderr
