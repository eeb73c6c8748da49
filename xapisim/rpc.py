"""Dispatch of XenAPI calls: checks in xapi's order, then the handler.

xapi checks a call in this order: the method name, the parameter count
(not counting the session), the parameter types, the session, whether the
message has an Async form (when called as ``Async.``), and only then runs
the operation.  The simulator does the same, so a client sees
the same error xapi would give for the same mistake.
"""

import threading
import time

from xapisim.errors import XapiError
from xapisim.schema import NULL_REF, RefType, SetType

HANDLERS = {}

# Messages that have no Async form in xapi.
_NO_ASYNC_CLASSES = ('session', 'event', 'task')


def handler(cls, name):
    """Register the implementation of ``cls.name``."""
    def register(fn):
        HANDLERS[(cls, name)] = fn
        return fn
    return register


class Context(object):
    """What a handler knows about the call it serves."""

    def __init__(self, pool, host, session, task=None, method=''):
        self.pool = pool
        self.db = pool.db
        self.host = host          # the Host object that received the call
        self.session = session    # session ref ('' for login)
        self.task = task          # task ref when running as Async
        self.method = method

    def progress(self, fraction):
        self.db.assert_alive()
        if self.task and self.db.exists('task', self.task):
            self.db.set('task', self.task, progress=float(fraction))

    def check_cancelled(self):
        """Stop here if a xapi restart killed this work or the client
        cancelled its task."""
        self.db.assert_alive()
        if self.task and self.pool.tasks.cancel_requested(self.task):
            raise XapiError('TASK_CANCELLED', self.task)

    def call(self, method, *args):
        """Run another API call internally, under this call's session."""
        return self.pool.api.invoke(self.host, method, (self.session,) + args,
                                    internal=True)


class Api(object):
    def __init__(self, pool):
        self.pool = pool
        self.schema = pool.schema
        self.counts = {}
        self._count_lock = threading.Lock()

    # -- the checks ------------------------------------------------------

    def _message(self, method):
        cls_name, _, msg_name = method.partition('.')
        cls = self.schema.classes.get(cls_name)
        msg = cls.messages.get(msg_name) if cls else None
        if msg is None:
            raise XapiError('MESSAGE_METHOD_UNKNOWN', method)
        return msg

    def _check_arity(self, msg, params):
        declared = [p for p in msg.params if p[0] != 'session_id']
        received = len(params) - (1 if msg.takes_session else 0)
        optional = len(msg.optional_tail)
        mandatory = len(declared) - optional
        if received < mandatory or received > len(declared):
            raise XapiError('MESSAGE_PARAMETER_COUNT_MISMATCH',
                            msg.wire_name, mandatory, received)

    def _decode(self, msg, params):
        values = []
        for (name, ptype), raw in zip(msg.params, params):
            try:
                values.append(ptype.decode(raw, name))
            except XapiError as exc:
                if exc.code == 'FIELD_TYPE_ERROR':
                    # xapi's unmarshaller fails with the OCaml exception text
                    raise XapiError('INTERNAL_ERROR',
                                    '(Failure "Expected %s, got \'%s\'")'
                                    % (ptype.name, _short(raw)))
                raise
        for name, ptype in msg.params[len(params):]:
            values.append(msg.optional_tail[name])
        return values

    def _check_session(self, host, session, local=False):
        db = self.pool.db
        if not isinstance(session, str) or not db.exists('session', session):
            raise XapiError('SESSION_INVALID', session)
        # a pool member refuses API calls, except from its own dom0 (the
        # Unix socket), which it forwards to the master
        if host is not self.pool.master and not local:
            raise XapiError('HOST_IS_SLAVE', self.pool.master.address)

    def check_refs(self, msg, values):
        """Non-NULL references in parameters must name live objects."""
        db = self.pool.db
        for (name, ptype), value in zip(msg.params, values):
            if name == 'session_id':
                continue
            if isinstance(ptype, RefType) and value != NULL_REF:
                if ptype.cls in db.tables and not db.exists(ptype.cls, value):
                    raise XapiError('HANDLE_INVALID', ptype.cls, value)
            elif isinstance(ptype, SetType) and isinstance(ptype.item, RefType):
                for ref in value:
                    if ref != NULL_REF and not db.exists(ptype.item.cls, ref):
                        raise XapiError('HANDLE_INVALID', ptype.item.cls, ref)

    # -- entry points ----------------------------------------------------

    def handle_xmlrpc(self, host, method, params, local=False):
        """Serve one call; the wire value or an XapiError."""
        # the call dies with the xapi that is serving it now
        self.pool.db.enter_epoch()
        if self.pool.latency:
            time.sleep(self.pool.latency)
        return self.invoke(host, method, params, local=local)

    def invoke(self, host, method, params, internal=False, local=False):
        is_async = method.startswith('Async.')
        name = method[len('Async.'):] if is_async else method
        msg = self._message(name)
        self._check_arity(msg, params)
        values = self._decode(msg, params)
        session = ''
        if msg.takes_session:
            session = values.pop(0)
            if not internal:
                self._check_session(host, session, local)
        if is_async and (msg.cls in _NO_ASYNC_CLASSES or
                         (msg.implicit and msg.name not in ('create', 'destroy'))):
            raise XapiError('Fault', 'No async mode for this operation (rpc: %s)'
                            % name)
        if not internal:
            self._count(msg.wire_name)
        fn = HANDLERS.get((msg.cls, msg.name))
        if fn is None and msg.implicit:
            from xapisim.api import implicit
            fn = implicit.handler_for(msg)
        if fn is None:
            raise XapiError('NOT_IMPLEMENTED', msg.wire_name)
        if is_async:
            return self.pool.tasks.run_async(host, session, msg, fn, values)
        ctx = Context(self.pool, host, session, method=msg.wire_name)
        return self.run(ctx, msg, fn, values, internal)

    def run(self, ctx, msg, fn, values, internal=False):
        if not internal:
            self.pool.faults.before(msg.wire_name)
            self.check_refs(msg, [ctx.session] + values if msg.takes_session
                            else values)
        result = fn(ctx, *values)
        if internal:
            return result
        return encode_result(msg, result)

    def _count(self, name):
        with self._count_lock:
            self.counts[name] = self.counts.get(name, 0) + 1


def encode_result(msg, result):
    if result is None:
        return ''
    return msg.result.encode(result)


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + '...'
