"""xapisim's stand-in for dom0's ``XenAPIPlugin`` module.

It keeps the contract of the module a real XCP-ng dom0 provides to xapi
plugins: ``dispatch(fn_table)`` reads the XML-RPC call xapi passes as
``argv[1]`` (method = plugin function, params = [session ref, args map]),
calls ``fn(session, args)`` and prints an XML-RPC response on stdout;
``Failure(code, params)`` travels to the caller as ``[code] + params``.
Runs on Python 3.6.
"""

import sys
import xmlrpc.client

import XenAPI


class Failure(Exception):
    """A failure the plugin reports with its own error code."""

    def __init__(self, code, params):
        Exception.__init__(self)
        self.params = [code] + list(params)

    def __str__(self):
        return str(self.params)


def _print_response(struct):
    sys.stdout.write(xmlrpc.client.dumps((struct,), methodresponse=True))
    sys.stdout.flush()


def success_message(result):
    return {'Status': 'Success', 'Value': result}


def failure_message(description):
    return {'Status': 'Failure', 'ErrorDescription': description}


def dispatch(fn_table):
    if len(sys.argv) != 2:
        raise Exception('Incorrect number of arguments: %d' % len(sys.argv))
    params, methodname = xmlrpc.client.loads(sys.argv[1])
    session_id = params[0]
    args = params[1]
    if methodname not in fn_table:
        _print_response(failure_message(['UNKNOWN_XENAPI_PLUGIN_FUNCTION',
                                         methodname]))
        return
    session = XenAPI.xapi_local()
    session._session = session_id
    try:
        result = fn_table[methodname](session, args)
    except SystemExit:
        raise
    except Failure as exc:
        _print_response(failure_message(exc.params))
    except Exception as exc:
        _print_response(failure_message(['XENAPI_PLUGIN_FAILURE', methodname,
                                         exc.__class__.__name__, str(exc)]))
    else:
        _print_response(success_message(result))
