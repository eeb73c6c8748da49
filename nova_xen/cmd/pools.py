"""One Nova host aggregate per XenAPI pool.

Nova and Placement alone say which pool a compute belongs to: the driver
makes each compute node's uuid its XenServer host's uuid and puts the
node's resource provider in a placement aggregate whose uuid is the pool's
uuid (``XenAPIDriver.update_provider_tree``).  Nova mirrors its own host
aggregates into placement as well, under their own uuids: what is left of
a provider's aggregates once those are set aside is its pool.

:class:`Survey` holds that against Nova's host aggregates (those whose
metadata has ``xenapi_pool_uuid``) and writes down every mismatch as one
sentence with the changes that fix it, if there are any: ``pools list``
prints the sentences, ``pools sync`` makes the changes.  :class:`Cloud` is
the openstacksdk side: it reads and changes, and decides nothing.
"""

import collections
import time

from openstack import exceptions as sdk_exc
from oslo_utils import uuidutils

META = 'xenapi_pool_uuid'
#: placement's GET /resource_providers/{uuid}/aggregates, with generation
PLACEMENT_VERSION = '1.19'
#: seconds between two looks while ``--wait`` waits for computes
WAIT_STEP = 2

Compute = collections.namedtuple(
    'Compute', 'host node uuid state status xen provider_aggregates')
Compute.__doc__ = """A compute node as Nova lists it: ``host`` is its
service host (what aggregates hold), ``node`` its hypervisor_hostname,
``uuid`` its uuid (its provider's, and the XenServer host's), ``xen``
whether nova-xen drives it, ``provider_aggregates`` the placement
aggregates of its provider (None: placement has no provider for it)."""

Aggregate = collections.namedtuple(
    'Aggregate', 'id name uuid hosts metadata availability_zone')


class Error(Exception):
    """The command cannot go on: the message says why."""


def default_name(pool):
    """The aggregate name of a pool nobody named (no xapi access here)."""
    return 'xenapi-pool-%s' % pool[:8]


def parse_name(item):
    """A ``--name POOL_UUID=NAME`` item as (pool uuid, name)."""
    pool, sep, name = item.partition('=')
    if not sep or not name.strip() or not uuidutils.is_uuid_like(pool):
        raise ValueError('%r: give POOL_UUID=NAME, the full uuid of a pool '
                         'and the name of its aggregate' % item)
    return pool.lower(), name.strip()


# action: (order in a run, present and past verb, sentence)
_ACTIONS = {
    'create': (0, ('create', 'created'),
               '{verb} aggregate {name} for pool {pool}{in_az}'),
    'adopt': (0, ('set', 'set'),
              '{verb} {meta}={pool} on aggregate {name}'),
    'rename': (1, ('rename', 'renamed'), '{verb} aggregate {old} to {name}'),
    'remove': (2, ('remove', 'removed'),
               '{verb} host {host} from aggregate {name}: {reason}'),
    'set_az': (3, ('set', 'set'),
               '{verb} availability zone {az} on aggregate {name}'),
    'add': (4, ('add', 'added'), '{verb} host {host} to aggregate {name}'),
    'delete': (5, ('delete', 'deleted'), '{verb} aggregate {name}: {reason}'),
}


class Change(collections.namedtuple(
        'Change', 'action pool aggregate name host az reason',
        defaults=(None, None, None, None))):
    """One call to Nova's API; ``aggregate`` is None for the aggregate
    the same run creates for ``pool``."""

    @property
    def order(self):
        return _ACTIONS[self.action][0]

    def text(self, done=True):
        _, verbs, sentence = _ACTIONS[self.action]
        return sentence.format(
            verb=verbs[done], meta=META, pool=self.pool, name=self.name,
            host=self.host, az=self.az, reason=self.reason,
            old=self.aggregate.name if self.aggregate else None,
            in_az=', in availability zone %s' % self.az if self.az else '')


class Survey(object):
    """Nova's pool aggregates against the pools the computes report.

    ``findings`` are (sentence, changes) pairs; ``changes`` is every
    change in the order they must be made (new aggregates, then hosts out,
    availability zones, hosts in, and last deletions).  ``names`` maps pool
    uuids to aggregate names (new aggregates, renames); ``az`` makes each
    aggregate's availability zone its name; ``prune`` deletes aggregates
    of pools no compute reports.
    """

    def __init__(self, computes, aggregates, names=None, az=False,
                 prune=False):
        self.aggregates = sorted(aggregates, key=lambda a: a.name)
        self.names = names or {}
        self.az = az
        self.prune = prune
        self.findings = []
        self.nodes = collections.defaultdict(list)  # nova-xen host: nodes
        self.others = set()     # service hosts of other drivers
        self.pool_of = {}       # nova-xen host: pool uuid, or None
        self.pools = collections.defaultdict(list)  # pool: its hosts
        self.claims = collections.defaultdict(list)  # pool: aggregates
        for aggregate in self.aggregates:
            if META in aggregate.metadata:
                self.claims[aggregate.metadata[META]].append(aggregate)
        for compute in computes:
            if compute.xen:
                self.nodes[compute.host].append(compute)
            else:
                self.others.add(compute.host)
        self._place()
        for pool in sorted(set(self.pools) | set(self.claims)):
            self._survey_pool(pool)

    @property
    def changes(self):
        changes = [c for _, fixes in self.findings for c in fixes]
        return sorted(changes, key=lambda c: c.order)

    @property
    def unresolved(self):
        return [sentence for sentence, fixes in self.findings if not fixes]

    @property
    def unplaced(self):
        """nova-xen hosts whose pool is unknown."""
        return sorted(h for h, pool in self.pool_of.items() if pool is None)

    def summary(self):
        return '%s, %s' % (_count(len(self.pools), 'pool', 'pools'),
                           _count(len(self.nodes), 'nova-xen compute host',
                                  'nova-xen compute hosts'))

    def _find(self, sentence, *changes):
        self.findings.append((sentence, list(changes)))

    # -- which pool each compute is in ---------------------------------

    def _place(self):
        known = {a.uuid for a in self.aggregates}
        for host, nodes in sorted(self.nodes.items()):
            pools = {self._pool_of_node(node, known) for node in nodes}
            pool = pools.pop() if len(pools) == 1 else None
            self.pool_of[host] = pool
            if pool is not None:
                self.pools[pool].append(host)
            elif len(pools - {None}) > 1:
                self._find('host %s has nodes in several pools (%s): a Nova '
                           'host aggregate can hold it in only one of them'
                           % (host, ', '.join(sorted(pools - {None}))))

    def _pool_of_node(self, node, known):
        what = _node(node)
        if node.provider_aggregates is None:
            self._find('%s has no resource provider in placement: its '
                       'nova-compute has not reported yet' % what)
            return None
        candidates = set(node.provider_aggregates) - known
        claimed = candidates & set(self.claims)
        if len(candidates) > 1 and len(claimed) == 1:
            candidates = claimed
        if not candidates:
            self._find('%s is in no XenAPI pool: its resource provider is in '
                       'no pool aggregate (its XenServer host left its pool, '
                       'or its nova-compute has not reported yet)' % what)
            return None
        if len(candidates) > 1:
            self._find('%s: its resource provider is in several placement '
                       'aggregates that are no Nova host aggregates (%s): '
                       'cannot tell which one is its XenAPI pool'
                       % (what, ', '.join(sorted(candidates))))
            return None
        return candidates.pop()

    # -- each pool and its aggregate -----------------------------------

    def _survey_pool(self, pool):
        claims = self.claims.get(pool, [])
        if len(claims) > 1:
            self._find('aggregates %s all claim pool %s (metadata %s): remove '
                       'the key from all but one of them' % (
                           ', '.join(a.name for a in claims), pool, META))
            return
        hosts = self.pools.get(pool, [])
        if not claims:
            aggregate = self._new_aggregate(pool, hosts)
            if aggregate is None:
                return
        else:
            aggregate = claims[0]
        name = self._name(pool, aggregate)
        if hosts:
            if self.az and aggregate.availability_zone != name:
                self._find('aggregate %s is in availability zone %s, not %s'
                           % (name, aggregate.availability_zone, name),
                           Change('set_az', pool, aggregate, name, az=name))
            for host in hosts:
                if host not in aggregate.hosts:
                    self._find('host %s is in pool %s but not in its '
                               'aggregate %s' % (host, pool, name),
                               Change('add', pool, aggregate, name, host))
        self._survey_members(pool, aggregate, name)
        if not hosts:
            self._stale(pool, aggregate, name)

    def _new_aggregate(self, pool, hosts):
        """The aggregate to make, or one that has the pool's name but no
        xenapi_pool_uuid; None when it is all done here."""
        name = self.names.get(pool) or default_name(pool)
        same = [a for a in self.aggregates if a.name == name]
        if not same:
            az = name if self.az else None
            self._find('pool %s has no aggregate (its hosts: %s)'
                       % (pool, ', '.join(hosts)),
                       Change('create', pool, None, name, az=az),
                       *[Change('add', pool, None, name, host)
                         for host in hosts])
            return None
        if same[0].metadata.get(META):
            self._find('pool %s has no aggregate, and aggregate %s, its name, '
                       'stands for pool %s: choose another name with --name '
                       '%s=NAME' % (pool, name, same[0].metadata[META], pool))
            return None
        self._find('pool %s has no aggregate; aggregate %s has its name but '
                   'no %s' % (pool, name, META),
                   Change('adopt', pool, same[0], name))
        return same[0]

    def _name(self, pool, aggregate):
        """The aggregate's name after this run (``--name`` renames)."""
        wanted = self.names.get(pool)
        if not wanted or wanted == aggregate.name:
            return aggregate.name
        if any(a.name == wanted for a in self.aggregates):
            self._find('aggregate %s of pool %s cannot be renamed %s: another '
                       'aggregate has that name' % (aggregate.name, pool,
                                                    wanted))
            return aggregate.name
        self._find('aggregate %s of pool %s is not named %s (--name)'
                   % (aggregate.name, pool, wanted),
                   Change('rename', pool, aggregate, wanted))
        return wanted

    def _survey_members(self, pool, aggregate, name):
        for host in sorted(aggregate.hosts):
            if host in self.pool_of:
                other = self.pool_of[host]
                if other is None or other == pool:
                    continue    # in its pool, or said above
                why = 'its XenServer host is in pool %s' % other
            elif host in self.others:
                why = 'it is no nova-xen compute host'
            else:
                why = 'Nova has no compute node on it'
            self._find('host %s is in aggregate %s of pool %s, but %s'
                       % (host, name, pool, why),
                       Change('remove', pool, aggregate, name, host,
                              reason=why))

    def _stale(self, pool, aggregate, name):
        sentence = 'aggregate %s claims pool %s, which no compute reports' % (
            name, pool)
        waiting = [h for h in aggregate.hosts if h in self.pool_of and
                   self.pool_of[h] is None]
        if not self.prune:
            self._find(sentence + ': nova-xen-manage pools sync --prune '
                       'deletes it')
        elif waiting:
            self._find(sentence + ': kept while %s, in it, has not reported '
                       'its pool' % ', '.join(waiting))
        else:
            self._find(sentence, Change(
                'delete', pool, aggregate, name,
                reason='no compute reports pool %s' % pool))


def _node(compute):
    return 'host %s (node %s, %s)' % (compute.host, compute.node,
                                      compute.uuid)


def _count(number, one, many):
    return '%d %s' % (number, one if number == 1 else many)


class Cloud(object):
    """Nova's and Placement's APIs, through an openstacksdk Connection."""

    def __init__(self, conn):
        self.conn = conn

    def computes(self):
        found = []
        for hypervisor in self.conn.compute.hypervisors(details=True):
            if not uuidutils.is_uuid_like(hypervisor.id):
                raise Error('Nova lists compute node %s by id, not by uuid: '
                            'its API is older than microversion 2.53'
                            % hypervisor.name)
            xen = (hypervisor.hypervisor_type or '').lower() == 'xen'
            service = hypervisor.service_details or {}
            found.append(Compute(
                service.get('host'), hypervisor.name, hypervisor.id,
                hypervisor.state, hypervisor.status, xen,
                self._provider_aggregates(hypervisor.id) if xen else None))
        return found

    def _provider_aggregates(self, uuid):
        response = self.conn.placement.get(
            '/resource_providers/%s/aggregates' % uuid,
            microversion=PLACEMENT_VERSION)
        if response.status_code == 404:
            return None
        sdk_exc.raise_from_response(response)
        return frozenset(response.json()['aggregates'])

    def aggregates(self):
        return [Aggregate(a.id, a.name, a.uuid, list(a.hosts or []),
                          dict(a.metadata or {}), a.availability_zone)
                for a in self.conn.compute.aggregates()]

    def apply(self, change, target):
        """Make one change to aggregate ``target`` (an id; None for
        'create', which returns the new aggregate's id)."""
        compute = self.conn.compute
        if change.action == 'create':
            attrs = {'name': change.name}
            if change.az:
                attrs['availability_zone'] = change.az
            target = compute.create_aggregate(**attrs).id
            compute.set_aggregate_metadata(target, {META: change.pool})
            return target
        if change.action == 'adopt':
            compute.set_aggregate_metadata(target, {META: change.pool})
        elif change.action == 'rename':
            compute.update_aggregate(target, name=change.name)
        elif change.action == 'set_az':
            compute.update_aggregate(target, availability_zone=change.az)
        elif change.action == 'remove':
            compute.remove_host_from_aggregate(target, change.host)
        elif change.action == 'add':
            compute.add_host_to_aggregate(target, change.host)
        elif change.action == 'delete':
            compute.delete_aggregate(target)


def survey(cloud, out, wait=0, sleep=time.sleep, **options):
    """A Survey of the cloud; with ``wait`` (seconds), first wait for
    nova-xen computes whose pool is not known yet."""
    deadline = time.monotonic() + wait
    told = False
    while True:
        found = Survey(cloud.computes(), cloud.aggregates(), **options)
        if not found.unplaced or time.monotonic() >= deadline:
            return found
        if not told:
            out('waiting up to %d s for %s to report its pool'
                % (wait, ', '.join(found.unplaced)))
            told = True
        sleep(WAIT_STEP)


def sync(cloud, out, names=None, az=False, prune=False, wait=0,
         dry_run=False, strict=False, sleep=time.sleep):
    """``pools sync``: the exit status."""
    found = survey(cloud, out, wait=wait, sleep=sleep, names=names, az=az,
                   prune=prune)
    made = {}       # pool uuid: id of the aggregate created for it
    failed = 0
    for change in found.changes:
        if dry_run:
            out('would %s' % change.text(done=False))
            continue
        try:
            _apply(cloud, change, made)
        except (sdk_exc.SDKException, Error) as exc:
            failed += 1
            out('FAILED to %s: %s' % (change.text(done=False), _reason(exc)))
        else:
            out(change.text())
    for pool in sorted(set(names or {}) - set(found.pools)):
        out('note: --name %s=%s: no compute reports this pool'
            % (pool, names[pool]))
    for sentence in found.unresolved:
        out('unresolved: %s' % sentence)
    if not found.changes:
        out('nothing to change: %s' % found.summary())
    return 1 if failed or (strict and found.unresolved) else 0


def _apply(cloud, change, made):
    if change.action == 'create':
        made[change.pool] = cloud.apply(change, None)
        return
    target = (change.aggregate.id if change.aggregate is not None
              else made.get(change.pool))
    if target is None:
        raise Error('aggregate %s was not created' % change.name)
    cloud.apply(change, target)


def show(cloud, out, strict=False, known=None):
    """``pools list``: the exit status.  ``known``: {pool uuid: what its
    xapi says} (xapi_pools.Pool), for the pool's name and master."""
    found = survey(cloud, out)
    known = known or {}
    for pool in sorted(set(found.pools) | set(found.claims)):
        claims = found.claims.get(pool)
        about = known.get(pool)
        out('pool %s%s: %s' % (pool, ' (%s, master %s)' % (
            about.name, about.master) if about else '', ', '.join(
            'aggregate %s%s' % (a.name, ' (availability zone %s)'
                                % a.availability_zone
                                if a.availability_zone else '')
            for a in claims) if claims else 'no aggregate'))
        for host in found.pools.get(pool, []):
            _show_host(found, host, out)
    if found.unplaced:
        out('in no known pool:')
        for host in found.unplaced:
            _show_host(found, host, out)
    for sentence, _ in found.findings:
        out('mismatch: %s' % sentence)
    out('%s, %s' % (found.summary(), _count(len(found.findings), 'mismatch',
                                            'mismatches')))
    return 1 if strict and found.findings else 0


def _show_host(found, host, out):
    for node in found.nodes[host]:
        out('    host %s  node %s  %s  %s, %s' % (
            host, node.node, node.uuid, node.state, node.status))


def _reason(exc):
    return getattr(exc, 'details', None) or str(exc)
