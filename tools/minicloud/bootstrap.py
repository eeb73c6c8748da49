"""Keystone's catalog and the minicloud's resources, in one process.

Run by tools/minicloud.sh with the minicloud's venv Python, as the admin of
its clouds.yaml (OS_CLIENT_CONFIG_FILE, OS_CLOUD):

    bootstrap.py identity HOST PASSWORD PORTS   service project, users,
                                                roles, catalog
    bootstrap.py resources CIDR PHYSNET         flavors, provider network
                                                and subnet

PORTS is "compute=8774,placement=8778,...": the services of the catalog
(block-storage and volumev3 with Cinder), each with a user of its name
(nova, placement, glance, neutron, cinder).  Every step finds what is
there before it creates anything, so a second run changes nothing.
(devstack does the same with one ``openstack`` command per object: two
seconds each, a minute in all.)
"""

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


def resources(conn, cidr, physnet):
    for name, flavor_id, ram, disk, vcpus in FLAVORS:
        if conn.compute.find_flavor(name) is None:
            conn.compute.create_flavor(name=name, id=flavor_id, ram=ram,
                                       disk=disk, vcpus=vcpus)
    say('flavors: %s' % ', '.join(f[0] for f in FLAVORS))
    net = conn.network.find_network(NETWORK)
    if net is None:
        net = conn.network.create_network(
            name=NETWORK, shared=True, provider_network_type='flat',
            provider_physical_network=physnet)
    subnet = conn.network.find_subnet(SUBNET, network_id=net.id)
    if subnet is None:
        subnet = conn.network.create_subnet(
            name=SUBNET, network_id=net.id, ip_version=4, cidr=cidr,
            enable_dhcp=False)
    say('network %s (%s, flat on %s), subnet %s %s'
        % (NETWORK, net.id, physnet, SUBNET, subnet.cidr))


def main(argv):
    conn = openstack.connect()
    if argv[0] == 'identity':
        ports = dict(item.split('=') for item in argv[3].split(','))
        identity(conn, argv[1], argv[2], ports)
    elif argv[0] == 'resources':
        resources(conn, argv[1], argv[2])
    else:
        raise SystemExit('usage: bootstrap.py identity|resources ...')


if __name__ == '__main__':
    main(sys.argv[1:])
