"""The ``recsys-spark`` command line (also ``python -m recsys_spark`` and ``spark-submit jobs/<job>.py``).

Each command parses its arguments and calls the library. Exit codes: 0 success, 2 a user error (bad
config, bad input; one clear paragraph naming the file, key, line or position), 1 anything else (the
traceback with ``--verbose``).
"""

from __future__ import annotations

import sys
import traceback

import click

from recsys_spark import __version__
from recsys_spark.config import resolve_location
from recsys_spark.errors import BUSY_EXIT_CODE, RootBusyError, UserError, storage_failure

config_option = click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
                             help="The pipeline's YAML config.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--verbose", "-v", is_flag=True, help="Show debug logs and the traceback of a failure.")
@click.version_option(__version__, prog_name="recsys-spark")
def cli(verbose: bool) -> None:
    """A self-hosted recommendation service as Spark jobs."""
    from recsys_spark.logs import configure

    configure(verbose)


@cli.command()
@config_option
def validate(config_path: str) -> None:
    """Check a config (keys, types, schemas, references) without starting Spark."""
    from recsys_spark.config import load_config

    config = load_config(config_path)
    click.echo(config.summary())
    for warning in config.warnings:
        click.echo(f"warning: {warning}", err=True)


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Use this config's Spark and S3 settings and probe its warehouse root.")
def doctor(config_path: str | None) -> None:
    """Start Spark with Delta and round-trip a small Delta table (in the warehouse root with --config)."""
    from recsys_spark.doctor import run_doctor

    click.echo(run_doctor(config_path))


@cli.command("import")
@config_option
@click.option("--dataset", type=click.Choice(["interactions", "users", "items"]),
              help="Only this dataset's imports (or the dataset --source holds).")
@click.option("--source", help="Import this CSV file or folder instead of the config's imports (needs --dataset).")
@click.option("--mode", type=click.Choice(["FULL", "INCREMENTAL"]), help="Override the import mode.")
def import_(config_path: str, dataset: str | None, source: str | None, mode: str | None) -> None:
    """Bulk import CSV into the dataset tables, with validation and rejects."""
    from recsys_spark.config import load_config
    from recsys_spark.datasets.importer import run_imports
    from recsys_spark.session import session_for

    if source and not dataset:
        raise click.UsageError("--source needs --dataset: which dataset does the file hold?")
    config = load_config(config_path)
    source = resolve_location(source) if source else None
    for result in run_imports(session_for(config, "recsys-spark import"), config, dataset, source, mode):
        click.echo(result.summary())


@cli.command()
@config_option
def ingest(config_path: str) -> None:
    """Take new JSON-lines event, user and item files from the landing folders, exactly once."""
    from recsys_spark.config import load_config
    from recsys_spark.datasets.ingest import run_ingest
    from recsys_spark.session import session_for

    config = load_config(config_path)
    click.echo(run_ingest(session_for(config, "recsys-spark ingest"), config).summary())


@cli.command("delete-users")
@config_option
@click.option("--source", required=True, help="CSV file or folder with a USER_ID column.")
def delete_users_(config_path: str, source: str) -> None:
    """Erase the listed users from every place under the warehouse root (tables and their history, rejects,
    landing files, solution versions, batch files)."""
    from recsys_spark.config import load_config
    from recsys_spark.datasets.deletion import delete_users
    from recsys_spark.session import session_for

    config = load_config(config_path)
    counts = delete_users(session_for(config, "recsys-spark delete-users"), config, resolve_location(source))
    click.echo("delete-users: " + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in counts.items()))


@cli.command()
@config_option
def maintain(config_path: str) -> None:
    """Compact and vacuum the tables, prune old solution versions, rejects, batch outputs and scratch, and
    finish due erasures; every action in the job history."""
    from recsys_spark.config import load_config
    from recsys_spark.datasets.maintenance import run_maintain
    from recsys_spark.session import session_for

    config = load_config(config_path)
    click.echo(run_maintain(session_for(config, "recsys-spark maintain"), config).summary())


@cli.command()
@config_option
@click.option("--dataset", required=True, type=click.Choice(["interactions", "users", "items"]))
@click.option("--output", required=True, help="Folder (local or S3) to write the CSV part files to.")
@click.option("--overwrite", is_flag=True, help="Replace the output folder if it exists.")
def export(config_path: str, dataset: str, output: str, overwrite: bool) -> None:
    """Write a dataset as CSV with a header (importable again)."""
    from recsys_spark.config import load_config
    from recsys_spark.datasets.export import export_dataset
    from recsys_spark.session import session_for

    config = load_config(config_path)
    rows = export_dataset(session_for(config, "recsys-spark export"), config, dataset, resolve_location(output), overwrite)
    click.echo(f"export {dataset}: {rows:,} rows to {output}")


@cli.command("jobs")
@config_option
@click.option("--limit", default=20, show_default=True, help="How many runs to show, newest first.")
def jobs_(config_path: str, limit: int) -> None:
    """The job history of the dataset group (<root>/_jobs), newest first."""
    from recsys_spark.config import load_config
    from recsys_spark.datasets.warehouse import Warehouse
    from recsys_spark.jobruns import format_history, job_history
    from recsys_spark.session import session_for

    config = load_config(config_path)
    click.echo(format_history(job_history(Warehouse(session_for(config, "recsys-spark jobs"), config), limit)))


@cli.command()
@config_option
@click.option("--solution", "solutions", multiple=True, help="Train only this solution (repeatable; default: all).")
@click.option("--no-evaluate", is_flag=True, help="Skip the offline evaluation (no metrics in the manifest).")
@click.option("--force", is_flag=True, help="Train even when the solution's retrain policy says it does not pay.")
def train(config_path: str, solutions: tuple[str, ...], no_evaluate: bool, force: bool) -> None:
    """Train a new version of each solution on the current data (when its retrain policy says so), evaluate it
    and save it."""
    from recsys_spark.config import load_config
    from recsys_spark.session import session_for
    from recsys_spark.solutions.train import format_versions, train_if_due

    config = load_config(config_path)
    names = list(solutions) or [s.name for s in config.solutions]
    for name in names:
        config.solution(name)  # every name checked before any training starts
    spark = session_for(config, "recsys-spark train")
    trained = []
    for name in names:
        version, why = train_if_due(spark, config, name, evaluate=not no_evaluate, force=force)
        if version is None:
            click.echo(f"{name}: not trained: {why} (--force trains anyway)")
        else:
            trained.append(version)
    if trained:
        click.echo(format_versions(trained))


@cli.command()
@config_option
@click.option("--solution", required=True, help="The solution to evaluate.")
@click.option("--version", help="The version (default: the newest).")
@click.option("--protocol", type=click.Choice(["service", "benchmark"]), default="service", show_default=True,
              help="service: the managed service's metrics (10% of users held out); benchmark: the "
                   "recommenders project's protocol (stratified 75/25 per item, k = 10).")
def evaluate(config_path: str, solution: str, version: str | None, protocol: str) -> None:
    """Offline metrics of a solution version, on the snapshot it was trained on."""
    from recsys_spark.config import load_config
    from recsys_spark.session import session_for
    from recsys_spark.solutions.train import evaluate_version

    config = load_config(config_path)
    found, metrics = evaluate_version(session_for(config, "recsys-spark evaluate"), config, solution, version, protocol)
    click.echo(f"{solution} {found.version} ({found.recipe}), {protocol} protocol:")
    for key, value in metrics.items():
        click.echo(f"  {key:46} {value}")


@cli.command()
@config_option
@click.option("--solution", help="Only this solution's versions.")
def versions(config_path: str, solution: str | None) -> None:
    """List trained solution versions with their metrics, newest first."""
    from recsys_spark.config import load_config
    from recsys_spark.session import session_for
    from recsys_spark.solutions.store import list_versions
    from recsys_spark.solutions.train import format_versions

    config = load_config(config_path)
    names = [config.solution(solution).name] if solution else [s.name for s in config.solutions]
    spark = session_for(config, "recsys-spark versions")
    click.echo(format_versions([v for name in names for v in list_versions(spark, config, name)]))


@cli.command()
@config_option
@click.option("--job", "jobs", multiple=True, help="Run only this batch job (repeatable; default: all).")
def batch(config_path: str, jobs: tuple[str, ...]) -> None:
    """Batch inference: write each job's recommendations and _metrics.json, then its _manifest.json."""
    from recsys_spark.config import load_config
    from recsys_spark.inference.batch import run_batch
    from recsys_spark.session import session_for

    config = load_config(config_path)
    names = list(jobs) or [j.name for j in config.batch_jobs]
    for name in names:
        config.batch_job(name)
    spark = session_for(config, "recsys-spark batch")
    for name in names:
        click.echo(run_batch(spark, config, name).summary())


@cli.group("pipeline")
def pipeline_group() -> None:
    """The whole pipeline: imports, ingestion, training, batch inference, maintenance."""


@pipeline_group.command("run")
@config_option
@click.option("--steps", help="Comma-separated subset of import,ingest,train,batch,maintain (default: all, in order).")
@click.option("--samples", default=0, show_default=True,
              help="Print this many recommendations of the first batch job with item metadata.")
@click.option("--wait-minutes", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="When another pipeline run holds the root, wait this long for it before exiting with code 75.")
def pipeline_run(config_path: str, steps: str | None, samples: int, wait_minutes: float) -> None:
    """Run every import, ingestion, training and batch job of the config, then maintenance, in order, in one
    Spark app; one run per root at a time (another run holding it: exit code 75)."""
    from recsys_spark.config import load_config
    from recsys_spark.pipeline import parse_steps, run_pipeline
    from recsys_spark.session import session_for

    config = load_config(config_path)
    chosen = parse_steps(steps)
    spark = session_for(config, "recsys-spark pipeline")
    try:
        result = run_pipeline(spark, config, chosen, wait_minutes=wait_minutes)
    except Exception as e:
        if getattr(e, "pipeline_result", None):
            click.echo(e.pipeline_result.table(), err=True)
        raise
    click.echo(result.table())
    if samples and "batch" in chosen and config.batch_jobs:
        from recsys_spark.inference.samples import show_samples

        click.echo(show_samples(spark, config, config.batch_jobs[0].name, samples))


@cli.command()
@config_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (another than loopback needs key pairs: see serve.keys_file).")
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Server processes sharing the port (default: serve.workers, 1).")
def serve(config_path: str, host: str, port: int, workers: int | None) -> None:
    """Answer the managed service's real-time APIs (GetRecommendations, PutEvents, ...) for the config's
    campaigns, without Spark."""
    from recsys_spark.config import load_config

    try:
        from recsys_spark.serving.auth import load_keys
        from recsys_spark.serving.server import serve as serve_campaigns
    except ImportError as e:
        raise UserError(f"serve needs the serve extra ({e.name} is missing): pip install 'recsys_spark[serve]'")
    config = load_config(config_path)
    if host not in ("127.0.0.1", "localhost", "::1") and not load_keys(config.serve.keys_file):
        raise UserError(f"--host {host}: a server reachable from other hosts needs key pairs "
                        "(RECSYS_SPARK_SERVE_KEYS or serve.keys_file); without them it answers loopback only")
    workers = workers or config.serve.workers
    click.echo(f"serving {', '.join(c.name for c in config.campaigns)} on http://{host}:{port}"
               + (f" ({workers} workers)" if workers > 1 else ""), err=True)
    serve_campaigns(config, host, port, workers)


@cli.group("filter")
def filter_group() -> None:
    """Filter expressions in the managed service's language."""


@filter_group.command("validate")
@config_option
@click.argument("expression")
def filter_validate(config_path: str, expression: str) -> None:
    """Check EXPRESSION (or the config's filter of that name) against the config's schemas."""
    from recsys_spark.config import load_config

    config = load_config(config_path)
    if expression in {f.name for f in config.filters}:
        expression = config.filter(expression).expression
    parsed = config.checked_filter(expression)
    click.echo(str(parsed))
    click.echo(f"  datasets    {', '.join(sorted(parsed.datasets))}")
    click.echo(f"  parameters  {', '.join('$' + p for p in sorted(parsed.parameters)) or '-'}")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code (0 ok, 2 user error, 75 root busy with another pipeline
    run, 1 failure)."""
    args = sys.argv[1:] if argv is None else argv
    verbose = "--verbose" in args or "-v" in args
    try:
        cli.main(args=args, prog_name="recsys-spark", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.ClickException as e:  # usage errors: unknown command or option, missing argument
        e.show()
        return 2
    except UserError as e:
        _report(e, verbose, hint=False)
        return 2
    except RootBusyError as e:
        _report(e, verbose, hint=False)
        return BUSY_EXIT_CODE
    except Exception as e:  # noqa: BLE001 - the one place every other failure becomes exit code 1
        _report(e, verbose, hint=True)
        return 1
    return 0


def _report(e: Exception, verbose: bool, hint: bool) -> None:
    if verbose:
        traceback.print_exc()
    # Spark's errors carry the JVM's stack in their text; a failure's first line says what happened.
    plain = isinstance(e, (UserError, RootBusyError))
    text = str(e) if plain else f"{type(e).__name__}: {(str(e).strip() or '-').splitlines()[0]}"
    if not isinstance(e, UserError) and (storage := storage_failure(str(e))):
        text = storage
    click.echo(f"error: {text}" + ("\n(run with --verbose for the traceback)" if hint and not verbose else ""),
               err=True)


def run_job(*command: str) -> None:
    """The body of a spark-submit entry point under jobs/: run one command with the script's arguments.

    >>> run_job("doctor")   # in jobs/doctor.py: `spark-submit jobs/doctor.py --config c.yaml`  # doctest: +SKIP
    """
    args = sys.argv[1:]
    flags = [a for a in args if a in ("--verbose", "-v")]
    exit_on_failure(main([*flags, *command, *(a for a in args if a not in flags)]))


def entry() -> None:
    """``main`` for launchers that call a function (the wheel's ``recsys-spark-job`` entry point, Databricks'
    ``python_wheel_task``) and for ``python -m recsys_spark``: returns on success, exits non-zero on failure."""
    exit_on_failure(main())


def exit_on_failure(code: int) -> None:
    """Exit the process with ``code`` when it is a failure; return normally on success.

    Some launchers run the entry point inside their own Python process and report a run as failed when it
    raises SystemExit at all, even ``SystemExit(0)``; a plain return is success everywhere.
    """
    if code:
        sys.exit(code)


if __name__ == "__main__":
    entry()
