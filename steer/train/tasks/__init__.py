"""One file per kind of model the training loop trains; ``TASKS`` maps a recipe's ``kind`` to its task."""

from __future__ import annotations

from steer.train.loop import Task
from steer.train.tasks import apm, cost, dpo, rl, rm, sft

TASKS: dict[str, Task] = {"sft": sft.TASK, "apm": apm.TASK, "dpo": dpo.TASK, "rm": rm.TASK, "cost": cost.TASK,
                         "rl": rl.TASK}
