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
