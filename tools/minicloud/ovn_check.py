"""The minicloud's ML2/OVN chain, checked on every nova-compute.

Run by ``tools/minicloud.sh up`` (tools/minicloud/ovn.sh) with the
minicloud's venv Python, the admin of clouds.yaml in OS_CLOUD:

1. Neutron lists an alive "OVN Controller agent" (or "OVN Controller
   Gateway agent": a gateway chassis) whose host is each compute's
   ``[DEFAULT]host`` (else it binds no port there);
2. a server on each compute (``nova:HOST``), all at once, until each is
   ACTIVE or ERROR;
3. each server's port is bound to its compute (``binding:host_id``, a
   ``vif_type`` that is not ``binding_failed``), claimed in OVN's
   southbound database by that host's chassis (``Port_Binding.chassis``
   is the chassis whose name is the host's system-id), and ACTIVE in
   Neutron;
4. with ``--reach`` (the root namespace's link into the provider LAN,
   tools/minicloud/ovn.sh): each server, in a security group that lets
   ICMP and SSH in, answers ``ping`` from the root namespace (where
   Tempest runs) on its fixed address and gives an ``SSH-2.0-`` banner
   on port 22 once its console says dropbear listens;
5. with ``--private-network`` and ``--router`` (OVN's L3): the router's
   gateway port (``cr-lrp-*`` in the southbound database) is bound to
   one of the computes' chassis (gateway chassis); a server on the
   private network, on another compute if there is one (its traffic then
   crosses a Geneve tunnel to the gateway), gets a floating IP of
   ``--network`` that answers ping and gives the banner;
6. the servers, the floating IP and the security group are deleted (and
   the servers waited for).

Prints one line: what held, or the first thing that failed (details on
stderr).  Exits 1 on a failure.
"""

import argparse
import socket
import subprocess
import sys
import time

import openstack

# how long one server may take to leave BUILD: Nova's own limit is
# vif_plugging_timeout (300 s) after the domain is built
BUILD_LIMIT = 600
DELETE_LIMIT = 300
# how long a guest may take from ACTIVE to its SSH server (its console
# line), and to a DHCP lease (udhcpc retries every few seconds)
BOOT_LIMIT = 300
# how long an address may stay silent once the guest said it listens
# (ARP, OVN's flows for a floating IP, the first lease of a DHCP client)
ANSWER_LIMIT = 60
LISTENING = 'dropbear: SSH server listening'
LEASED = 'udhcpc: lease of '


# Neutron's agent types of an ovn-controller (one with
# ovn-cms-options=enable-chassis-as-gw is a gateway)
CONTROLLER_TYPES = ('OVN Controller agent', 'OVN Controller Gateway agent')


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
        ours = [a for a in agents if a.agent_type in CONTROLLER_TYPES
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


def gateway_chassis(conn, sb, chassis, router):
    """The chassis (service, host, system_id) that the router's gateway
    port (its ``cr-lrp``) is bound to in the southbound database."""
    router = conn.network.find_router(router, ignore_missing=False)
    gateways = list(conn.network.ports(device_id=router.id,
                                       device_owner='network:router_gateway'))
    if not gateways:
        raise ChainError('router %s has no gateway port (bootstrap.py: '
                         'its external_gateway_info)' % router.name)
    lrp = 'cr-lrp-%s' % gateways[0].id
    bound = claimed_by(sb, lrp)
    if not bound:
        raise ChainError(
            'router %s: its gateway port %s is %s in the OVN southbound '
            'database: no gateway chassis (ovn-cms-options=enable-chassis-'
            'as-gw in a chassis\' external_ids; log: ovn-northd.log, '
            'neutron.log)' % (router.name, lrp, 'bound to no chassis'
                              if bound == '' else 'missing'))
    for entry in chassis:
        if entry[2] == bound:
            return entry
    raise ChainError('router %s: its gateway port %s is bound to chassis %s, '
                     'which is no compute\'s' % (router.name, lrp, bound))


def make_security_group(conn, name):
    """A security group that lets ICMP and SSH in (the default one lets
    nothing in from outside its members)."""
    group = conn.network.create_security_group(
        name=name, description='tools/minicloud/ovn_check.py')
    for protocol, port in (('icmp', None), ('tcp', 22)):
        conn.network.create_security_group_rule(
            security_group_id=group.id, direction='ingress', ethertype='IPv4',
            protocol=protocol, port_range_min=port, port_range_max=port)
    return group


def console_has(conn, server, text):
    """Wait until the server's console log has ``text``; its last line if
    it never does within BOOT_LIMIT s (None when it does)."""
    started = time.time()
    last = ''
    while True:
        try:
            output = conn.compute.get_server_console_output(
                server)['output'] or ''
        except Exception as exc:  # not ready yet: ask again
            output = ''
            last = str(exc)
        if text in output:
            return None
        lines = output.strip().splitlines()
        last = lines[-1] if lines else last or '(empty)'
        if time.time() - started > BOOT_LIMIT:
            return last
        time.sleep(1)


def pings(address):
    """The address answers an echo request from here within ANSWER_LIMIT
    s."""
    started = time.time()
    while time.time() - started < ANSWER_LIMIT:
        if subprocess.run(['ping', '-c', '1', '-W', '2', '-n', address],
                          stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0:
            return True
        time.sleep(1)       # (an error, e.g. no route, returns at once)
    return False


def ssh_banner(address):
    """What port 22 of ``address`` says first (its identification line),
    or why nothing within ANSWER_LIMIT s."""
    started = time.time()
    problem = ''
    while time.time() - started < ANSWER_LIMIT:
        try:
            with socket.create_connection((address, 22), timeout=10) as sock:
                sock.settimeout(10)
                data = b''
                while b'\n' not in data and len(data) < 256:
                    chunk = sock.recv(256)
                    if not chunk:
                        break
                    data += chunk
                return data.split(b'\n')[0].decode('ascii', 'replace').strip()
        except OSError as exc:
            problem = 'no banner (%s)' % exc
            time.sleep(1)
    return problem


def check_reach(conn, server, address, where, waits=(LISTENING,)):
    """``server`` answers ping and SSH at ``address`` from the root
    namespace, once its console has each of ``waits``."""
    for text in waits:
        last = console_has(conn, server, text)
        if last is not None:
            raise ChainError('%s: the console never said "%s" in %d s '
                             '(last line: %s)' % (where, text, BOOT_LIMIT,
                                                  last))
    if not pings(address):
        raise ChainError('%s: no answer to ping from the root namespace '
                         '(mc-lan) in %d s' % (where, ANSWER_LIMIT))
    banner = ssh_banner(address)
    if not banner.startswith('SSH-2.0-'):
        raise ChainError('%s: port 22 gave no SSH-2.0- banner to the root '
                         'namespace: %s' % (where, banner or 'nothing'))
    log('%s: ping, %s' % (where, banner))


def fixed_address(conn, server, network):
    ports = list(conn.network.ports(device_id=server.id,
                                    network_id=network.id))
    return ports[0].fixed_ips[0]['ip_address'], ports[0]


def check_chain(conn, sb, chassis, image, flavor, network, reach=False,
                private=None, router=None):
    image = conn.image.find_image(image, ignore_missing=False)
    flavor = conn.compute.find_flavor(flavor, ignore_missing=False)
    net = conn.network.find_network(network, ignore_missing=False)
    servers = {}
    made = {}
    try:
        extra = {}
        if reach:
            made['group'] = make_security_group(
                conn, 'minicloud-ovn-check-%d' % int(time.time()))
            extra = {'security_groups': [{'name': made['group'].name}]}
        for service, host, system_id in chassis:
            server = conn.compute.create_server(
                name='minicloud-ovn-check-%s' % host, image_id=image.id,
                flavor_id=flavor.id, networks=[{'uuid': net.id}],
                availability_zone='nova:%s' % host, **extra)
            servers[host] = server
            log('%s: server %s' % (host, server.id))
        if private:
            gateway = gateway_chassis(conn, sb, chassis, router)
            others = [c for c in chassis if c != gateway] or chassis
            private_host = others[-1][1]
            private_net = conn.network.find_network(private,
                                                    ignore_missing=False)
            made['private'] = conn.compute.create_server(
                name='minicloud-ovn-check-fip-%s' % private_host,
                image_id=image.id, flavor_id=flavor.id,
                networks=[{'uuid': private_net.id}],
                availability_zone='nova:%s' % private_host, **extra)
            log('%s: server %s on %s; router %s\'s gateway on %s'
                % (private_host, made['private'].id, private, router,
                   gateway[1]))
        results = []
        notes = []
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
            servers[host] = server
            results.append('%s (chassis %s)' % (host, system_id[:8]))
        if reach:
            for service, host, system_id in chassis:
                address, _ = fixed_address(conn, servers[host], net)
                check_reach(conn, servers[host], address, '%s: server %s at '
                            '%s (%s)' % (host, servers[host].id, address,
                                         network))
            notes.append('each answers ping and SSH from the root '
                         'namespace')
        if private:
            notes.append(check_floating_ip(
                conn, made, net, private_net, private_host, gateway[1]))
        return results, time.time() - started, notes
    finally:
        cleanup(conn, list(servers.values()), made)


def check_floating_ip(conn, made, external, private_net, host, gateway):
    """A floating IP of ``external`` on the private server's port answers
    ping and SSH from the root namespace."""
    server = made['private']
    where = '%s: server %s on %s' % (host, server.id, private_net.name)
    try:
        server = conn.compute.wait_for_server(server, wait=BUILD_LIMIT)
    except Exception as exc:
        raise ChainError('%s did not go ACTIVE: %s' % (where, exc))
    fixed, port = fixed_address(conn, server, private_net)
    fip = made['fip'] = conn.network.create_ip(
        floating_network_id=external.id, port_id=port.id)
    where = 'floating IP %s of %s %s' % (fip.floating_ip_address, where,
                                         fixed)
    started = time.time()
    while conn.network.get_ip(fip.id).status != 'ACTIVE':
        if time.time() - started > ANSWER_LIMIT:
            raise ChainError('%s: still %s after %d s (log: neutron.log)' % (
                where, conn.network.get_ip(fip.id).status, ANSWER_LIMIT))
        time.sleep(1)
    check_reach(conn, server, fip.floating_ip_address, where,
                waits=(LISTENING, '%s%s/' % (LEASED, fixed)))
    return 'floating IP %s -> %s on %s (%s, gateway chassis %s) too' % (
        fip.floating_ip_address, fixed, host, private_net.name, gateway)


def cleanup(conn, servers, made):
    """Delete what the check made, whatever failed; report, go on."""
    if 'fip' in made:
        try:
            conn.network.delete_ip(made['fip'].id)
        except Exception as exc:
            log('deleting floating IP %s: %s' % (made['fip'].id, exc))
    if 'private' in made:
        servers = servers + [made['private']]
    for server in servers:
        try:
            conn.compute.delete_server(server.id)
        except Exception as exc:  # report, delete the others
            log('deleting server %s: %s' % (server.id, exc))
    for server in servers:
        try:
            conn.compute.wait_for_delete(server, wait=DELETE_LIMIT)
        except Exception as exc:
            log('server %s not deleted: %s' % (server.id, exc))
    if 'group' in made:
        try:
            conn.network.delete_security_group(made['group'].id)
        except Exception as exc:
            log('deleting security group %s: %s' % (made['group'].id, exc))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--chassis', required=True,
                        help='the chassis table (computes.py --chassis)')
    parser.add_argument('--sb', required=True,
                        help='OVN southbound database, e.g. unix:PATH')
    parser.add_argument('--image', required=True)
    parser.add_argument('--flavor', required=True)
    parser.add_argument('--network', required=True)
    parser.add_argument('--reach', action='store_true',
                        help='check ping and SSH from this namespace')
    parser.add_argument('--private-network',
                        help='a network behind --router: check a floating '
                        'IP of --network on a server there')
    parser.add_argument('--router')
    args = parser.parse_args()
    if bool(args.private_network) != bool(args.router):
        parser.error('--private-network and --router go together')
    chassis = read_chassis(args.chassis)
    conn = openstack.connect()
    try:
        check_agents(conn, chassis)
        results, took, notes = check_chain(
            conn, args.sb, chassis, args.image, args.flavor, args.network,
            reach=args.reach or bool(args.private_network),
            private=args.private_network, router=args.router)
    except ChainError as exc:
        print(str(exc))
        return 1
    print('ML2/OVN: a port bound, claimed by its chassis and ACTIVE on %s%s '
          '(%.0f s)' % (', '.join(results),
                        ''.join('; ' + note for note in notes), took))
    return 0


if __name__ == '__main__':
    sys.exit(main())
