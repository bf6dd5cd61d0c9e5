"""What a producer may do about the tasks it sends: ask who consumes a queue before
sending, take back a message no worker has taken, and stop listening for results
before it exits.

Used by the ``chorus`` command: a call made with no worker to run it must not
stay queued to be paid for later, unseen, and no command may end with a
traceback from Celery's result objects.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

# A broadcast waits for replies until none has come for its timeout. The first
# asks for one reply only and returns with it (milliseconds from an idle
# worker); if that worker consumes another queue, or none answered (a reply can
# be missed), every worker is asked and every reply waited for: 2.5 s in all
# when no worker is there.
FIRST_REPLY_TIMEOUT_S = 1.0
ALL_REPLIES_TIMEOUT_S = 1.5

# Finds the message of one task in a queue's list and removes it, in one step,
# so no worker can take it in between. Pages through the list from its head,
# where the newest messages are (kombu pushes on the left, workers pop on the
# right); decodes only the messages that hold the id somewhere.
_TAKE_BACK = """
local page = 500
local start = 0
while true do
  local messages = redis.call('LRANGE', KEYS[1], start, start + page - 1)
  if #messages == 0 then return 0 end
  for _, raw in ipairs(messages) do
    if string.find(raw, ARGV[1], 1, true) then
      local ok, message = pcall(cjson.decode, raw)
      if ok and type(message) == 'table' and type(message.headers) == 'table'
          and message.headers.id == ARGV[1] then
        return redis.call('LREM', KEYS[1], 1, raw)
      end
    end
  end
  start = start + page
end
"""


def workers_consuming(queue: str) -> list[str]:
    """Names of live workers that consume ``queue``, sorted; ``[]`` when none does
    (after 2.5 s).

    Read first from the lists chorus workers keep in Redis (``workers.sweeper``);
    then, for workers that keep none (a RabbitMQ broker), asked by broadcast.

    A worker on another queue (or of another chorus on the same Redis) does not
    count: it would never take this queue's messages. The first worker to
    answer is usually enough, and then only its name is returned.
    """
    from workers.app import app

    # Every chorus worker says which queues it consumes every few seconds
    # (workers.sweeper): one read, whatever the workers' load.
    with contextlib.suppress(Exception):
        from workers.runtime import redis_client
        from workers.sweeper import live_consumers

        listed = live_consumers(redis_client(str(app.conf.broker_url)), queue)
        if listed:
            return listed
    for limit, timeout_s in ((1, FIRST_REPLY_TIMEOUT_S), (None, ALL_REPLIES_TIMEOUT_S)):
        # The replies as they came, one {node: queues} each: inspect() would merge
        # them by node name, and two machines may run workers of the same name.
        replies = (
            app.control.broadcast("active_queues", reply=True, timeout=timeout_s, limit=limit) or []
        )
        found = sorted(
            {
                node
                for reply in replies
                for node, queues in reply.items()
                if any(isinstance(q, dict) and q.get("name") == queue for q in queues or [])
            }
        )
        if found:
            return found
    return []


def take_back(task_id: str, queue: str) -> bool:
    """Remove a task's message from ``queue`` if no worker has taken it yet.

    Returns True when it was removed: it will never run, nothing was paid.
    Returns False when it is not there: a worker took it. It is then revoked,
    so a worker that holds it without having started it, or that receives it
    again after another worker died, skips it; a call already sent to the API
    still ends and its answer is stored (an identical call is answered from
    the store). Every priority level's list of the queue is searched.

    Raises:
        redis.exceptions.RedisError, kombu's OperationalError: the broker
        cannot be reached.
    """
    from workers.app import app

    with app.connection_for_write() as connection:
        channel: Any = connection.default_channel
        client = channel.client
        # kombu's names for the lists of the queue's priority levels (the
        # plain name for priority 0, which is what chorus sends).
        lists = dict.fromkeys(channel._q_for_pri(queue, p) for p in channel.priority_steps)
        script = client.register_script(_TAKE_BACK)
        for name in lists:
            if int(script(keys=[name], args=[task_id])):
                return True
    app.control.revoke(task_id)
    return False


def release_results() -> None:
    """Stop listening for task results, while the interpreter can still do it.

    Celery's Redis result backend subscribes to a task's result channel when
    the task is sent (``on_task_call``), and keeps every result object not yet
    fulfilled (a call that timed out, a chord's branches when only the chord
    was waited for) in its pending table until its result arrives. Those still
    there at exit are collected while the interpreter shuts down, and each
    ``AsyncResult.__del__`` unsubscribes its channel over a connection it must
    first reopen: the import that needs fails ("sys.meta_path is None") and
    Python prints the traceback. Closing the subscription here, and forgetting
    its channels, leaves those ``__del__`` calls nothing to send.

    Call it when this process will wait for no more results; safe to call
    more than once, and in a process that sent nothing. A Redis that has gone
    away is not an error here: its connection is dropped all the same.
    """
    celery_app = sys.modules.get("workers.app")
    if celery_app is None:  # nothing was sent: the app was never imported
        return
    import redis

    backend = celery_app.app.backend
    consumer = getattr(backend, "result_consumer", None)
    if consumer is None:  # a backend that does not subscribe
        return
    try:
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            consumer.stop()
    finally:
        subscribed = getattr(consumer, "subscribed_to", None)
        if subscribed is not None:
            subscribed.clear()
