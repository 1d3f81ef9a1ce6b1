"""Applying an order's open return events to Shopify (the logic behind ``returns.apply_order``).

- ``run``: the thin orchestrator of one run of one order (lock, order-wide steps, one return after
  another, the run's outcome);
- ``returns``: one return: its Shopify counterpart, its plan, its steps;
- ``steps``: one handler per plan step (``STEP_HANDLERS``);
- ``adoption``: finding the Shopify return behind a platform return after a lost answer;
- ``outcomes``: how a return's run ends, written to Postgres, failures through the retry policy;
- ``context``: the state a run shares between them.
"""

from workers.apply.run import RunResult, apply_order

__all__ = ["RunResult", "apply_order"]
