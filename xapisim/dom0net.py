"""Real dom0 networking for a simulated world (``--dom0-network ovs``).

Off by default.  When a world asks for it, each simulated host gets a
dom0 (``xapisim.dom0host``: a network namespace with its own Open
vSwitch), the hosts' ``eth0`` meet on a shared "fabric" (their
``xenbr0`` hold the underlay addresses, 192.0.2.0/24, where tunnels
run), their ``eth1`` on a shared "provider LAN" (``xenbr1``, for a flat
physical network), and VIFs are plugged for real, as XCP-ng's xenopsd
and its vif scripts do:

- a domain's VIF is a veth ``vif<domid>.<devid>`` in its host's dom0
  (MAC ``fe:ff:ff:ff:ff:ff``, ARP off, as ``vif-real`` sets it) whose
  peer ``eth<devid>`` (the VIF's MAC) sits in the guest's namespace (one
  per running VM); both with the MTU xapi gives the device (the VIF's
  ``other_config`` ``mtu``, else the network's; xapi then writes it into
  ``VIF.MTU``) and no transmit checksum offload;
- ``setup-vif-rules`` adds it to the network's bridge with the
  ``external_ids`` ``xs-vm-uuid``, ``xs-vif-uuid``, ``xs-network-uuid``,
  ``attached-mac`` (not at all for a ``disabled`` locking mode);
  ovs-xapi-sync (``xapisim.xapisync``) adds ``iface-id`` and the rest;
- before a domain is built (start, resume, migration) or a VIF plugged,
  xapi attaches the networks: a managed network without PIFs gets its
  bridge, an unmanaged one must have it (``BRIDGE_NOT_AVAILABLE``; each
  dom0 starts with the ``--dom0-bridges``, br-int by default, as an
  ovn-controller makes it: ``guest.attach_networks``); when
  the last VIF of a managed internal network leaves a host and nothing
  else is on its bridge, the bridge goes (xapi_network.ml);
- a live migration plugs the destination's ports before the source's
  domain goes; the source's device then moves to the destination (its
  guest end, with the guest's addresses, stays as it is);
- a paused domain runs no vCPU, so its netfront takes no packet: while
  its VM is Paused each of its ``vif`` devices is down (the guest's end
  loses its carrier and keeps its addresses and routes: nothing reaches
  it or leaves it); unpause brings the devices up again.  Its processes
  go on running: a simulation shortcut (what a network sees is exact).
"""

import ipaddress
import os
import sys
import threading
import uuid

from xapisim import guestboot
from xapisim import netns
from xapisim.api.network import vif_device_number
from xapisim.dom0host import PIF_BRIDGES, HostDom0
from xapisim.errors import XapiError
from xapisim.netns import Dom0NetError

MODES = ('ovs',)
UNDERLAY = ipaddress.ip_network('192.0.2.0/24')
PROVIDER = ipaddress.ip_network('198.51.100.0/24')
PHYSICAL_NETWORK = 'physnet1'
# xenopsd gives every vif device this address (bridge-MAC)
BRIDGE_MAC = 'fe:ff:ff:ff:ff:ff'
DEFAULT_MTU = 1500


class Backend(object):
    """One VIF's dom0 device in a domain."""

    def __init__(self, facts, domid):
        self.number = facts['number']
        self.name = 'vif%d.%d' % (domid, facts['number'])
        self.facts = facts
        # on the bridge, or waiting for its device (a migration's target)
        self.on_bridge = facts['locking_mode'] != 'disabled'
        self.pending = False


class Domain(object):
    def __init__(self, hostnet, domid, vm_uuid, guest):
        self.hostnet = hostnet
        self.domid = domid
        self.vm_uuid = vm_uuid
        self.guest = guest
        self.backends = {}          # device number -> Backend

    @property
    def key(self):
        return (self.hostnet.host.uuid, self.domid)


class Guest(object):
    def __init__(self, name):
        self.netns = name
        self.domains = set()        # keys of its domains (two while moving)
        self.os = None              # what boots in it (guestboot.GuestOS)
        # paused: its dom0 devices are down until unpause
        self.paused = False


def vif_facts(db, vif):
    """What plugging a VIF needs, read from the database (call with its
    lock held)."""
    row = db.row('VIF', vif)
    net = db.row('network', row['network'])
    # xapi's of_vif: other_config:mtu, else the network's MTU
    try:
        mtu = int(row['other_config']['mtu'])
    except (KeyError, ValueError):
        mtu = int(net['MTU'])
    if not 68 <= mtu <= 65535:
        mtu = DEFAULT_MTU    # vif-real logs the failed "ip link set mtu"
    mode = row['locking_mode']
    if mode == 'network_default':
        mode = net['default_locking_mode']
    return {'ref': vif, 'uuid': row['uuid'], 'mac': row['MAC'],
            'number': vif_device_number(row['device']), 'mtu': mtu,
            'locking_mode': mode, 'vm_uuid': db.get('VM', row['VM'], 'uuid'),
            'network': row['network'], 'network_uuid': net['uuid'],
            'bridge': net['bridge'], 'managed': net['managed'],
            'internal': not net['PIFs']}


class Dom0Network(object):
    """The dom0 networks of a world, and the guests' namespaces."""

    def __init__(self, world):
        problem = netns.requirements_problem()
        if problem:
            raise Dom0NetError(problem)
        self.world = world
        self.run = netns.Run()
        self.underlay = UNDERLAY
        self.provider = PROVIDER
        # the shared namespace each PIF device of every host is linked to
        self.shared_netns = {'eth0': self.run.name('fabric'),
                             'eth1': self.run.name('lan')}
        self.hosts = {}         # host uuid -> HostDom0
        # (ca_file, cert_file, key_file): xapi's certificate, the same
        # for every host (its xapi-ssl.pem, valid for its addresses)
        self.certificates = None
        self.guests = {}        # VM uuid -> Guest
        self.domains = {}       # (host uuid, domid) -> Domain
        self.handovers = {}     # source domain key -> destination Domain
        # the order is always: a pool's database lock, then this one
        self.lock = threading.RLock()

    def underlay_address(self, number):
        return str(self.underlay.network_address + number)

    # -- the world -------------------------------------------------------

    def start(self):
        try:
            self.certificates = self._make_certificates()
            for name in self.shared_netns.values():
                netns.add_netns(name, ipv6=False)
                netns.ip(name, 'link', 'add', 'br0', 'type', 'bridge',
                         'mcast_snooping', '0')
                netns.ip(name, 'link', 'set', 'br0', 'up')
            number = 0
            for pool in self.world.pools:
                pif_networks = {}
                for device, bridge in PIF_BRIDGES:
                    found = pool.db.find('network', bridge=bridge)
                    pif_networks[device] = pool.db.get('network', found[0],
                                                       'uuid')
                for host in pool.hosts:
                    number += 1
                    hostnet = HostDom0(self, host, number)
                    self.hosts[host.uuid] = hostnet
                    host.dom0 = hostnet
                    hostnet.start(pif_networks)
        except BaseException:
            self.close()
            raise

    def _make_certificates(self):
        """xapi's server certificate (and the CA that signed it), valid
        for each host's address and its underlay address: what dom0's
        OVSDB and OpenFlow present to a TLS client (the SDN controller's
        ``set-ssl`` names ``/etc/xensource/xapi-ssl.pem``)."""
        from xapisim import tls
        hosts = [h for pool in self.world.pools for h in pool.hosts]
        addresses = [h.address for h in hosts] + [
            self.underlay_address(n) for n in range(1, len(hosts) + 1)]
        directory = os.path.join(self.world.dom0_base, 'xapi-ssl')
        os.makedirs(directory, exist_ok=True)
        return tls.make_certificates(directory, addresses)

    def close(self):
        for guest in self.guests.values():
            if guest.os is not None:
                guestboot.halt(guest.os)
        for hostnet in self.hosts.values():
            try:
                hostnet.stop()
            except Exception as exc:
                _warn('stopping the dom0 of %s: %s'
                      % (hostnet.host.name_label, exc))
            hostnet.host.dom0 = None
        self.run.close()
        self.guests.clear()
        self.domains.clear()
        self.handovers.clear()

    def describe(self):
        return {'mode': 'ovs', 'prefix': self.run.prefix,
                'fabric': {'netns': self.shared_netns['eth0'],
                           'bridge': 'br0', 'subnet': str(self.underlay)},
                'provider': {'netns': self.shared_netns['eth1'],
                             'bridge': 'br0', 'subnet': str(self.provider),
                             'physical_network': PHYSICAL_NETWORK,
                             'host_bridge': 'xenbr1'},
                'guest_netns_prefix': self.run.name('g-'),
                # the CA of the hosts' xapi-ssl.pem (dom0's OVSDB and
                # OpenFlow TLS)
                'xapi_ca_file': self.certificates[0]}

    def guest_netns(self, vm_uuid):
        with self.lock:
            guest = self.guests.get(vm_uuid)
            return guest.netns if guest else None

    # -- for xapi's Network.attach_for_vm (guest.attach_networks) ----------

    def bridges(self, host):
        """The bridges in the dom0 of ``host`` (a ``world.Host``)."""
        try:
            return self.hosts[host.uuid].bridges()
        except Dom0NetError as exc:
            raise _internal(exc)

    def make_bridges(self, host, records):
        """The bridges of managed networks (``records``) that the dom0 of
        ``host`` lacks, made as xcp-networkd makes them (whether dom0 has
        an unmanaged network's bridge ``guest.attach_networks`` asks)."""
        hostnet = self.hosts[host.uuid]
        with self.lock:
            try:
                existing = hostnet.bridges()
                for rec in records:
                    if rec['bridge'] not in existing:
                        hostnet.create_bridge(rec['bridge'], rec['uuid'])
                        existing.add(rec['bridge'])
            except Dom0NetError as exc:
                raise _internal(exc)

    def _hostnet(self, pool, host_ref):
        return self.hosts[pool.host_by_ref(host_ref).uuid]

    # -- domains ---------------------------------------------------------

    def domain_up(self, pool, vm, host_ref, domid, source=None):
        """A domain is built: its attached VIFs are plugged.  ``source``
        (pool, host ref, domid): the domain it arrives from, whose devices
        it gets when that one goes (``domain_down``)."""
        db = pool.db
        with db.lock:
            vm_uuid = db.get('VM', vm, 'uuid')
            facts = [vif_facts(db, v) for v in db.get('VM', vm, 'VIFs')
                     if db.get('VIF', v, 'currently_attached')]
        hostnet = self._hostnet(pool, host_ref)
        with self.lock:
            booting = vm_uuid not in self.guests
            guest = self._guest(vm_uuid)
            domain = Domain(hostnet, domid, vm_uuid, guest)
            self.domains[domain.key] = domain
            guest.domains.add(domain.key)
            origin = None
            if source is not None:
                src_pool, src_host, src_domid = source
                origin = self.domains.get(
                    (src_pool.host_by_ref(src_host).uuid, src_domid))
            try:
                for fact in facts:
                    if origin is not None and fact['number'] in \
                            origin.backends:
                        self._expect(domain, fact)
                    else:
                        self._plug(domain, fact)
            except Dom0NetError as exc:
                self._down(domain)
                raise _internal(exc)
            if origin is not None:
                self.handovers[origin.key] = domain
        _record_mtus(db, facts)
        nics = ['eth%d' % fact['number'] for fact in facts]
        if booting:
            guest.os = guestboot.boot(self.world, pool, vm, host_ref, domid,
                                      guest.netns, nics)
        elif guest.os is not None:
            guestboot.moved(guest.os, pool, vm, host_ref, domid, nics)

    def disks_changed(self, pool, vm):
        """A VBD of a running VM was plugged or unplugged: its guest
        sees its disks as they are now."""
        with pool.db.lock:
            vm_uuid = pool.db.get('VM', vm, 'uuid')
        with self.lock:
            guest = self.guests.get(vm_uuid)
            gos = guest.os if guest is not None else None
        if gos is not None:
            guestboot.disks_changed(gos, pool, vm)

    def domain_down(self, pool, vm, host_ref, domid):
        """The domain is gone: its devices go (or move to the domain a
        migration made for it)."""
        host = pool.host_by_ref(host_ref)
        if host is None:
            return
        with self.lock:
            domain = self.domains.get((host.uuid, domid))
            if domain is not None:
                self._down(domain)

    def _down(self, domain):
        self.domains.pop(domain.key, None)
        target = self.handovers.pop(domain.key, None)
        for key, dest in list(self.handovers.items()):
            if dest is domain:
                del self.handovers[key]
        for number, backend in sorted(domain.backends.items()):
            try:
                arriving = target.backends.get(number) if target else None
                if arriving is not None and arriving.pending:
                    self._hand_over(domain, backend, target, arriving)
                else:
                    self._unplug(domain, backend)
            except Dom0NetError as exc:
                _warn('unplugging %s: %s' % (backend.name, exc))
        backends = list(domain.backends.values())
        domain.backends.clear()
        self._detach(domain.hostnet, backends)
        guest = domain.guest
        guest.domains.discard(domain.key)
        if not guest.domains:
            self.guests.pop(domain.vm_uuid, None)
            if guest.os is not None:
                guestboot.halt(guest.os)
            # its LUNs' files go once its mounts of them have gone
            self.world.lunfiles.release(domain.vm_uuid)
            netns.clean_up_netns(guest.netns)

    def _guest(self, vm_uuid):
        guest = self.guests.get(vm_uuid)
        if guest is None:
            name = self.run.name('g-' + vm_uuid[:8])
            if any(g.netns == name for g in self.guests.values()):
                name = self.run.name('g-' + vm_uuid.replace('-', ''))
            netns.add_netns(name)
            guest = self.guests[vm_uuid] = Guest(name)
        return guest

    # -- pause -------------------------------------------------------------

    def _set_links(self, guest, state):
        """Every plugged dom0 device of the guest's domains ``state``."""
        for key in sorted(guest.domains):
            domain = self.domains[key]
            for backend in domain.backends.values():
                if not backend.pending:
                    domain.hostnet.ip('link', 'set', backend.name, state)

    def pause(self, pool, vm):
        """VM.pause: nothing reaches the guest or leaves it until
        ``unpause``; its addresses, routes and processes stay as they
        are (its processes are not frozen: freezing every process of the
        namespace also froze xapisim's own helpers running there, and a
        start hung on them)."""
        with pool.db.lock:
            vm_uuid = pool.db.get('VM', vm, 'uuid')
        with self.lock:
            guest = self.guests.get(vm_uuid)
            if guest is None or guest.paused:
                return
            guest.paused = True
            try:
                self._set_links(guest, 'down')
            except Dom0NetError as exc:
                self._resume(guest)
                raise _internal(exc)

    def unpause(self, pool, vm):
        """VM.unpause: the guest's NICs carry packets again."""
        with pool.db.lock:
            vm_uuid = pool.db.get('VM', vm, 'uuid')
        with self.lock:
            guest = self.guests.get(vm_uuid)
            if guest is None or not guest.paused:
                return
            try:
                self._resume(guest)
            except Dom0NetError as exc:
                raise _internal(exc)

    def _resume(self, guest):
        guest.paused = False
        self._set_links(guest, 'up')

    # -- VIF hot-plug ----------------------------------------------------

    @staticmethod
    def _vif_in_domain(pool, vif):
        """The VIF's facts, and the key of its VM's domain."""
        db = pool.db
        with db.lock:
            fact = vif_facts(db, vif)
            vm = db.get('VIF', vif, 'VM')
            key = (pool.host_by_ref(db.get('VM', vm, 'resident_on')).uuid,
                   db.get('VM', vm, 'domid'))
        return fact, key

    def vif_up(self, pool, vif):
        fact, key = self._vif_in_domain(pool, vif)
        with self.lock:
            domain = self.domains[key]
            try:
                self._plug(domain, fact)
            except Dom0NetError as exc:
                backend = domain.backends.pop(fact['number'], None)
                if backend is not None:
                    self._unplug(domain, backend, quiet=True)
                raise _internal(exc)
        _record_mtus(pool.db, [fact])

    def vif_down(self, pool, vif):
        db = pool.db
        with db.lock:
            number = vif_device_number(db.get('VIF', vif, 'device'))
            vm = db.get('VIF', vif, 'VM')
            host = pool.host_by_ref(db.get('VM', vm, 'resident_on'))
            key = (host.uuid if host else None, db.get('VM', vm, 'domid'))
        with self.lock:
            domain = self.domains.get(key)
            backend = domain.backends.pop(number, None) if domain else None
            if backend is None:
                return
            try:
                self._unplug(domain, backend)
            except Dom0NetError as exc:
                _warn('unplugging %s: %s' % (backend.name, exc))
            self._detach(domain.hostnet, [backend])

    def vif_rules_again(self, pool, vif):
        """setup-vif-rules again for a plugged VIF (VIF.move, a new
        locking mode): its port goes to its network's bridge, or to none
        (``disabled``)."""
        fact, key = self._vif_in_domain(pool, vif)
        with self.lock:
            domain = self.domains.get(key)
            backend = domain.backends.get(fact['number']) if domain else None
            if backend is None:
                return
            old = backend
            try:
                new = Backend(fact, domain.domid)
                hostnet = domain.hostnet
                hostnet.vsctl('--if-exists', 'del-port', old.name)
                domain.backends[fact['number']] = new
                if new.on_bridge:
                    self._add_port(hostnet, new)
            except Dom0NetError as exc:
                raise _internal(exc)
            self._detach(domain.hostnet, [old])

    # -- devices -----------------------------------------------------------

    def _plug(self, domain, fact):
        """What vif-real and setup-vif-rules do for a new device."""
        hostnet = domain.hostnet
        backend = Backend(fact, domain.domid)
        domain.backends[backend.number] = backend
        peer = 'eth%d' % backend.number
        mtu = str(fact['mtu'])
        netns.run(['ip', 'link', 'add', backend.name, 'netns', hostnet.netns,
                   'address', BRIDGE_MAC, 'mtu', mtu, 'type', 'veth',
                   'peer', 'name', peer, 'netns', domain.guest.netns,
                   'address', fact['mac'], 'mtu', mtu])
        netns.ethtool_tx_off(domain.guest.netns, peer)
        netns.ethtool_tx_off(hostnet.netns, backend.name)
        netns.ip(domain.guest.netns, 'link', 'set', peer, 'up')
        hostnet.ip('link', 'set', backend.name, 'arp', 'off')
        if backend.on_bridge:
            self._add_port(hostnet, backend)
        if not domain.guest.paused:
            hostnet.ip('link', 'set', backend.name, 'up')

    def _expect(self, domain, fact):
        """A migration's destination: the port first, its device comes
        when the source's domain goes."""
        backend = Backend(fact, domain.domid)
        backend.pending = True
        domain.backends[backend.number] = backend
        if backend.on_bridge:
            self._add_port(domain.hostnet, backend)

    @staticmethod
    def _add_port(hostnet, backend):
        """setup-vif-rules' add_vswitch_port, its external_ids quoted as
        it quotes them."""
        fact = backend.facts
        args = ['--', '--if-exists', 'del-port', backend.name,
                '--', 'add-port', fact['bridge'], backend.name]
        for key, value in (('xs-vm-uuid', fact['vm_uuid']),
                           ('xs-vif-uuid', fact['uuid']),
                           ('xs-network-uuid', fact['network_uuid']),
                           ('attached-mac', fact['mac'])):
            args += ['--', 'set', 'interface', backend.name,
                     'external-ids:"%s"="%s"' % (key, value)]
        hostnet.vsctl(*args)

    @staticmethod
    def _unplug(domain, backend, quiet=False):
        hostnet = domain.hostnet
        hostnet.vsctl('--if-exists', 'del-port', backend.name, check=not quiet)
        if not backend.pending:
            hostnet.ip('link', 'del', backend.name, check=not quiet)

    @staticmethod
    def _hand_over(source, backend, target, arriving):
        """The source's device becomes the destination's: its guest end
        (addresses, sockets) stays as it was."""
        src, dst = source.hostnet, target.hostnet
        src.vsctl('--if-exists', 'del-port', backend.name)
        src.ip('link', 'set', backend.name, 'down')
        if src is dst:
            src.ip('link', 'set', backend.name, 'name', arriving.name)
        else:
            moving = 'xm' + uuid.uuid4().hex[:8]
            src.ip('link', 'set', backend.name, 'name', moving)
            src.ip('link', 'set', moving, 'netns', dst.netns)
            dst.ip('link', 'set', moving, 'name', arriving.name)
        if not target.guest.paused:
            dst.ip('link', 'set', arriving.name, 'up')
        arriving.pending = False

    def _detach(self, hostnet, backends):
        """xapi's deregister_vif: a managed internal network's bridge
        goes with the last VIF using it on this host, if it is empty."""
        for backend in backends:
            fact = backend.facts
            if not (fact['managed'] and fact['internal']):
                continue
            still = any(b.facts['network'] == fact['network']
                        for d in self.domains.values()
                        if d.hostnet is hostnet
                        for b in d.backends.values())
            if still:
                continue
            try:
                if fact['bridge'] in hostnet.bridges() and \
                        not hostnet.interfaces(fact['bridge']):
                    hostnet.destroy_bridge(fact['bridge'])
            except Dom0NetError as exc:
                _warn('removing bridge %s: %s' % (fact['bridge'], exc))


def _record_mtus(db, facts):
    """xapi writes the device's MTU into VIF.MTU once it is plugged."""
    with db.lock:
        for fact in facts:
            if db.exists('VIF', fact['ref']):
                db.set('VIF', fact['ref'], MTU=fact['mtu'])


def _internal(exc):
    return XapiError('INTERNAL_ERROR', 'xapisim dom0 network: %s' % exc)


def _warn(text):
    sys.stderr.write('xapisim: dom0 network: %s\n' % text)
