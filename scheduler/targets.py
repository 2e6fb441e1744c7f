"""Where a targeted sweep's configurations stand against their precision target: the SE reached
(of the aggregate results print, or of the trials done so far) beside the goal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scheduler.analysis.records import config_columns
from scheduler.formatting import config_label
from worker.target import Target

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass(frozen=True)
class TargetState:
    """One configuration's target, the SE of its results (None: none yet) and their trials.

    `complete`: its results are final (met at `stop_chunk`, or every chunk merged without)."""

    label: str
    target: Target
    depth: int
    se: float | None
    n_trials: int
    complete: bool
    met: bool

    def line(self) -> str:
        """`target activation std at layer 10: se 0.0019 <= 0.002 after 600 trials`."""
        what = f"target {self.target.describe(self.depth)}"
        kind, goal = self.target.kind, f"{self.target.goal:.3g}"
        if self.se is None:
            reached = f"{kind} — (target {goal})"
        elif self.complete:
            reached = f"{kind} {self.se:.3g} {'<=' if self.met else '>'} {goal}"
        else:
            reached = f"{kind} {self.se:.3g} so far (target {goal})"
        end = ""
        if self.complete and not self.met:
            end = " (its maximum: not met)"
        elif not self.complete:
            end = ", running"
        return f"{self.label}: {what}: {reached} after {self.n_trials} trials{end}"

    def record(self) -> dict[str, Any]:
        """As plain values (`status --format json`)."""
        return {
            "configuration": self.label,
            "target": self.target.to_json(),
            "layer": self.target.layer_of(self.depth),
            self.target.kind: self.se,
            "n_trials": self.n_trials,
            "complete": self.complete,
            "met": self.met,
        }


def target_states(*, session: Session, sweep_id: int) -> list[TargetState]:
    """The targeted configurations of the sweep, in position order (none: an empty list)."""
    from scheduler.store import sweep_config_rows
    from worker.aggregate import layer_stat_rows, partial_records, records_by_configuration

    infos = sweep_config_rows(session=session, sweep_id=sweep_id, targeted=True)
    if not infos:
        return []
    ids = [info.id for info in infos]
    by_id = records_by_configuration(layer_stat_rows(session=session, configuration_ids=ids))
    open_ids = [info.id for info in infos if info.status != "done"]
    if open_ids:
        by_id.update(
            partial_records(session=session, sweep_id=sweep_id, configuration_ids=open_ids)
        )
    out = []
    for info in infos:
        target = info.target
        assert target is not None
        key = (target.layer_of(info.config.depth), target.quantity)
        record = next((r for r in by_id.get(info.id, []) if r.key == key), None)
        complete = info.status == "done"
        out.append(
            TargetState(
                label=config_label(config_columns(info.config, info.axes)),
                target=target,
                depth=info.config.depth,
                se=target.reached(record),
                n_trials=0 if record is None else record.n_trials,
                complete=complete,
                met=complete and info.stop_chunk is not None,
            )
        )
    return out
