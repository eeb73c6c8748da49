"""The one exception type the simulator raises for an API failure."""


class XapiError(Exception):
    """A XenAPI failure: travels as ``['CODE', 'param', ...]``.

    Every parameter is turned into a string, as xapi does.
    """

    def __init__(self, code, *params):
        self.code = code
        self.params = [p if isinstance(p, str) else _text(p) for p in params]
        super(XapiError, self).__init__(code, *self.params)

    @property
    def description(self):
        return [self.code] + self.params

    def __str__(self):
        return str(self.description)


def _text(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)


# SM's XE_SR_ERRORCODES.xml: the codes and texts xapisim's SRs raise
SM_ERRORS = {
    'SRNoSpace': (44, 'There is insufficient space'),
    'VDIUnavailable': (46, 'The VDI is not available'),
    'SRUnavailable': (47, 'The SR is not available'),
    'ISCSILogin': (68, 'ISCSI login failed - check access settings for '
                   'the initiator on the storage, if CHAP is used verify '
                   'CHAP credentials'),
    'ISCSIDiscovery': (83, 'ISCSI discovery failed'),
    'ConfigTargetMissing': (95, 'The request is missing the target '
                            'parameter'),
    'ConfigTargetIQNMissing': (96, 'The request is missing or has an '
                               'incorrect target IQN parameter'),
    'ConfigISCSIIQNMissing': (97, 'Unable to retrieve the host '
                              'configuration ISCSI IQN parameter'),
    'SnapshotChainTooLong': (109, 'The snapshot chain is too long'),
    'ISCSITarget': (141, 'Unable to connect to ISCSI service on target'),
    'ISCSIPort': (142, 'Incorrect value for iSCSI port, must be a number '
                  'between 1 and 65535'),
}


def sm_error(name, opterr=None, stderr=''):
    """The XapiError xapi makes of SM's XenError ``name``: xapi's
    ``SR_BACKEND_FAILURE_<code>`` with ``['', text [opterr=...], stderr]``."""
    code, text = SM_ERRORS[name]
    if opterr:
        text += ' [opterr=%s]' % opterr
    return XapiError('SR_BACKEND_FAILURE_%d' % code, '', text, stderr)
