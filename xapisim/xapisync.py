"""ovs-xapi-sync, as XCP-ng's dom0 runs it, for one simulated host.

XCP-ng's Open vSwitch package runs ``ovs-xapi-sync`` (from OVS's
``xenserver/`` directory) beside ovs-vswitchd.  It watches the Bridge and
Interface tables and, after every change, goes over all their rows:

- a bridge it has not seen yet (or one without a ``bridge-id``) gets the
  ``fail_mode`` of the xapi network on it (network ``other_config``
  ``vswitch-controller-fail-mode``, else the pool's, else
  ``standalone``) and its ``other_config`` ``disable-in-band`` from the
  network's ``vswitch-disable-in-band`` (removed when the network has
  none); its ``bridge-id`` is the network's ``nicira-bridge-id`` or the
  bridge's ``xs-network-uuids``;
- every Interface gets ``iface-id`` = the VIF's ``other_config``
  ``nicira-iface-id`` (else its ``xs-vif-uuid``) and ``vm-id`` = the
  VM's ``nicira-vm-id`` (else its ``xs-vm-uuid``); a row *without*
  ``xs-vif-uuid`` loses its ``iface-id`` (and without ``xs-vm-uuid`` its
  ``vm-id``); a ``vif`` with its ``tap`` twin: the tap is active, the vif
  inactive, the tap copies the vif's ids; a lone ``vif`` is active; other
  devices lose ``iface-status``.

The values are remembered per ``xs-vif-uuid`` / ``xs-vm-uuid`` / bridge
while the rows exist, as the daemon's caches do.  This emulation runs as
a thread of the simulator, reads the host's pool database where the
daemon asks xapi, and writes through an OVSDB connection of its own, each
change guarded by a ``wait`` on what it read (the IDL's ``verify``).
"""

import sys
import threading

from xapisim import ovsdb

MONITOR = {
    'Bridge': {'columns': ['name', 'external_ids', 'other_config',
                           'fail_mode']},
    'Interface': {'columns': ['name', 'external_ids']},
}
COMMENT = 'ovs-xapi-sync: Updating records from XAPI'


def _set_or_delete(mapping, key, value):
    """The daemon's set_or_delete: None removes the key."""
    if value is None:
        if key in mapping:
            del mapping[key]
            return True
        return False
    if mapping.get(key) != value:
        mapping[key] = value
        return True
    return False


def _is_vif_or_tap(name):
    return name.startswith('vif') or name.startswith('tap')


class XapiSync(object):
    """The daemon for one host: ``start`` once its ovsdb-server serves."""

    def __init__(self, host, db_path):
        self.host = host
        self.db_path = db_path
        self._conn = None
        self._thread = None
        self.bridges = {}       # bridge name -> bridge-id
        self.iface_ids = {}     # xs-vif-uuid -> iface-id
        self.vm_ids = {}        # xs-vm-uuid -> vm-id

    def start(self):
        self._conn = ovsdb.Connection(self.db_path)
        self._monitor = self._conn.request(
            'monitor', ['Open_vSwitch', 'ovs-xapi-sync', MONITOR])
        self._thread = threading.Thread(
            target=self._run, daemon=True,
            name='ovs-xapi-sync %s' % self.host.name_label)
        self._thread.start()

    def stop(self):
        if self._conn is not None:
            self._conn.close()
        if self._thread is not None:
            self._thread.join(30)

    # -- the loop ------------------------------------------------------

    def _run(self):
        try:
            self._loop()
        except ovsdb.ConnectionClosed:
            pass
        except Exception as exc:    # a simulator bug: say so, loudly
            sys.stderr.write('xapisim: ovs-xapi-sync of %s stopped: %r\n'
                             % (self.host.name_label, exc))

    def _loop(self):
        cache = ovsdb.TableCache()
        pending = None          # the transaction in flight
        dirty = False
        while True:
            message = self._conn.receive()
            if message.get('method') == 'update':
                cache.apply(message['params'][1])
                dirty = True
            elif message.get('id') == self._monitor:
                if message.get('error'):
                    raise RuntimeError('monitor: %r' % (message['error'],))
                cache.apply(message['result'])
                dirty = True
            elif pending is not None and message.get('id') == pending:
                # a transaction that failed (a row changed under it) is
                # followed by the update that changed it: no retry here
                pending = None
            if dirty and pending is None:
                dirty = False
                ops = self._pass(cache)
                if ops:
                    pending = self._conn.request(
                        'transact', ['Open_vSwitch'] + ops +
                        [{'op': 'comment', 'comment': COMMENT}])

    # -- one pass over the tables ---------------------------------------

    def _pass(self, cache):
        ops = []
        new_bridges = {}
        for uuid, row in cache.rows('Bridge').items():
            name = row['name']
            changed = {}
            bridge_id = self.bridges.get(name)
            if bridge_id is None:
                changed.update(self._configure_bridge(row))
                bridge_id = self._bridge_id(row)
            external_ids = dict(row['external_ids'])
            if _set_or_delete(external_ids, 'bridge-id', bridge_id):
                changed['external_ids'] = ovsdb.encode_map(external_ids)
            if bridge_id is not None:
                new_bridges[name] = bridge_id
            ops += _guarded_update('Bridge', uuid, row, changed)
        self.bridges = new_bridges

        rows = cache.rows('Interface')
        ids = {uuid: dict(row['external_ids']) for uuid, row in rows.items()}
        by_name = {row['name']: uuid for uuid, row in rows.items()}
        new_iface_ids = {}
        new_vm_ids = {}
        for uuid, row in rows.items():
            name = row['name']
            vif = tap = None
            if name.startswith('vif'):
                vif, tap = uuid, by_name.get('tap' + name[3:])
            elif name.startswith('tap'):
                tap, vif = uuid, by_name.get('vif' + name[3:])
            mine = ids[uuid]
            if uuid == tap and vif is not None:
                for key in ('attached-mac', 'xs-network-uuid', 'xs-vif-uuid',
                            'xs-vm-uuid'):
                    _set_or_delete(mine, key, ids[vif].get(key))
            xvu = mine.get('xs-vif-uuid')
            iface_id = None     # no xs-vif-uuid, no iface-id
            if xvu:
                iface_id = (new_iface_ids.get(xvu) or self.iface_ids.get(xvu)
                            or self._iface_id(name, xvu))
                new_iface_ids[xvu] = iface_id
            _set_or_delete(mine, 'iface-id', iface_id)
            xvmu = mine.get('xs-vm-uuid')
            vm_id = None
            if xvmu:
                vm_id = (new_vm_ids.get(xvmu) or self.vm_ids.get(xvmu)
                         or self._vm_id(name, xvmu))
                new_vm_ids[xvmu] = vm_id
            _set_or_delete(mine, 'vm-id', vm_id)
            if vif is not None and tap is not None:
                _set_or_delete(ids[tap], 'iface-status', 'active')
                _set_or_delete(ids[vif], 'iface-status', 'inactive')
            elif vif is not None:
                _set_or_delete(ids[vif], 'iface-status', 'active')
            else:
                _set_or_delete(mine, 'iface-status', None)
        self.iface_ids = new_iface_ids
        self.vm_ids = new_vm_ids
        for uuid, row in rows.items():
            if ids[uuid] != row['external_ids']:
                ops += _guarded_update('Interface', uuid, row, {
                    'external_ids': ovsdb.encode_map(ids[uuid])})
        return ops

    def _configure_bridge(self, row):
        """update_fail_mode and update_in_band_mgmt: the columns to
        change, for a bridge of a xapi network."""
        network = self._network_by_bridge(row['name'])
        if network is None:
            return {}
        changed = {}
        fail_mode = network['other_config'].get(
            'vswitch-controller-fail-mode')
        if not fail_mode:
            fail_mode = self._pool_other_config().get(
                'vswitch-controller-fail-mode')
        if fail_mode not in ('standalone', 'secure'):
            fail_mode = 'standalone'
        if ovsdb.optional(row['fail_mode']) != fail_mode:
            changed['fail_mode'] = fail_mode
        dib = network['other_config'].get('vswitch-disable-in-band')
        other_config = dict(row['other_config'])
        if (not dib or dib in ('true', 'false')) and \
                _set_or_delete(other_config, 'disable-in-band', dib):
            changed['other_config'] = ovsdb.encode_map(other_config)
        return changed

    def _bridge_id(self, row):
        network = self._network_by_bridge(row['name'])
        if network is not None:
            bridge_id = network['other_config'].get('nicira-bridge-id')
            if bridge_id is not None:
                return bridge_id
        uuids = row['external_ids'].get('xs-network-uuids')
        if not uuids:
            return None
        uuids = uuids.split(';')
        if len(uuids) == 1:
            return uuids[0]
        if network is not None and network['uuid'] in uuids:
            return network['uuid']
        return None

    # -- what the daemon asks xapi ---------------------------------------

    def _network_by_bridge(self, bridge):
        db = self.host.pool.db
        with db.lock:
            found = db.find('network', bridge=bridge)
            return db.record('network', found[0]) if found else None

    def _pool_other_config(self):
        db = self.host.pool.db
        with db.lock:
            return dict(db.get('pool', self.host.pool.ref, 'other_config'))

    def _other_config(self, cls, uuid):
        db = self.host.pool.db
        with db.lock:
            ref = db.by_uuid[cls].get(uuid)
            if ref is None or not db.exists(cls, ref):
                return None
            return dict(db.get(cls, ref, 'other_config'))

    def _iface_id(self, name, xs_vif_uuid):
        return self._nicira_id(name, 'VIF', xs_vif_uuid, 'nicira-iface-id')

    def _vm_id(self, name, xs_vm_uuid):
        return self._nicira_id(name, 'VM', xs_vm_uuid, 'nicira-vm-id')

    def _nicira_id(self, name, cls, xs_uuid, key):
        """get_iface_id / get_vm_id: the object's ``other_config`` ``key``
        for a vif or tap device, else (or without one) ``xs_uuid``."""
        if not _is_vif_or_tap(name):
            return xs_uuid
        other = self._other_config(cls, xs_uuid)
        if other is None:
            return xs_uuid
        return other.get(key, xs_uuid)


def _guarded_update(table, uuid, row, changed):
    """Operations writing ``changed`` into one row, provided that the
    columns it changes still hold what this pass read."""
    if not changed:
        return []
    seen = {}
    for column in changed:
        value = row[column]
        if isinstance(value, dict):
            seen[column] = ovsdb.encode_map(value)
        elif value is None or value == []:
            seen[column] = ['set', []]
        else:
            seen[column] = value
    return [{'op': 'wait', 'table': table, 'where': ovsdb.row_is(uuid),
             'columns': sorted(seen), 'until': '==', 'rows': [seen],
             'timeout': 0},
            {'op': 'update', 'table': table, 'where': ovsdb.row_is(uuid),
             'row': changed}]
