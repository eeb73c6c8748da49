"""Keystone's catalog and the minicloud's resources, in one process.

Run by tools/minicloud.sh with the minicloud's venv Python, as the admin of
its clouds.yaml (OS_CLIENT_CONFIG_FILE, OS_CLOUD):

    bootstrap.py identity HOST PASSWORD PORTS   service project, users,
                                                roles, catalog
    bootstrap.py resources CIDR PHYSNET         flavors, provider network
                 [PRIVATE_CIDR]                 and subnet; with
                                                PRIVATE_CIDR (ML2/OVN's
                                                L3) also a routed one

PORTS is "compute=8774,placement=8778,...": the services of the catalog
(block-storage and volumev3 with Cinder), each with a user of its name
(nova, placement, glance, neutron, cinder).  Every step finds what is
there before it creates anything, so a second run changes nothing.
(devstack does the same with one ``openstack`` command per object: two
seconds each, a minute in all.)
"""

import ipaddress
import sys

import openstack

SERVICES = {
    # service type: (name, description, URL path)
    'compute': ('nova', 'OpenStack Compute', '/v2.1'),
    'placement': ('placement', 'Placement Service', ''),
    'image': ('glance', 'Glance Image Service', ''),
    'network': ('neutron', 'Neutron Service', ''),
    # Cinder: one service under both types, as devstack registers it
    # (Tempest looks for block-storage, Nova for volumev3)
    'block-storage': ('cinder', 'Cinder Volume Service', '/v3'),
    'volumev3': ('cinder', 'Cinder Volume Service V3', '/v3'),
}
FLAVORS = (
    # name, id, RAM MiB, disk GiB, vCPUs
    ('m1.nano', '42', 128, 1, 1),
    ('m1.tiny', '1', 512, 1, 1),
    ('m1.small', '2', 2048, 20, 1),
    ('m1.medium', '3', 4096, 40, 2),
)
NETWORK = 'minicloud-net'
SUBNET = 'minicloud-subnet'
# with L3: a shared Geneve network with OVN's DHCP behind an admin router
# whose gateway is on minicloud-net (external: its floating IPs)
PRIVATE_NETWORK = 'minicloud-private'
PRIVATE_SUBNET = 'minicloud-private-subnet'
ROUTER = 'minicloud-router'


def say(text):
    sys.stdout.write('bootstrap: %s\n' % text)
    sys.stdout.flush()


def identity(conn, host, password, ports):
    ident = conn.identity
    domain = ident.find_domain('default', ignore_missing=False)
    project = ident.find_project('service', domain_id=domain.id)
    if project is None:
        project = ident.create_project(name='service', domain_id=domain.id,
                                       description='Service project')
    roles = {}
    for name in ('admin', 'service', 'member', 'reader'):
        roles[name] = (ident.find_role(name)
                       or ident.create_role(name=name))
    users = sorted({SERVICES[stype][0] for stype in ports})
    for name in users:
        user = ident.find_user(name, domain_id=domain.id)
        if user is None:
            user = ident.create_user(name=name, password=password,
                                     domain_id=domain.id,
                                     default_project_id=project.id)
        for role in ('admin', 'service'):
            ident.assign_project_role_to_user(project, user, roles[role])
        say('user %s: admin, service on project service' % name)
    for stype in sorted(ports):
        name, description, path = SERVICES[stype]
        service = next(iter(ident.services(type=stype)), None)
        if service is None:
            service = ident.create_service(name=name, type=stype,
                                           description=description)
        url = 'http://%s:%s%s' % (host, ports[stype], path)
        have = {e.interface for e in ident.endpoints(service_id=service.id)}
        for interface in ('public', 'internal', 'admin'):
            if interface not in have:
                ident.create_endpoint(service_id=service.id, url=url,
                                      interface=interface,
                                      region_id='RegionOne')
        say('%s (%s): %s' % (stype, name, url))


def resources(conn, cidr, physnet, private_cidr=None):
    """Flavors and minicloud-net; with ``private_cidr``, minicloud-net is
    external and minicloud-private is routed to it (``l3``)."""
    for name, flavor_id, ram, disk, vcpus in FLAVORS:
        if conn.compute.find_flavor(name) is None:
            conn.compute.create_flavor(name=name, id=flavor_id, ram=ram,
                                       disk=disk, vcpus=vcpus)
    say('flavors: %s' % ', '.join(f[0] for f in FLAVORS))
    external = {}
    if private_cidr:
        external = {'is_router_external': True}
    net = conn.network.find_network(NETWORK)
    if net is None:
        net = conn.network.create_network(
            name=NETWORK, shared=True, provider_network_type='flat',
            provider_physical_network=physnet, **external)
    elif external and not net.is_router_external:
        net = conn.network.update_network(net, **external)
    subnet = conn.network.find_subnet(SUBNET, network_id=net.id)
    if subnet is None:
        # the gateway: the first address, which the root namespace holds
        # with ML2/OVN (tools/minicloud/ovn.sh, mc_ovn_root_link)
        network = ipaddress.ip_network(cidr)
        subnet = conn.network.create_subnet(
            name=SUBNET, network_id=net.id, ip_version=4, cidr=cidr,
            gateway_ip=str(network.network_address + 1), enable_dhcp=False)
    say('network %s (%s, flat on %s%s), subnet %s %s gateway %s'
        % (NETWORK, net.id, physnet, ', external' if external else '',
           SUBNET, subnet.cidr, subnet.gateway_ip))
    if private_cidr:
        l3(conn, net, private_cidr)


def l3(conn, external_net, cidr):
    """minicloud-private (Geneve, shared, OVN's DHCP) and minicloud-router
    (admin's: its gateway on ``external_net`` with SNAT, an interface on
    minicloud-private): what a project's server reaches the provider LAN
    through, and a floating IP of minicloud-net reaches it through."""
    net = conn.network.find_network(PRIVATE_NETWORK)
    if net is None:
        net = conn.network.create_network(name=PRIVATE_NETWORK, shared=True)
    subnet = conn.network.find_subnet(PRIVATE_SUBNET, network_id=net.id)
    if subnet is None:
        subnet = conn.network.create_subnet(
            name=PRIVATE_SUBNET, network_id=net.id, ip_version=4, cidr=cidr,
            enable_dhcp=True)
    router = conn.network.find_router(ROUTER)
    gateway = {'network_id': external_net.id}
    if router is None:
        router = conn.network.create_router(
            name=ROUTER, external_gateway_info=gateway)
    elif (router.external_gateway_info or {}).get('network_id') != \
            external_net.id:
        router = conn.network.update_router(
            router, external_gateway_info=gateway)
    attached = {ip['subnet_id']
                for port in conn.network.ports(
                    device_id=router.id,
                    device_owner='network:router_interface')
                for ip in port.fixed_ips}
    if subnet.id not in attached:
        conn.network.add_interface_to_router(router, subnet=subnet.id)
    say('network %s (%s, %s, DHCP), subnet %s %s; router %s (%s): '
        'gateway on %s, interface on %s'
        % (PRIVATE_NETWORK, net.id, net.provider_network_type,
           PRIVATE_SUBNET, subnet.cidr, ROUTER, router.id,
           external_net.name, PRIVATE_SUBNET))


def main(argv):
    conn = openstack.connect()
    if argv[0] == 'identity':
        ports = dict(item.split('=') for item in argv[3].split(','))
        identity(conn, argv[1], argv[2], ports)
    elif argv[0] == 'resources':
        resources(conn, argv[1], argv[2], *argv[3:4])
    else:
        raise SystemExit('usage: bootstrap.py identity|resources ...')


if __name__ == '__main__':
    main(sys.argv[1:])
