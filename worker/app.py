"""The Celery app: queues, routes, reliability settings and the beat schedule.

Queues: ``sms.otp`` (one-recipient codes; give it its own worker so no campaign delays it),
``sms.notify``, ``sms.bulk`` (campaigns and large sends) and ``sms.poll`` (receipts, deferrals, sweeps).
Tasks are acknowledged after they finish (``acks_late``) and given back if the worker dies, so a killed
worker loses nothing; the dispatch logic makes the redelivered task safe to run again.
"""

from __future__ import annotations

from typing import Any

import redis
import structlog
from celery import Celery, signals
from kombu import Exchange, Queue
from kombu.exceptions import OperationalError
from kombu.transport import redis as kombu_redis

from config.settings import PROVIDERS, Settings, get_settings
from worker.logging import configure as configure_logging
from worker.registry import offers

log = structlog.get_logger(__name__)
QUEUES = ("sms.otp", "sms.notify", "sms.bulk", "sms.poll")
# kombu's Redis transport keeps a list per queue and priority step and pops the lower steps first: a
# retry (step 0) runs ahead of fresh chunks (step 6) instead of waiting behind the whole queue.
PRIORITY_STEPS = (0, 3, 6, 9)
PRIORITY_SEP = ":"
RETRY_PRIORITY = 0
DEFAULT_PRIORITY = 6
# Redis or the broker out of reach (after the client's own retries): the task is retried by Celery.
# NoScriptError: Redis restarted and lost its script cache while a pipeline's EVALSHA was retried (redis-py
# loads a pipeline's scripts once, before its first try); the task's rerun loads them again.
INFRA_ERRORS = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    redis.exceptions.NoScriptError,
    OperationalError,
)


def broker_url(settings: Settings) -> str:
    """Celery's spelling of the Redis URL (a unix socket is ``redis+socket://`` there)."""
    url = settings.effective_redis_url
    return "redis+socket://" + url.removeprefix("unix://") if url.startswith("unix://") else url


def queue_for(kind: str, recipients: int, settings: Settings) -> str:
    if kind == "otp":
        return "sms.otp"
    if kind == "marketing" or recipients > settings.bulk_threshold:
        return "sms.bulk"
    return "sms.notify"


# What beat pulls from each vendor that offers it: (adapter operation, task, the section's interval).
PULLS = {
    "receipts": ("poll_receipts", "tasks.poll.poll_receipts", "receipt_poll_interval_s"),
    "inbound": ("poll_inbound", "tasks.inbound.poll_inbound", "inbound_poll_interval_s"),
    "balance": ("balance", "tasks.vendors.poll_balance", "balance_poll_interval_s"),
}


def beat_schedule(settings: Settings) -> dict[str, Any]:
    """Receipts from every vendor that offers a pull, each at its own interval; long waits; the sweeps;
    the campaign runner's tick. Every task here is safe to run twice at once (a second beat, a manual
    run)."""
    pulls = {
        f"{name}-{what}": {
            "task": task,
            "schedule": getattr(settings.vendor(name), interval),
            "args": (name,),
        }
        for what, (operation, task, interval) in PULLS.items()
        for name in PROVIDERS
        if offers(name, operation)
    }
    return {
        **pulls,
        "apply-pushes": {"task": "tasks.push.apply_pushes", "schedule": settings.push.apply_interval_s},
        "deliver-webhooks": {
            "task": "tasks.webhooks.deliver_webhooks",
            "schedule": settings.webhooks.interval_s,
        },
        "release-deferred": {"task": "tasks.poll.release_deferred", "schedule": 2.0},
        "tick-campaigns": {"task": "tasks.campaign.tick_campaigns", "schedule": settings.campaign.tick_s},
        "sweep-leases": {"task": "tasks.poll.sweep_leases", "schedule": settings.sweep_interval_s},
        "drain-receipts": {"task": "tasks.poll.drain_receipts", "schedule": settings.sweep_interval_s},
        "settle-overdue": {"task": "tasks.poll.settle_overdue", "schedule": 60.0},
    }


def transport_options(settings: Settings) -> dict[str, Any]:
    """Unacked tasks of a dead worker go back to the queue after ``visibility_timeout_s`` (every task is
    far shorter: a vendor call, or planning). Kombu looks for them every ``interval * throttle`` seconds
    (100 s by default); look every few seconds instead."""
    timeout = settings.visibility_timeout_s
    return {
        "visibility_timeout": timeout,
        "unacked_restore_interval": max(1, min(10, timeout // 3)),
        "unacked_restore_throttle": 1,
        "priority_steps": list(PRIORITY_STEPS),
        "sep": PRIORITY_SEP,
        "socket_timeout": settings.redis_socket_timeout_s,
        "socket_connect_timeout": settings.redis_socket_timeout_s,
        "retry_on_timeout": True,
        "health_check_interval": 10,
    }


def publish_retry_policy(settings: Settings) -> dict[str, Any]:
    """Publishing waits out a broker outage of ``redis_outage_s`` before the task fails."""
    return {
        "max_retries": int(settings.redis_outage_s) + 5,
        "interval_start": 0.1,
        "interval_step": 0.25,
        "interval_max": 1.0,
    }


def configure(app: Celery, settings: Settings) -> None:
    url = broker_url(settings)
    app.conf.update(
        broker_url=url,
        result_backend=url,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_default_priority=DEFAULT_PRIORITY,
        task_publish_retry=True,
        task_publish_retry_policy=publish_retry_policy(settings),
        result_backend_always_retry=True,
        result_backend_max_retries=int(settings.redis_outage_s) + 5,
        redis_socket_timeout=settings.redis_socket_timeout_s,
        redis_socket_connect_timeout=settings.redis_socket_timeout_s,
        redis_retry_on_timeout=True,
        # Chunk tasks are short (a vendor call); a small prefetch keeps a busy worker from hoarding them.
        worker_prefetch_multiplier=settings.worker_prefetch,
        task_default_queue="sms.notify",
        task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
        task_routes={
            f"{module}.*": {"queue": "sms.poll"} for module in TASK_MODULES if module != "tasks.send"
        },
        task_ignore_result=True,
        result_expires=86400,
        broker_transport_options=transport_options(settings),
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        timezone="Asia/Shanghai",
        beat_schedule=beat_schedule(settings),
    )



DROPPED = "task ended after its broker connection dropped: it comes back after the visibility timeout"


class _SurvivingQoS(kombu_redis.QoS):
    """Kombu's Redis QoS, made to survive the broker connection dropping (Redis restarting).

    When it drops, kombu closes the channel and gives the worker's unacknowledged tasks back at once
    through a connection that is already gone, and a task that finishes afterwards acks on that closed
    channel: both raise ``AttributeError`` ('NoneType' object has no attribute 'hostname' / 'client',
    kombu issues 582 and 970) and the worker exits with "Unrecoverable error". Leave such tasks where
    they are instead: the unacked index keeps them and kombu restores them after the visibility timeout
    (60 s), which every task here tolerates (a rerun is safe: see tasks/dispatch.py).
    """

    restore_at_shutdown = False

    def ack(self, delivery_tag: Any) -> None:
        if self.channel.connection is None:
            log.warning(DROPPED, tag=delivery_tag)
            return
        super().ack(delivery_tag)  # type: ignore[no-untyped-call]

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        if self.channel.connection is None:
            log.warning(DROPPED, tag=delivery_tag)
            return
        super().reject(delivery_tag, requeue=requeue)  # type: ignore[no-untyped-call]


kombu_redis.Channel.QoS = _SurvivingQoS

TASK_MODULES = [
    "tasks.send",
    "tasks.poll",
    "tasks.push",
    "tasks.inbound",
    "tasks.vendors",
    "tasks.webhooks",
    "tasks.campaign",
]
app = Celery("smsdispatch", include=TASK_MODULES)
configure(app, get_settings())


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)


@signals.task_prerun.connect
def _bind_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task=getattr(task, "name", None))
