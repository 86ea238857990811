"""Publish Celery task messages straight onto the Redis broker's queue lists.

Why: ``send_task`` costs ~0.2 ms more CPU per message than this (routing, option merging, kombu's
producer pool, entity declaration and retry wrappers; measured in app/speed/README.md), as much
as a fifth of a whole webhook delivery. What it ends up writing is simple: with the anonymous
exchange, kombu's Redis transport LPUSHes one JSON envelope onto the list named after the queue.

How, through public APIs: Celery builds the task message itself (``app.amqp.create_task_message``,
the protocol-2 headers, properties and body ``send_task`` uses); the registered task's execution
options come from its public attributes (``time_limit``, ``soft_time_limit``, ...); kombu's JSON
serializer (``kombu.serialization.dumps``) encodes the body. Only the transport envelope around
it (``body`` base64, ``properties.delivery_info``, ``delivery_tag``) is written here, as kombu's
Redis transport stores it; that is the one thing this relies on, so pyproject bounds kombu and
Celery below their next minor versions and ``tests/commerce/test_task_publisher.py`` compares what
this writes with what ``send_task`` writes (and has a real worker run it): a release that changes
the format fails there before the bound is raised.

Building the message is Celery's work once per task and thread, not per message: ``message``
fills in a ``_Template`` (Celery's message for stand-in ids and arguments) with the new ids and
plain-string arguments, and a template is only used once a message rendered from it has been
found byte for byte equal to Celery's whole build with the same ids (anything else is built
whole). The format test compares both with ``send_task``.

What it skips: the ``before/after_task_publish`` signals (nothing here connects to them), Celery's
publish retry policy (a failed publish raises; ``enqueue_after_commit`` logs it and the sweepers
re-enqueue from Postgres, as for any lost message) and the sent event (``task_send_sent_event`` is
off). Only for a plain ``redis://`` broker (``global_keyprefix`` honoured); anything else
(sentinel, TLS, another transport, priorities) and any task declaring routing or an expiry of its
own keeps ``send_task``.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import redis
from celery import Celery
from kombu.serialization import dumps as kombu_dumps

from app.speed.connections import thread_connection
from app.speed.resp import pack

Task = tuple[str, tuple[Any, ...], float | None]  # (name, args, countdown)

# Execution options ``send_task`` would take from a registered task and that only it knows how to
# write (none of Codex's tasks declares one): such a task goes through ``send_task``.
_OWN_ROUTING = ("queue", "routing_key", "exchange", "priority", "expires")
_PLAIN = (str, int, float, bool, type(None))
_REPR_SHORT = 500  # well under Celery's argsrepr_maxsize (1024), where its saferepr starts cutting


def _plain_repr(arguments: list[Any]) -> str | None:
    """What Celery's ``saferepr`` writes for short plain arguments (ids: ``repr`` itself, at a
    quarter of its cost); None lets Celery compute it (anything else, and ``()`` for none)."""
    if not arguments or not all(type(a) in _PLAIN for a in arguments):
        return None
    if not all(_repr_as_saferepr(a) for a in arguments if type(a) is str):
        return None
    text = repr(arguments)
    return text if len(text) < _REPR_SHORT else None


def _repr_as_saferepr(text: str) -> bool:
    """Whether ``repr`` writes ``text`` as Celery's saferepr does: not when it escapes something
    (a backslash, a control character) or quotes it with double quotes (a single quote in it)."""
    return text.isprintable() and "\\" not in text and "'" not in text


def _answered() -> None:
    """``send_unanswered``'s answer when there is nothing left to read."""


class RedisTaskPublisher:
    """``__call__``/``send_many`` publish ``name(*args)`` to ``route(name)``'s queue (module docstring)."""

    def __init__(self, celery_app: Celery, route: Callable[[str], str]) -> None:
        self.celery_app = celery_app
        self.route = route
        conf = celery_app.conf
        self.url = conf.broker_url
        timeout = conf.broker_connection_timeout or None
        self.client = redis.Redis.from_url(self.url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self.supported = self.supports(celery_app)  # checked once: reading the settings costs ~20 us
        self._templates: dict[tuple[Any, ...], _Template | None] = {}  # (``message``)

    @staticmethod
    def supports(celery_app: Celery) -> bool:
        conf = celery_app.conf
        url = conf.broker_url
        if not isinstance(url, str) or not url.startswith("redis://") or ";" in url:
            return False  # sentinel/TLS/failover lists and other transports keep kombu
        return not conf.task_queue_max_priority

    def __call__(self, name: str, args: tuple[Any, ...], countdown: float | None) -> None:
        self.send_many([(name, args, countdown)])

    def send_many(self, tasks: Sequence[Task]) -> None:
        """Several messages in one round trip (the emails of one purchase, a sweep's batch)."""
        prefix = self._prefix(tasks)
        if prefix is None:
            return
        if len(tasks) == 1:
            queue, message = self.message(*tasks[0])
            self._lpush(prefix + queue, message)
            return
        pipe = self.client.pipeline(transaction=False)
        for name, args, countdown in tasks:
            queue, message = self.message(name, args, countdown)
            pipe.lpush(prefix + queue, message)
        pipe.execute()

    def send_unanswered(self, name: str, args: tuple[Any, ...], countdown: float | None) -> Callable[[], None]:
        """Send one message and return what reads Redis's answer to it: the caller calls it once,
        before this thread publishes again, and meanwhile does other work (the webhook fast path
        writes its log line) instead of waiting. It raises what ``__call__`` would; a connection
        found dead by it is reopened and the message sent once more, as ``_lpush`` does."""
        prefix = self._prefix([(name, args, countdown)])
        if prefix is None:
            return _answered  # (Celery's path sent it already)
        queue, message = self.message(name, args, countdown)
        key = prefix + queue
        connection = thread_connection(self.client)
        try:
            connection.send_packed_command([pack("LPUSH", key, message)])
        except (redis.ConnectionError, redis.TimeoutError):
            connection.disconnect()
            self._lpush(key, message)  # a dead connection: once more now, on a new one
            return _answered
        except BaseException:
            connection.disconnect()
            raise

        def answer() -> None:
            try:
                connection.read_response()
                return
            except redis.ResponseError:
                raise  # an error reply, read whole: the connection is still in step
            except (redis.ConnectionError, redis.TimeoutError):
                connection.disconnect()
            except BaseException:
                connection.disconnect()  # (out of step mid-reply)
                raise
            self._lpush(key, message, attempts=1)  # once more, on a new connection

        return answer

    def _prefix(self, tasks: Sequence[Task]) -> str | None:
        """The broker's key prefix, or None once Celery's path has sent ``tasks``: the publisher
        was reconfigured since (tests do), or a task only Celery knows how to route."""
        conf = self.celery_app.conf
        if conf.broker_url != self.url or not self.supported or any(self._own_routing(t[0]) for t in tasks):
            for name, args, countdown in tasks:
                self.celery_app.send_task(name, args=list(args), queue=self.route(name), countdown=countdown)
            return None
        # kombu's Redis transport prefixes every key with ``global_keyprefix`` when one is set.
        prefix: str = (conf.broker_transport_options or {}).get("global_keyprefix") or ""
        return prefix

    def _lpush(self, key: str, message: bytes, attempts: int = 2) -> None:
        """One LPUSH on this thread's connection (``send_packed_command``/``read_response``, packed
        by ``app.speed.resp``): the command layer's retry wrapper and the pool's per-checkout socket
        poll cost a third as much again.
        A reused connection that turns out dead (Redis restarted, an idle timeout) is reopened and
        the command sent once more, as the client's default retry would: a message pushed twice
        is harmless (the worker's claim is conditional), a lost one waits for the sweeper."""
        for attempt in range(attempts):
            connection = thread_connection(self.client)
            try:
                connection.send_packed_command([pack("LPUSH", key, message)])
                connection.read_response()
                return
            except redis.ResponseError:
                raise  # an error reply, read whole: the connection is still in step
            except (redis.ConnectionError, redis.TimeoutError):
                connection.disconnect()
                if attempt == attempts - 1:
                    raise
            except BaseException:
                connection.disconnect()  # (out of step mid-reply)
                raise

    def _registered(self, name: str) -> Any:
        """The task registered under ``name`` in this process (a worker's), or None. As ``send_task``,
        it does not finalize an app that is not (the web process: there no task is registered, and
        ``tasks`` would register every shared task imported so far). ``finalized`` is Celery's
        public flag (missing from the type stubs)."""
        app: Any = self.celery_app
        return app.tasks.get(name) if app.finalized else None

    def _own_routing(self, name: str) -> bool:
        registered = self._registered(name)
        return registered is not None and any(getattr(registered, key, None) is not None for key in _OWN_ROUTING)

    def message(self, name: str, args: tuple[Any, ...], countdown: float | None) -> tuple[str, bytes]:
        """(queue, the JSON envelope kombu's Redis transport stores) for ``name(*args)``.

        A message with no countdown, sent from outside a task, whose arguments are all plain
        short strings (``_simple``: event ids, row ids), is this thread's ``_Template`` for the
        task with the ids filled in: what ``build`` writes, at a fraction of its cost (Celery's
        headers, kombu's body encoding and the envelope's JSON are done once per task and
        thread). Anything else is built whole."""
        if countdown is None and _simple(args):
            template = self._template(name, len(args))
            if template is not None:
                return template.queue, template.render(str(uuid.uuid4()), args, str(uuid.uuid4()))
        return self.build(name, args, countdown)

    def _template(self, name: str, count: int) -> _Template | None:
        """This thread's template for ``name`` with ``count`` arguments, made and checked on first
        use; None when there is none (a task publishing: its trail differs per message; or the
        check failed). Keyed by what Celery writes differently per process, thread and task
        registration (``origin``, ``reply_to``, time limits)."""
        app = self.celery_app
        if app.current_worker_task is not None:
            return None
        key = (name, count, os.getpid(), app.thread_oid, self._registered(name))
        try:
            return self._templates[key]
        except KeyError:
            pass
        if len(self._templates) >= _TEMPLATES_KEPT:
            self._templates.clear()  # (threads come and go in some processes: keep it bounded)
        template = self._templates[key] = _Template.make(self, name, count)
        return template

    def build(
        self,
        name: str,
        args: tuple[Any, ...],
        countdown: float | None,
        *,
        task_id: str | None = None,
        delivery_tag: str | None = None,
        argsrepr: str | None = None,
    ) -> tuple[str, bytes]:
        """``message`` built whole by Celery (``task_id``, ``delivery_tag`` and ``argsrepr``: given
        values instead of new ids and the arguments' repr, for ``_Template``)."""
        app = self.celery_app
        task_id = task_id or str(uuid.uuid4())
        root_id: str | None = None
        parent_id: str | None = None
        parent = app.current_worker_task  # a task publishing: keep the trail, as send_task does
        if parent is not None:
            root_id = parent.request.root_id or parent.request.id
            parent_id = parent.request.id
        # As send_task does for a task registered in this process (a worker): its time limits go
        # into the message; elsewhere they are None.
        registered = self._registered(name)
        queue = self.route(name)
        arguments = list(args)
        headers, properties, body, _ = app.amqp.create_task_message(
            task_id,
            name,
            arguments,
            {},
            countdown=countdown or None,
            reply_to=app.thread_oid,
            time_limit=getattr(registered, "time_limit", None),
            soft_time_limit=getattr(registered, "soft_time_limit", None),
            root_id=root_id,
            parent_id=parent_id,
            ignore_result=None,
            argsrepr=argsrepr if argsrepr is not None else _plain_repr(arguments),
            kwargsrepr="{}",
        )
        content_type, content_encoding, data = kombu_dumps(body, serializer="json")
        envelope = {
            "body": base64.b64encode(data.encode() if isinstance(data, str) else data).decode("ascii"),
            "content-encoding": content_encoding,
            "content-type": content_type,
            "headers": headers,
            "properties": {
                **properties,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": delivery_tag or str(uuid.uuid4()),
            },
        }
        return queue, json.dumps(envelope).encode()


# Stand-ins for a template's per-message parts: none is a substring of another, nor of what replaces
# them (uuids, base64, ``_simple`` arguments have no "~").
_SLOT_ID = "~codex-slot-id~"
_SLOT_TAG = "~codex-slot-tag~"
_SLOT_REPR = "~codex-slot-repr~"
_SLOT_ARG = "~codex-slot-arg-{}~"
_TEMPLATES_KEPT = 512


def _simple(args: tuple[Any, ...]) -> bool:
    """Whether every argument is a str that JSON and ``repr`` both write as it is between quotes
    (printable ASCII without quotes, backslash or "~"), and ``_plain_repr`` keeps their repr."""
    if not args:
        return False  # (``()``'s argsrepr is Celery's own)
    size = 0
    for arg in args:
        if type(arg) is not str or not arg.isascii() or not arg.isprintable():
            return False
        if '"' in arg or "'" in arg or "\\" in arg or "~" in arg:
            return False
        size += len(arg) + 4
    return size < _REPR_SHORT  # (the repr's length)


class _Template:
    """One task's message, built by Celery (``RedisTaskPublisher.build``) with stand-ins for the
    task id, the delivery tag, the arguments and their repr, which ``render`` replaces.

    Why it is the message ``build`` writes: the ids and ``_simple`` arguments stand in the JSON
    texts exactly as they are (no escaping), everything else Celery writes depends only on what
    the template is keyed by, and ``make`` checks it: a message rendered from the template must be
    byte for byte the one ``build`` writes with the same ids, or there is no template."""

    def __init__(self, queue: str, envelope: str, body: str, count: int) -> None:
        self.queue = queue
        self.envelope = envelope  # the envelope's JSON, "body" a stand-in for the body's base64
        self.body = body  # the body's JSON, arguments as stand-ins
        self.count = count

    @classmethod
    def make(cls, publisher: RedisTaskPublisher, name: str, count: int) -> _Template | None:
        slots = tuple(_SLOT_ARG.format(i) for i in range(count))
        queue, raw = publisher.build(name, slots, None, task_id=_SLOT_ID, delivery_tag=_SLOT_TAG, argsrepr=_SLOT_REPR)
        envelope = json.loads(raw)
        body = base64.b64decode(envelope["body"]).decode()
        envelope["body"] = _SLOT_BODY
        template = cls(queue, json.dumps(envelope), body, count)
        probe_args = tuple(f"probe{i}_{uuid.uuid4().hex}" for i in range(count))
        probe_id, probe_tag = str(uuid.uuid4()), str(uuid.uuid4())
        _, expected = publisher.build(name, probe_args, None, task_id=probe_id, delivery_tag=probe_tag)
        if template.render(probe_id, probe_args, probe_tag) != expected:
            return None  # (Celery writes something of these elsewhere too: build every message)
        return template

    def render(self, task_id: str, args: tuple[str, ...], delivery_tag: str) -> bytes:
        body = self.body
        for i, arg in enumerate(args):
            body = body.replace(f'"{_SLOT_ARG.format(i)}"', f'"{arg}"')
        encoded = base64.b64encode(body.encode()).decode("ascii")
        text = self.envelope.replace(_SLOT_ID, task_id).replace(_SLOT_TAG, delivery_tag)
        text = text.replace(_SLOT_BODY, encoded).replace(_SLOT_REPR, repr(list(args)))
        return text.encode()


_SLOT_BODY = "~codex-slot-body~"
