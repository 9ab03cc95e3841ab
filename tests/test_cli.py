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


@pytest.mark.parametrize("job", sorted((REPO / "jobs").glob("*.py")), ids=lambda p: p.name)
def test_every_job_entry_point_runs_its_command(job):
    result = subprocess.run([sys.executable, str(job), "--help"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout


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
