"""Celery distribution: submit, the scheduler (reconciler) and workers."""

from __future__ import annotations

from typing import Any

import click

from scheduler.cli.options import (
    DB_OPTION,
    QUIET_OPTION,
    SWEEP_ID,
    policy,
    policy_options,
    sweep_id_of,
)
from scheduler.database import open_database
from scheduler.errors import UserError


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@DB_OPTION
@QUIET_OPTION
@policy_options
def submit(
    spec: str,
    db: str | None,
    quiet: bool,
    stale_after: float,
    requeue_after: float,
    max_in_flight: int,
    task_seconds: float,
) -> None:
    """Record SPEC and enqueue its first chunks for Celery workers; returns at once.

    `initsweep scheduler` keeps the sweep moving (bounded queue, retries, aggregation).
    """
    from scheduler.errors import BrokerUnavailableError
    from scheduler.sweeps import check_broker, plan_spec, reconcile_pass, record

    plan = plan_spec(spec)
    check_broker()  # before anything is recorded: a retry must not make a second sweep
    with open_database(db) as factory:
        sweep_id = record(factory, plan)
        try:
            report = reconcile_pass(
                factory, [sweep_id], policy(stale_after, requeue_after, max_in_flight, task_seconds)
            )
        except BrokerUnavailableError as exc:
            raise BrokerUnavailableError(
                f"sweep {sweep_id} recorded, but {exc}; `initsweep scheduler` (or "
                f"`initsweep resume {sweep_id} --distributed`) sends it once the broker is back"
            ) from exc
    if quiet:
        click.echo(sweep_id)
    else:
        click.echo(
            f"sweep {sweep_id}: {plan.name!r} · {len(plan.configs)} configurations · "
            f"{plan.n_chunks} chunks · {report.sent} enqueued in {report.tasks} tasks; "
            "run `initsweep scheduler` to keep it moving"
        )


@click.command("scheduler")
@DB_OPTION
@click.option("--interval", type=float, default=2.0, show_default=True)
@click.option(
    "--sweep",
    "sweeps_",
    type=SWEEP_ID,
    multiple=True,
    help="Only these sweeps (ids or names; repeat).",
)
@click.option("--until-finished", is_flag=True, help="Exit once the given sweeps have ended.")
@policy_options
def scheduler_cmd(
    db: str | None,
    interval: float,
    sweeps_: tuple[int | str, ...],
    until_finished: bool,
    stale_after: float,
    requeue_after: float,
    max_in_flight: int,
    task_seconds: float,
) -> None:
    """Long-running reconciler: enqueue, re-enqueue lost or stale chunks, aggregate."""
    import logging

    from scheduler.reconcile import celery_sender, serve
    from scheduler.sweeps import checked_broker_url

    logging.basicConfig(level=logging.INFO, format="%(asctime)s scheduler %(message)s")
    log = logging.getLogger("initsweep.scheduler")
    if until_finished and not sweeps_:
        raise UserError("--until-finished: name the sweeps with --sweep ID")
    sweep_ids = [sweep_id_of(db, s) for s in sweeps_]
    checked_broker_url()

    def on_pass(report: Any) -> None:
        if report.sent or report.stale or report.requeued or report.aggregated:
            log.info(
                "sent %d chunks in %d tasks · stale %d · requeued %d · aggregated %d",
                report.sent,
                report.tasks,
                report.stale,
                report.requeued,
                report.aggregated,
            )

    with open_database(db) as factory:
        serve(
            factory,
            celery_sender(),
            policy(stale_after, requeue_after, max_in_flight, task_seconds),
            interval_s=interval,
            sweep_ids=sweep_ids or None,
            until_finished=until_finished,
            on_pass=on_pass,
        )


@click.command()
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes (default: one per core; 1 with --gpu).",
)
@click.option(
    "--queues", "-Q", default=None, help="Comma-separated queues (default cpu; gpu with --gpu)."
)
@click.option("--gpu", type=int, default=None, metavar="I", help="Pin this worker to GPU I.")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--hostname", "-n", default=None, help="Celery node name.")
def worker(
    concurrency: int | None,
    queues: str | None,
    gpu: int | None,
    loglevel: str,
    hostname: str | None,
) -> None:
    """Start a Celery worker (prefork) that runs chunks from the broker into the database."""
    import os

    from scheduler.sweeps import checked_broker_url, require_compute
    from worker.pool import default_workers

    require_compute("worker")
    checked_broker_url()
    os.environ.setdefault("INITSWEEP_TF_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
        os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    from worker.celery_app import app

    argv = [
        "worker",
        f"--concurrency={concurrency or (1 if gpu is not None else default_workers())}",
        f"--queues={queues or ('gpu' if gpu is not None else 'cpu')}",
        f"--loglevel={loglevel}",
        "--pool=prefork",
        "--without-gossip",
        "--without-mingle",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    app.worker_main(argv)
