"""Celery's lowercase settings, derived from :class:`Settings` and never edited by hand.

The reliability settings are docs/ARCHITECTURE.md, "Nothing lost, nothing paid for
twice": acknowledge late, reject on a lost worker, prefetch one message per slot,
JSON only, and a visibility timeout that outlasts the longest task (checked when the
settings load).
"""

from __future__ import annotations

from typing import Any

from config.settings import Settings


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration mapping for these settings."""
    transport_options = {
        "visibility_timeout": int(settings.worker.visibility_timeout_s),
        # No retry_on_timeout: kombu only batches publishes into one pipeline
        # when redis-py will not replay it (a replay would enqueue twice).
        # Celery's publish retry policy and the consumer's reconnect cover
        # timeouts instead.
        "health_check_interval": 25,
        # Without these a publish to a Redis that vanished mid-connection
        # waits forever instead of failing and being retried.
        "socket_timeout": 30,
        "socket_connect_timeout": 5,
        # A dead worker's messages come back within visibility timeout plus
        # this (kombu's default sweep is 10 s x a throttle of 10).
        "unacked_restore_interval": settings.worker.restore_interval_s,
        "unacked_restore_throttle": 1,
    }
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.result_backend_url,
        "broker_transport_options": transport_options,
        "result_backend_transport_options": {"retry_policy": {"timeout": 5.0}},
        # A result write that meets a Redis restart is retried, not dropped.
        "result_backend_always_retry": True,
        "result_backend_max_retries": 30,
        "broker_connection_retry_on_startup": True,
        # JSON only: a pickle from the broker would run code on the worker.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # At-least-once: a message is acknowledged only after its task ends,
        # and a worker that dies mid-task gives its messages back.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": settings.worker.queue,
        "task_create_missing_queues": True,
        "result_expires": settings.results.expires_s,
        "result_extended": False,
        # Flower lists tasks from events. Off by default: they cost about
        # 8 % of a worker's CPU per call (docs/PERFORMANCE.md), and Flower
        # turns them on in every worker it sees, within 5 s of starting.
        "worker_send_task_events": settings.worker.send_events,
        "task_send_sent_event": settings.worker.send_sent_events,
        "worker_hijack_root_logger": False,
        # chorus's limiter holds the API's limits; Celery's per-task
        # rate_limit (per worker, celery#5732) is unused, and skipping its
        # check saves work on every message.
        "worker_disable_rate_limits": True,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "enable_utc": True,
        "timezone": "UTC",
    }
