"""The device that computed each configuration, and the theory predicted for it."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from models import Chunk, Configuration
from models.db import session_scope
from scheduler.activity import config_devices
from scheduler.analysis.compare import device_predictor
from scheduler.analysis.theory import predict
from scheduler.store import create_sweep
from tests.db.builders import grid, sim_config, sweep_plan
from tests.db.conftest import Db
from worker.contract import Scheme


def test_each_configuration_gets_the_device_most_of_its_done_chunks_ran_on(db: Db) -> None:
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(
            session=session, plan=sweep_plan(grid([4, 8, 16], trials=40, chunk_trials=10))
        )
    with session_scope(db.factory) as session:
        rows = session.execute(sa.select(Configuration.id, Configuration.config_hash)).all()
        hashes = {cid: h for cid, h in rows}
        chunks = session.scalars(sa.select(Chunk).order_by(Chunk.configuration_id, Chunk.id))
        by_config: dict[int, list[Chunk]] = {}
        for chunk in chunks:
            by_config.setdefault(chunk.configuration_id, []).append(chunk)
        first, second, third = sorted(by_config)
        plan = {  # (status, device) of each of the 4 chunks
            first: [("done", "GPU:0"), ("done", "CPU:0"), ("done", "GPU:0"), ("pending", None)],
            second: [("done", "CPU:0"), ("failed", "GPU:0"), ("failed", "GPU:0"), ("done", None)],
            third: [("pending", None)] * 4,  # nothing done: no device
        }
        for cid, states in plan.items():
            for chunk, (status, device) in zip(by_config[cid], states, strict=True):
                chunk.status, chunk.device = status, device
    with session_scope(db.factory) as session:
        devices = config_devices(session=session, sweep_id=sweep_id)
    assert devices == {hashes[first]: "GPU:0", hashes[second]: "CPU:0"}


def test_theory_follows_the_device_that_computed() -> None:
    """float32 on CPU flushes products below the smallest normal; an accelerator keeps gradual
    underflow, so a vanishing net collapses later there (`precision.underflow_model`)."""
    config = dataclasses.replace(
        sim_config(width=16, depth=200, activation="linear"),
        init=Scheme("normal", (("mean", 0.0), ("std", 0.05))),
    )
    cpu = predict(config).underflow_layer
    gpu = predict(config, device="NVIDIA H200").underflow_layer
    assert cpu is not None and gpu is not None and gpu > cpu
    on = device_predictor({config.config_hash: "NVIDIA H200"})
    assert on(config).underflow_layer == gpu
    assert device_predictor({})(config).underflow_layer == cpu
