"""XenAPI failures as Nova exceptions: one table, codes kept in the message.

A xapi failure travels as ``['CODE', 'param', ...]``.  ``translate`` turns
it into the Nova exception that means the same thing, with a message that
still carries the code and its parameters, so the instance fault and the
log say exactly what xapi said.

xapi's code is kept in ``xapi_code`` (and its parameters in ``params``):
``code`` stays Nova's, an HTTP status, which Nova stores as an integer in
the instance fault (a string there makes Nova drop the fault and answer
500).
"""

from nova import exception
from nova.i18n import _


class XenAPIError(exception.NovaException):
    """A XenAPI call failed; ``code`` and ``params`` are xapi's."""
    msg_fmt = _('XenAPI %(method)s failed: %(details)s')

    def __init__(self, method, details, message=None):
        self.method = method
        self.details = [str(d) for d in details] or ['UNKNOWN']
        self.xapi_code = self.details[0]
        self.params = self.details[1:]
        super(XenAPIError, self).__init__(
            message=message, method=method, details=describe(self.details))


class XenAPIConnectionError(exception.HypervisorUnavailable):
    msg_fmt = _('Cannot talk to xapi at %(url)s: %(reason)s')


class StartupError(exception.NovaException):
    """nova-compute cannot start: the message says what to fix."""
    msg_fmt = _('%(reason)s')


class IntegrationNetworkUnfit(exception.NovaException):
    """The xapi network of an integration bridge cannot take VIFs: the
    message says why and what to do."""
    msg_fmt = _('%(reason)s')


class SpawnFailed(exception.InstanceDeployFailure):
    msg_fmt = _('Spawn failed at step "%(step)s": %(reason)s')


class MoveFailed(exception.NovaException):
    """A resize or cold migration failed; the step and xapi's reason."""
    msg_fmt = _('%(what)s failed at step "%(step)s": %(reason)s')


class PluginError(exception.NovaException):
    msg_fmt = _('dom0 plugin %(plugin)s.%(fn)s failed: %(reason)s')

    def __init__(self, details=None, **kwargs):
        self.details = [str(d) for d in (details or [])]
        self.xapi_code = self.details[0] if self.details else None
        self.params = self.details[1:]
        super(PluginError, self).__init__(**kwargs)


def describe(details):
    """``CODE [p1, p2]`` -- the form every message uses."""
    if not details:
        return 'UNKNOWN'
    if len(details) == 1:
        return details[0]
    return '%s [%s]' % (details[0], ', '.join(details[1:]))


# code -> (Nova exception class, sentence explaining it to an operator).
# The sentence is formatted with the failure's parameters (%(0)s, ...).
_TABLE = {
    'HOST_NOT_ENOUGH_FREE_MEMORY': (
        exception.ComputeResourcesUnavailable,
        'the host has not enough free memory (needed %(0)s bytes, '
        'available %(1)s)'),
    'SR_FULL': (exception.ComputeResourcesUnavailable,
                'the storage repository is full (requested %(0)s bytes, '
                'maximum %(1)s)'),
    'VM_BAD_POWER_STATE': (exception.InstanceInvalidState,
                           'the VM is %(2)s, expected %(1)s'),
    'OTHER_OPERATION_IN_PROGRESS': (
        exception.InstanceInvalidState,
        'another operation (%(2)s) is in progress on %(0)s %(1)s'),
    'VM_MISSING_PV_DRIVERS': (exception.InstanceInvalidState,
                              'the guest has no PV drivers'),
    'VM_LACKS_FEATURE': (exception.InstanceInvalidState,
                         'the guest lacks a feature this needs'),
    'HANDLE_INVALID': (exception.NotFound,
                       'the %(0)s object no longer exists'),
    'NO_HOSTS_AVAILABLE': (exception.ComputeResourcesUnavailable,
                           'no host of the pool can run the VM'),
    'HOST_DISABLED': (exception.ComputeResourcesUnavailable,
                      'the XenServer host %(0)s is disabled in xapi, which '
                      'starts no VM on it: xe host-enable, or end its '
                      'maintenance mode'),
    'VDI_IN_USE': (exception.InstanceInvalidState,
                   'the disk is in use'),
    'TASK_CANCELLED': (exception.NovaException,
                       'the operation was cancelled'),
    'BRIDGE_NOT_AVAILABLE': (
        exception.NovaException,
        'dom0 has no bridge %(0)s; its xapi network is unmanaged: '
        'ovn-controller makes it (nova-xen-manage check says what is '
        'missing)'),
}


def translate(method, details):
    """The Nova exception for a XenAPI failure of ``method``."""
    details = [str(d) for d in details] or ['UNKNOWN']
    entry = _TABLE.get(details[0])
    text = 'XenAPI %s failed: %s' % (method, describe(details))
    if entry is None:
        return XenAPIError(method, details, message=text)
    cls, sentence = entry
    params = {str(i): p for i, p in enumerate(details[1:])}
    try:
        sentence = sentence % params
    except (KeyError, TypeError, ValueError):
        pass
    exc = cls(message='%s (%s)' % (text, sentence))
    exc.xapi_code = details[0]
    exc.params = details[1:]
    exc.details = details
    return exc


def why(exc):
    """One line for a log or a fault: xapi's code and parameters (of a
    XenAPI.Failure, or of an error translated from one), or the
    message."""
    details = getattr(exc, 'details', None)
    if details:
        return describe([str(d) for d in details])
    return str(exc) or exc.__class__.__name__
