"""The minicloud's ML2/OVN chain, checked on every nova-compute.

Run by ``tools/minicloud.sh up`` (tools/minicloud/ovn.sh) with the
minicloud's venv Python, the admin of clouds.yaml in OS_CLOUD:

1. Neutron lists an alive "OVN Controller agent" whose host is each
   compute's ``[DEFAULT]host`` (else it binds no port there);
2. a server on each compute (``nova:HOST``), all at once, until each is
   ACTIVE or ERROR;
3. each server's port is bound to its compute (``binding:host_id``, a
   ``vif_type`` that is not ``binding_failed``), claimed in OVN's
   southbound database by that host's chassis (``Port_Binding.chassis``
   is the chassis whose name is the host's system-id), and ACTIVE in
   Neutron;
4. the servers are deleted (and waited for).

Prints one line: what held, or the first thing that failed (details on
stderr).  Exits 1 on a failure.
"""

import argparse
import subprocess
import sys
import time

import openstack

# how long one server may take to leave BUILD: Nova's own limit is
# vif_plugging_timeout (300 s) after the domain is built
BUILD_LIMIT = 600
DELETE_LIMIT = 300


class ChainError(Exception):
    pass


def log(text):
    sys.stderr.write('%s %s\n' % (time.strftime('%H:%M:%S'), text))
    sys.stderr.flush()


def read_chassis(path):
    """[(service, host, system_id)] from the chassis table."""
    found = []
    with open(path) as f:
        for line in f:
            words = line.split()
            if words:
                found.append((words[0], words[1], words[2]))
    return found


def sbctl(sb, *argv):
    out = subprocess.run(
        ['ovn-sbctl', '--db=' + sb, '--timeout=30', '--format=csv',
         '--data=bare', '--no-headings'] + list(argv),
        check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True).stdout
    return [line.split(',') for line in out.splitlines() if line]


def claimed_by(sb, port_id):
    """The name of the chassis that claimed ``port_id``, '' if none, None
    if the southbound database has no Port_Binding for it."""
    rows = sbctl(sb, '--columns=chassis', 'find', 'Port_Binding',
                 'logical_port=%s' % port_id)
    if not rows:
        return None
    chassis_uuid = rows[0][0]
    if not chassis_uuid:
        return ''
    return sbctl(sb, '--columns=name', 'list', 'Chassis',
                 chassis_uuid)[0][0]


def check_agents(conn, chassis):
    agents = list(conn.network.agents())
    for service, host, system_id in chassis:
        ours = [a for a in agents if a.agent_type == 'OVN Controller agent'
                and a.host == host]
        if not ours:
            raise ChainError(
                '%s: Neutron has no OVN Controller agent for host %s (its '
                'agents: %s; log: ovn-%s.log)' % (
                    host, host, ', '.join(sorted(
                        '%s@%s' % (a.agent_type, a.host) for a in agents))
                    or 'none', service[2:]))
        if not any(a.is_alive for a in ours):
            raise ChainError('%s: Neutron\'s OVN chassis for host %s is not '
                             'alive (log: ovn-%s.log)'
                             % (host, host, service[2:]))


def port_state(conn, sb, server_id):
    """The server's port: (port, the chassis that claimed it)."""
    ports = list(conn.network.ports(device_id=server_id))
    if not ports:
        return None, None
    port = ports[0]
    return port, claimed_by(sb, port.id)


def check_chain(conn, sb, chassis, image, flavor, network):
    image = conn.image.find_image(image, ignore_missing=False)
    flavor = conn.compute.find_flavor(flavor, ignore_missing=False)
    net = conn.network.find_network(network, ignore_missing=False)
    servers = {}
    try:
        for service, host, system_id in chassis:
            server = conn.compute.create_server(
                name='minicloud-ovn-check-%s' % host, image_id=image.id,
                flavor_id=flavor.id, networks=[{'uuid': net.id}],
                availability_zone='nova:%s' % host)
            servers[host] = server
            log('%s: server %s' % (host, server.id))
        results = []
        started = time.time()
        for service, host, system_id in chassis:
            server = servers[host]
            while True:
                server = conn.compute.get_server(server.id)
                if server.status in ('ACTIVE', 'ERROR'):
                    break
                if time.time() - started > BUILD_LIMIT:
                    break
                time.sleep(1)
            port, claimer = port_state(conn, sb, server.id)
            log('%s: server %s %s; port %s' % (
                host, server.id, server.status,
                port and (port.id, port.binding_host_id, port.binding_vif_type,
                          port.status, claimer)))
            where = '%s: server %s' % (host, server.id)
            if port is None:
                raise ChainError('%s is %s and has no port (fault: %s)' % (
                    where, server.status, (server.fault or {}).get('message')))
            where += ' port %s' % port.id
            if port.binding_host_id != host or port.binding_vif_type in (
                    'binding_failed', 'unbound', None, ''):
                raise ChainError(
                    '%s is not bound to %s (binding:host_id %s, vif_type %s): '
                    'Neutron found no OVN chassis for the host (log: '
                    'neutron.log)' % (where, host, port.binding_host_id,
                                      port.binding_vif_type))
            if claimer is None:
                raise ChainError('%s has no Port_Binding in the OVN '
                                 'southbound database (log: ovn-northd.log)'
                                 % where)
            if claimer != system_id:
                raise ChainError(
                    '%s is not claimed by chassis %s of %s in the OVN '
                    'southbound database (claimed by: %s): no OVS '
                    'interface with its iface-id on br-int in that dom0, '
                    'or ovn-controller did not see it (log: ovn-%s.log)'
                    % (where, system_id, host, claimer or 'no chassis',
                       service[2:]))
            if port.status != 'ACTIVE':
                raise ChainError('%s is claimed by its chassis but %s in '
                                 'Neutron (log: neutron.log)'
                                 % (where, port.status))
            if server.status != 'ACTIVE':
                raise ChainError('%s: the port is ACTIVE but the server is '
                                 '%s (fault: %s; log: %s.log)' % (
                                     where, server.status,
                                     (server.fault or {}).get('message'),
                                     service))
            results.append('%s (chassis %s)' % (host, system_id[:8]))
        return results, time.time() - started
    finally:
        for server in servers.values():
            try:
                conn.compute.delete_server(server.id)
            except Exception as exc:  # report, delete the others
                log('deleting server %s: %s' % (server.id, exc))
        for server in servers.values():
            try:
                conn.compute.wait_for_delete(server, wait=DELETE_LIMIT)
            except Exception as exc:
                log('server %s not deleted: %s' % (server.id, exc))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--chassis', required=True,
                        help='the chassis table (computes.py --chassis)')
    parser.add_argument('--sb', required=True,
                        help='OVN southbound database, e.g. unix:PATH')
    parser.add_argument('--image', required=True)
    parser.add_argument('--flavor', required=True)
    parser.add_argument('--network', required=True)
    args = parser.parse_args()
    chassis = read_chassis(args.chassis)
    conn = openstack.connect()
    try:
        check_agents(conn, chassis)
        results, took = check_chain(conn, args.sb, chassis, args.image,
                                    args.flavor, args.network)
    except ChainError as exc:
        print(str(exc))
        return 1
    print('ML2/OVN: a port bound, claimed by its chassis and ACTIVE on %s '
          '(%.0f s)' % (', '.join(results), took))
    return 0


if __name__ == '__main__':
    sys.exit(main())
