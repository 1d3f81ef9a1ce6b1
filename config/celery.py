"""Celery settings for at-least-once delivery on Redis. Each value says why it is what it is.

Postgres holds every event; a Redis message is only a doorbell for one order. Losing one costs a
delay (the beat sweep re-rings it), never an event, so these settings aim at: no message acked
before its work is committed, no work run twice at the same time (the per-order lock sees to
that), and no task that can run forever.
"""

from __future__ import annotations

from typing import Any

from config.settings import Settings


def celery_config(settings: Settings) -> dict[str, Any]:
    deadline = settings.task_deadline_s
    return {
        "broker_url": settings.redis_url,
        # No result backend: tasks report through Postgres, and results in Redis would be one
        # more thing to expire. ignore_result keeps Celery from trying.
        "task_ignore_result": True,
        # One (stateless, disabled) backend object per process. Celery otherwise keeps it per
        # thread, and under gevent every greenlet is a thread: each task and each publish built a
        # new one, scanning the installed packages' entry points, 16 % of a busy worker's CPU
        # (celery/celery#7960).
        "result_backend_thread_safe": True,
        # JSON only: task arguments are ids, and pickle from a broker is code execution.
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        # Ack after the task returns, so a worker killed mid-task leaves the message to redeliver.
        "task_acks_late": True,
        # ...and when the worker process dies (kill -9, OOM), requeue instead of acking.
        "task_reject_on_worker_lost": True,
        # One message per process at a time: a prefetched message sits unacked behind a long
        # task and, if the worker dies, waits for the visibility timeout to come back.
        "worker_prefetch_multiplier": 1,
        # Redis redelivers an unacked message after the visibility timeout. It must exceed the
        # longest task (the hard time limit) plus the longest countdown we ever set, or a
        # running or scheduled task would be delivered twice. Long waits (an order waiting to
        # be fulfilled) are not countdowns: the sweep re-rings them from Postgres.
        "broker_transport_options": {
            "visibility_timeout": max(3600, 2 * (deadline + 60) + int(settings.shopify_backoff_cap_s) * 4),
        },
        # If the broker connection drops, cancel the running task's ack instead of letting it
        # finish and ack on a connection that no longer owns the message.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "broker_connection_retry_on_startup": True,
        # Every task has a deadline: the soft limit raises inside the task so it can record the
        # attempt; the hard limit kills a task stuck in C code or a hung socket.
        "task_soft_time_limit": deadline,
        "task_time_limit": deadline + 30,
        "task_default_queue": "returns",
        "task_default_priority": 5,
        "worker_hijack_root_logger": False,
        # Task events (Flower's live view) are off until a monitor asks for them: Flower switches
        # them on in every worker as it connects (its enable_events, by default). They are four
        # Redis messages per task, about 5 % of a busy worker's CPU, for a view nobody may be
        # watching. No "sent" event from publishers either: Flower shows a task once a worker
        # has it.
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "timezone": "UTC",
        # Exactly one scheduler even when several beat processes run (a standby per machine, or
        # two started by mistake): RedBeat keeps the schedule in Redis behind a lock the active
        # beat renews; another beat waits for that lock (tasks/scheduler.py adds surviving a Redis
        # flush or outage). The `-s` schedule file of a beat command line is then unused.
        "beat_scheduler": "tasks.scheduler:SingleBeatScheduler",
        "beat_max_loop_interval": settings.beat_max_loop_s,
        "redbeat_redis_url": settings.redis_url,
        # Said explicitly: RedBeat would otherwise hand the broker's transport options (the
        # visibility timeout) to its own Redis client.
        "redbeat_redis_options": {},
        "redbeat_key_prefix": "redbeat:",
        "redbeat_lock_timeout": settings.beat_lock_timeout_s,
        "beat_schedule": {
            name: {"task": name, "schedule": float(every), "options": {"expires": _expires(every)}}
            for name, every in (
                ("returns.sweep", settings.sweep_interval_s),
                ("shopify.maintain", settings.maintain_interval_s),
                ("reconcile.expire_waiting", settings.horizon_interval_s),
                ("reconcile.drift_check", settings.drift_interval_s),
                ("reconcile.retention", settings.retention_interval_s),
            )
        },
    }


def _expires(interval_s: float) -> float:
    """A beat task's message is dropped unrun once the next one is nearly due: after a broker or
    worker outage the backlog holds at most one run of each task, not one per missed period."""
    return round(0.8 * float(interval_s), 3)
