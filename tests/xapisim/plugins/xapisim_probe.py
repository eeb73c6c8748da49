#!/usr/bin/env python3
"""A test plugin for xapisim's host.call_plugin (Python 3.6 compatible)."""

import json
import os
import subprocess
import sys

import XenAPI  # noqa: F401  (the dom0 module, as real plugins import it)
import XenAPIPlugin


def echo(session, args):
    return json.dumps({'args': args, 'session': session._session})


def fail_with_code(session, args):
    raise XenAPIPlugin.Failure('MY_CODE', ['a', 'b'])


def boom(session, args):
    raise ValueError('kaput: %s' % args.get('why', ''))


def exit_badly(session, args):
    sys.stdout.write('half a reply')
    sys.stdout.flush()
    sys.stderr.write('something broke\n')
    os._exit(3)


def vm_names(session, args):
    names = [session.xenapi.VM.get_name_label(vm)
             for vm in session.xenapi.VM.get_all()]
    return json.dumps(sorted(names))


def host_record(session, args):
    host = session.xenapi.host.get_by_uuid(args['host_uuid'])
    record = session.xenapi.host.get_record(host)
    return json.dumps({'name_label': record['name_label'],
                       'address': record['address']})


def console_log(session, args):
    root = os.environ['DOM0_ROOT']
    path = os.path.join(root, 'var', 'log', 'xen', 'guest',
                        'console.%d' % int(args['dom_id']))
    with open(path) as fh:
        return fh.read()


def environment(session, args):
    return json.dumps({'dom0_root': os.environ.get('DOM0_ROOT'),
                       'python': list(sys.version_info[:3])})


def _namespace():
    st = os.stat('/proc/self/ns/net')
    return {'env': {k: v for k, v in os.environ.items()
                    if k.startswith('OVS_')},
            'netns': [st.st_dev, st.st_ino]}


def namespace(session, args):
    """The network namespace a plugin runs in, its OVS_* variables."""
    return json.dumps(_namespace())


def dom0_switch(session, args):
    """What a plugin sees of its dom0's Open vSwitch: ovs-vsctl with no
    --db, and the network namespace it runs in."""
    bridges = subprocess.check_output(['ovs-vsctl', '--timeout=60',
                                       'list-br'], universal_newlines=True)
    seen = _namespace()
    seen['bridges'] = bridges.split()
    return json.dumps(seen)


if __name__ == '__main__':
    XenAPIPlugin.dispatch({'echo': echo,
                           'fail_with_code': fail_with_code,
                           'boom': boom,
                           'exit_badly': exit_badly,
                           'vm_names': vm_names,
                           'host_record': host_record,
                           'console_log': console_log,
                           'environment': environment,
                           'dom0_switch': dom0_switch,
                           'namespace': namespace})
