"""nova-xen-manage: the command line.

``pools`` talks to Nova and Placement as an admin, through openstacksdk
(``--os-cloud`` and clouds.yaml, or the ``OS_*`` variables, as every
OpenStack client); ``check`` reads nova.conf through oslo.config, as
nova-compute does, and talks to xapi.
"""

import argparse
import sys
import warnings

from keystoneauth1 import exceptions as ksa_exc
import openstack.config
import openstack.connection
from openstack import exceptions as sdk_exc

from nova_xen.cmd import pools
from nova_xen.cmd import xapi_pools

DESCRIPTION = """\
Tools for a cloud of XCP-ng/XenServer pools driven by nova-xen.

  pools sync   one Nova host aggregate per XenAPI pool (admin credentials)
  pools list   each pool, its aggregate and compute hosts; the mismatches
  check        nova-compute's start-up checks against nova.conf
               (nova-xen-manage check --help)
  ovn-setup    dom0's Open vSwitch, firewall and the pool's SDN controller
               as ML2/OVN needs them (nova-xen-manage ovn-setup --help)
"""

EPILOG = """\
exit status: 0 done; 1 a check or a change failed (and with --strict,
a mismatch remains); 2 wrong usage."""


def _parser(argv):
    parser = argparse.ArgumentParser(
        prog='nova-xen-manage', description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    # --os-cloud, --os-auth-url, ... and --os-{compute,placement}-*, for the
    # commands that talk to the cloud
    cloud = argparse.ArgumentParser(add_help=False)
    openstack.config.OpenStackConfig().register_argparse_arguments(
        cloud, argv, service_keys=['compute', 'placement'])
    # the pools' own xapi, for their names and masters (optional)
    xapi = argparse.ArgumentParser(add_help=False)
    xapi.add_argument(
        '--xenapi', action='append', default=[], metavar='URL',
        help='URL of a pool master (repeat for each pool): aggregates are '
        'named after the pool\'s name_label and list shows its master; the '
        'password comes from $%s' % xapi_pools.PASSWORD_VARIABLE)
    xapi.add_argument('--xenapi-user', default='root', metavar='USER',
                      help='XenAPI user (default root)')
    xapi.add_argument('--xenapi-ca-file', metavar='PEM',
                      help='CA that signed the pool masters\' certificates')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND')
    commands.required = True

    pools = commands.add_parser(
        'pools', help='Nova host aggregates for XenAPI pools',
        description='Which XenAPI pool each compute is in, from Nova and '
        'Placement alone: the resource provider of a nova-xen compute node '
        'is in a placement aggregate whose uuid is its pool\'s.')
    actions = pools.add_subparsers(dest='action', metavar='ACTION')
    actions.required = True

    sync = actions.add_parser(
        'sync', parents=[cloud, xapi], help='one host aggregate per pool; hosts added and removed',
        description='Make one Nova host aggregate per XenAPI pool (metadata '
        'xenapi_pool_uuid=<pool uuid>) holding exactly the compute hosts of '
        'that pool; one line per change.  A second run changes nothing.')
    sync.add_argument(
        '--name', action='append', metavar='POOL_UUID=NAME', default=[],
        type=_name,
        help='name of the pool\'s aggregate (renames an existing one); '
        'default for a new one: the pool\'s name_label with --xenapi, else '
        'xenapi-pool-<first 8 characters of the pool uuid>.  Repeatable.')
    sync.add_argument(
        '--availability-zone-per-pool', action='store_true',
        help='make each pool aggregate an availability zone of its name')
    sync.add_argument(
        '--prune', action='store_true',
        help='delete the aggregates of pools that no compute reports any '
        'more (otherwise only reported)')
    sync.add_argument(
        '--wait', type=int, default=0, metavar='SECONDS',
        help='first wait up to SECONDS for nova-xen computes whose pool '
        'placement does not know yet (a nova-compute that just started)')
    sync.add_argument('--dry-run', action='store_true',
                      help='say what would change, change nothing')
    sync.add_argument('--strict', action='store_true',
                      help='exit 1 if a mismatch remains that sync cannot '
                      'fix')
    sync.set_defaults(func=_pools_sync)

    show = actions.add_parser(
        'list', parents=[cloud, xapi], help='each pool, its aggregate and hosts; the mismatches',
        description='Each XenAPI pool: its uuid, its aggregate, its compute '
        'hosts (node, uuid, up/down, enabled/disabled); then every mismatch, '
        'one sentence each.  Exit status 0 even with mismatches, unless '
        '--strict.')
    show.add_argument('--strict', action='store_true',
                      help='exit 1 when there is a mismatch')
    show.set_defaults(func=_pools_list)

    check = commands.add_parser(
        'check', add_help=False,
        help='nova-compute\'s start-up checks (check --help)')
    check.add_argument('oslo_args', nargs=argparse.REMAINDER)
    check.set_defaults(func=lambda args: _check(args.oslo_args))

    setup = commands.add_parser(
        'ovn-setup', add_help=False,
        help='set up dom0 for ML2/OVN (ovn-setup --help)')
    setup.add_argument('setup_args', nargs=argparse.REMAINDER)
    setup.set_defaults(func=lambda args: _ovn_setup(args.setup_args))
    return parser


def _name(item):
    try:
        return pools.parse_name(item)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc))


def _connect(args):
    region = openstack.config.OpenStackConfig(
        app_name='nova-xen-manage').get_one(argparse=args)
    return openstack.connection.Connection(config=region)


def _xapi(args):
    return xapi_pools.describe(args.xenapi, args.xenapi_user,
                               ca_file=args.xenapi_ca_file)


def _pools_sync(args):
    names = {uuid: pool.name for uuid, pool in _xapi(args).items()
             if pool.name}
    names.update(dict(args.name))
    return pools.sync(pools.Cloud(_connect(args)), print, names=names,
                      az=args.availability_zone_per_pool, prune=args.prune,
                      wait=args.wait, dry_run=args.dry_run,
                      strict=args.strict)


def _pools_list(args):
    return pools.show(pools.Cloud(_connect(args)), print, strict=args.strict,
                      known=_xapi(args))


def _check(argv):
    # nova's libraries import eventlet, which warns on every import; an
    # operator's command has nothing to do about it
    warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
    from nova_xen.cmd import check    # nova's modules: only for check
    return check.main(argv)


def _ovn_setup(argv):
    warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
    from nova_xen.cmd import ovn_setup    # nova's modules, as for check
    return ovn_setup.main(argv)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ['check']:
        # oslo.config parses what follows, as nova-compute parses its own
        return _check(argv[1:])
    if argv[:1] == ['ovn-setup']:
        return _ovn_setup(argv[1:])
    try:
        args = _parser(argv).parse_args(argv)
        return args.func(args)
    except (pools.Error, xapi_pools.Error, sdk_exc.SDKException,
            ksa_exc.ClientException) as exc:
        print('nova-xen-manage: %s' % (getattr(exc, 'details', None) or exc),
              file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
