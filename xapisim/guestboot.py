"""A simulated guest that boots like a cloud image (``--dom0-network ovs``).

With real dom0 networking each running VM has a guest network namespace
(``xapisim.dom0net``).  When it is made, the guest boots in it what a
cloud image's init and cloud-init would:

- its init runs in mount, UTS and time namespaces of its own
  (``unshare``), so that ``hostname``, ``/root``, ``/tmp``, ``/mnt``,
  ``/run``, ``/dev``, ``/etc/resolv.conf``, ``/etc/shadow`` and
  ``/proc/uptime`` are the guest's and never the machine's;
  ``/proc/cpuinfo`` lists its VCPUs;
- hostname and ``/root/.ssh/authorized_keys`` from the config drive: the
  attached disk whose ISO 9660 volume is ``config-2`` (its
  ``openstack/latest/meta_data.json``: ``hostname``, its label before the
  first dot as cloud-init keeps it, and ``public_keys``); without one,
  ``localhost`` and no keys;
- the fixed addresses ``network_data.json`` gives (subnets without DHCP)
  on the NICs its links' MACs name; ``udhcpc`` on each other NIC with a
  script of the guest's own (addresses, default route, MTU, the guest's
  resolv.conf); only eth0's lease sets the default route;
- dropbear on port 22 (root: keys, and a password once one is set), its
  host key made once per VM;
- a password agent: a new ``vm-data/admin_password`` in its current
  domain's xenstore (nova-xen's set_admin_password) becomes root's
  password in the guest's own ``/etc/shadow`` (every account locked until
  then); the password reaches no command line and no log;
- its disks are the VM's plugged VBDs: ``/dev/xvdX`` (links to the VDIs'
  files), ``lsblk`` (a shim listing them) and ``/proc/partitions``
  follow VBD hot-plug;
  ``blkid -L LABEL`` finds a disk by label (``config-2``); ``sudo`` runs
  the command (the guest's user is root);
- ``/tmp`` and ``/mnt`` live in the root disk's bytes: an ext4 file
  system in the 16 MiB of the root VDI that end 1 MiB before its end
  (clear of partitions and a GPT's backup header), made on first boot,
  loop-mounted from the VDI's file.  What is written there survives a
  reboot and travels with a snapshot or a copy of the disk (Tempest's
  ``create_timestamp`` writes ``/tmp/timestamp``); a root disk under
  32 MiB, or one whose bytes have no file here (a LUN when FUSE is
  missing: ``no_root_bytes``), gets a tmpfs instead, and the console
  says why; a LUN of an iSCSI SR (a volume) is the world's FUSE file
  of it (``xapisim.lunfile``), its bytes the target's;
- what it does goes into its console log (``console-log``).

The guest follows its VM: a reboot, shutdown or destroy ends it (its
namespace and processes go); a pause cuts it off until unpause (its
NICs without carrier: ``xapisim.dom0net``); a
migration within the world keeps it
running, as a resumed domain keeps its state, and its disks are those of
the destination's VBDs; when the root disk's file changed (a storage
migration), its init starts again on the new bytes.
"""

import ipaddress
import json
import os
import shutil
import stat
import subprocess
import sys

from xapisim import guest as domains
from xapisim import isofs
from xapisim import lunfile
from xapisim import netns
from xapisim.storage import blocks_of

MIB = 1024 * 1024
FS_SIZE = 16 * MIB
FS_TAIL = MIB
MIN_ROOT = 32 * MIB
FS_LABEL = b'xapisim-guest'
CONFIG_DRIVE_LABEL = 'config-2'
# /dev/xvdX: Xen's block major, 16 minors a disk
XVD_MAJOR = 202
LOOP_NODES = 256
DEV_NODES = (('null', 1, 3), ('zero', 1, 5), ('full', 1, 7),
             ('random', 1, 8), ('urandom', 1, 9), ('tty', 5, 0))
GUEST_PACKAGES = {'udhcpc': 'udhcpc', 'dropbear': 'dropbear-bin',
                  'dropbearkey': 'dropbear-bin'}
# what Tempest runs in a guest that a Debian machine may lack
BUSYBOX_APPLETS = ('ping', 'ping6', 'nc')
# where the guest sees the world's state directory (its own files, the
# VDIs' files): its /tmp covers the machine's, where that usually is
WORLD_VIEW = '/run/xapisim-world'
# and where it sees the hosts' dom0 roots (its domain's xenstore)
DOM0_VIEW = '/run/xapisim-dom0'
HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, 'data', 'guest')


class GuestOS(object):
    """What runs in one guest's namespace, and its files on the machine."""

    def __init__(self, world, vm_uuid, netns_name):
        self.vm_uuid = vm_uuid
        self.netns = netns_name
        self.world_dir = world.state_dir
        self.dir = os.path.join(world.state_dir, 'guests', vm_uuid)
        self.process = None
        self.root_path = None
        self.nics = []

    def path(self, *names):
        return os.path.join(self.dir, *names)

    def seen(self, path):
        """Where the guest sees ``path`` (under the world's directory)."""
        return os.path.join(WORLD_VIEW, os.path.relpath(path, self.world_dir))

    def say(self, text):
        """A line in the guest's console log."""
        try:
            with open(self.path('console.log'), 'a') as fh:
                fh.write('xapisim-guest: %s\n' % text)
        except OSError:
            pass


def missing_packages():
    return sorted({pkg for tool, pkg in GUEST_PACKAGES.items()
                   if shutil.which(tool) is None})


# ---------------------------------------------------------------- disks


def disks_of(pool, vm):
    """The VM's plugged disks: name, VDI, file, size, read-only, userdevice
    (takes the pool's database lock: call without the dom0 network's).
    A LUN VDI's file is the world's FUSE file of it (``xapisim.lunfile``);
    where it has none, ``note`` says why."""
    db = pool.db
    disks = []
    luns = {}
    with db.lock:
        vm_uuid = db.get('VM', vm, 'uuid')
        host = db.get('VM', vm, 'resident_on')
        for vbd in db.get('VM', vm, 'VBDs'):
            row = db.row('VBD', vbd)
            if not row['currently_attached'] or row['empty'] or \
                    not row['device'] or not db.exists('VDI', row['VDI']):
                continue
            disks.append({'name': row['device'], 'vdi': row['VDI'],
                          'path': pool.storage.path(row['VDI']),
                          'size': db.get('VDI', row['VDI'], 'virtual_size'),
                          'ro': row['mode'] == 'RO',
                          'userdevice': row['userdevice']})
            source = lunfile.source_of(pool, row['VDI'], host)
            if source is not None:
                disks[-1]['lun'] = source['uuid']
                luns[source['uuid']] = source
    # a login and a mount: outside the database lock
    paths, notes = pool.world.lunfiles.use(vm_uuid, luns)
    for disk in disks:
        if disk.get('lun') in paths:
            disk['path'] = paths[disk['lun']]
        elif disk.get('lun') in notes:
            disk['note'] = notes[disk['lun']]
    return sorted(disks, key=lambda d: (len(d['name']), d['name']))


def _minor(name):
    number = 0
    for letter in name[3:]:
        number = number * 26 + ord(letter) - ord('a') + 1
    return (number - 1) * 16


def lsblk_table(disks):
    """What ``lsblk -lb --nodeps`` prints (TYPE left-aligned under its
    header, as Tempest's get_disks reads it)."""
    rows = [('NAME', 'MAJ:MIN', 'RM', 'SIZE', 'RO', 'TYPE', 'MOUNTPOINTS')]
    for disk in disks:
        rows.append((disk['name'], '%d:%d' % (XVD_MAJOR, _minor(disk['name'])),
                     '0', str(disk['size']), '1' if disk['ro'] else '0',
                     'disk', ''))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]),
                 row[2].rjust(widths[2]), row[3].rjust(widths[3]),
                 row[4].rjust(widths[4]), row[5].ljust(widths[5]), row[6]]
        lines.append(' '.join(cells).rstrip())
    return '\n'.join(lines) + '\n'


def partitions_table(disks):
    """The guest's /proc/partitions, as Linux prints it: 1 KiB blocks."""
    lines = ['major minor  #blocks  name', '']
    for disk in disks:
        lines.append('%4d  %7d %10d %s' % (XVD_MAJOR, _minor(disk['name']),
                                           disk['size'] // 1024,
                                           disk['name']))
    return '\n'.join(lines) + '\n'


def show_disks(gos, disks):
    """The guest's /dev/xvdX, lsblk and /proc/partitions become
    ``disks``."""
    dev = gos.path('dev')
    wanted = {d['name']: gos.seen(d['path']) for d in disks}
    for name in os.listdir(dev):
        if name.startswith('xvd') and name not in wanted:
            os.unlink(os.path.join(dev, name))
    for name, target in wanted.items():
        link = os.path.join(dev, name)
        if os.path.islink(link) and os.readlink(link) == target:
            continue
        _link(target, link)
    _write(gos.path('lsblk'), lsblk_table(disks))
    _rewrite(gos.path('partitions'), partitions_table(disks))


def _link(target, link):
    """``link`` points to ``target``, replaced in one step."""
    tmp = link + '.new'
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _rewrite(path, text):
    """``path`` holds ``text``, on the same inode: the guest's bind mount
    of it pins the inode, and would not see a file put in its place."""
    with open(path, 'w') as fh:
        fh.write(text)


def _write(path, text, mode=0o644):
    tmp = path + '.tmp'
    with open(tmp, 'w') as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


# ---------------------------------------------------------------- metadata


def config_drive(disks):
    """(hostname, public keys, network_data) of the first disk whose ISO
    9660 volume is ``config-2``; None if there is none."""
    for disk in disks:
        try:
            iso = isofs.open_file(disk['path'])
        except (isofs.IsoError, OSError):
            continue
        if iso.volume_id != CONFIG_DRIVE_LABEL:
            continue
        meta = _json(iso, 'openstack/latest/meta_data.json')
        network = _json(iso, 'openstack/latest/network_data.json')
        keys = meta.get('public_keys') or {}
        if isinstance(keys, dict):
            keys = [keys[k] for k in sorted(keys)]
        return {'disk': disk['name'], 'hostname': meta.get('hostname'),
                'keys': [k.strip() for k in keys if isinstance(k, str)],
                'network_data': network}
    return None


def _json(iso, path):
    try:
        data = iso.read(path)
        return json.loads(data.decode('utf-8')) if data else {}
    except (ValueError, isofs.IsoError, OSError):
        return {}


def static_addresses(network_data, macs):
    """What cloud-init configures from ``network_data.json`` for the
    networks it gives a fixed address (type ``ipv4``/``ipv6``, a subnet
    without DHCP): [(NIC, address/prefix, default gateway or '')] for the
    NICs whose MAC (``macs``: NIC -> MAC) a link names."""
    by_mac = {mac.lower(): nic for nic, mac in macs.items()}
    links = {}
    for link in network_data.get('links') or []:
        mac = str(link.get('ethernet_mac_address') or '').lower()
        if mac in by_mac:
            links[link.get('id')] = by_mac[mac]
    found = []
    for net in network_data.get('networks') or []:
        nic = links.get(net.get('link'))
        if nic is None or net.get('type') not in ('ipv4', 'ipv6'):
            continue
        try:
            address = ipaddress.ip_address(net['ip_address'])
            mask = net.get('netmask') or ('32' if address.version == 4
                                          else '128')
            if '.' in mask or ':' in mask:
                mask = str(bin(int(ipaddress.ip_address(mask))).count('1'))
            interface = ipaddress.ip_interface('%s/%s' % (address, mask))
        except (KeyError, ValueError):
            continue
        gateway = ''
        for route in net.get('routes') or []:
            if route.get('network') in ('0.0.0.0', '::') and \
                    route.get('gateway'):
                gateway = str(route['gateway'])
        found.append((nic, str(interface), gateway))
    return found


def _macs(pool, vm):
    db = pool.db
    with db.lock:
        return {'eth%s' % db.get('VIF', v, 'device'): db.get('VIF', v, 'MAC')
                for v in db.get('VM', vm, 'VIFs')
                if db.get('VIF', v, 'currently_attached')}


def _hostname(value):
    """The label before the first dot of the config drive's hostname, as
    cloud-init sets it (Nova's is ``NAME.<dhcp_domain>``, ``x.novalocal``),
    in what the kernel takes (64 bytes at most, no spaces)."""
    name = ''.join(c for c in (value or '') if c.isalnum() or c in '-.')
    return name.split('.')[0][:64] or 'localhost'


# ---------------------------------------------------------------- root disk


def root_disk(disks):
    """The writable root disk (userdevice 0) big enough for the guest's
    file system, or None."""
    root = [d for d in disks if d['userdevice'] == '0']
    if not root or root[0]['ro'] or root[0]['size'] < MIN_ROOT:
        return None
    return root[0]


def no_root_bytes(gos, pool, disk):
    """The fallback for a root disk whose bytes have no file on this
    machine (a LUN of an iSCSI SR: its bytes are the target's): the guest
    boots, with /tmp and /mnt on tmpfs, and its console says why they are
    not kept.  None (no file system to mount)."""
    with pool.db.lock:
        sr_type = pool.db.get('SR', pool.db.get('VDI', disk['vdi'], 'SR'),
                              'type')
    gos.say('root disk /dev/%s is on an %s SR, whose bytes have no file '
            'here: /tmp and /mnt are not kept' % (disk['name'], sr_type))
    return None


def root_fs(pool, disk):
    """(file, offset) of the guest file system in ``disk``'s bytes, made
    if they do not hold it yet."""
    offset = disk['size'] - FS_TAIL - FS_SIZE
    with open(disk['path'], 'rb') as fh:
        fh.seek(offset + 1024)
        superblock = fh.read(136)
    if superblock[56:58] != b'\x53\xef' or \
            superblock[120:136].rstrip(b'\0') != FS_LABEL:
        netns.run(['mke2fs', '-q', '-F', '-t', 'ext4',
                   '-L', FS_LABEL.decode(), '-E', 'offset=%d' % offset,
                   disk['path'], '%dk' % (FS_SIZE // 1024)])
        pool.storage.mark_written(disk['vdi'], blocks_of(offset, FS_SIZE))
        pool.storage.refresh_utilisation(disk['vdi'])
    return disk['path'], offset


# ---------------------------------------------------------------- boot


def prepare_dir(gos):
    """The guest's files: /dev, /root, its shims, its host key."""
    os.makedirs(gos.dir, exist_ok=True)
    if os.statvfs(gos.dir).f_flag & os.ST_NODEV:
        raise OSError('the world\'s state directory %s is on a file system '
                      'mounted nodev: the guest\'s /dev cannot live there '
                      '(give --state-dir elsewhere)' % gos.world_dir)
    for sub in ('dev', 'dev/pts', 'dev/shm', 'root', 'bin', 'fs'):
        os.makedirs(gos.path(sub), exist_ok=True)
    os.chmod(gos.path('root'), 0o700)
    dev = gos.path('dev')
    nodes = [(name, stat.S_IFCHR, major, minor)
             for name, major, minor in DEV_NODES]
    nodes.append(('loop-control', stat.S_IFCHR, 10, 237))
    nodes += [('loop%d' % n, stat.S_IFBLK, 7, n) for n in range(LOOP_NODES)]
    for name, kind, major, minor in nodes:
        path = os.path.join(dev, name)
        if not os.path.exists(path):
            os.mknod(path, kind | 0o666 if kind == stat.S_IFCHR
                     else kind | 0o660, os.makedev(major, minor))
    if not os.path.lexists(os.path.join(dev, 'ptmx')):
        os.symlink('pts/ptmx', os.path.join(dev, 'ptmx'))
    # a pipe its init copies into the console log: what the guest writes
    # to /dev/console is there (and "> /dev/console" truncates nothing)
    if not os.path.lexists(os.path.join(dev, 'console')):
        os.mkfifo(os.path.join(dev, 'console'), 0o620)
    # the guest's /tmp covers the machine's: its mount shim runs a copy
    # of isofs.py with the system's Python
    python = shutil.which('python3', path='/usr/bin:/bin') or sys.executable
    shutil.copyfile(isofs.__file__, gos.path('isofs.py'))
    for shim in ('sudo', 'lsblk', 'blkid', 'mount'):
        with open(os.path.join(SCRIPTS, shim)) as fh:
            text = fh.read().replace('@GUEST@', gos.seen(gos.dir)) \
                .replace('@PYTHON@', python)
        _write(gos.path('bin', shim), text, 0o755)
    # busybox's applets, as a cirros image has them
    with open(os.path.join(SCRIPTS, 'busybox-applet')) as fh:
        text = fh.read()
    for applet in BUSYBOX_APPLETS:
        _write(gos.path('bin', applet), text, 0o755)
    with open(os.path.join(SCRIPTS, 'udhcpc.script')) as fh:
        _write(gos.path('udhcpc.script'),
               fh.read().replace('@GUEST@', gos.seen(gos.dir)), 0o755)
    if not os.path.exists(gos.path('resolv.conf')):
        _write(gos.path('resolv.conf'), '')
    if not os.path.exists(gos.path('shadow')):
        with open('/etc/passwd') as fh:
            _write(gos.path('shadow'), guest_shadow(fh.read()), 0o600)
    if not os.path.exists(gos.path('hostkey')) and shutil.which('dropbearkey'):
        netns.run(['dropbearkey', '-t', 'ed25519', '-f', gos.path('hostkey')])


def point_console(gos, pool, host_ref, domid, booting=True):
    """The console log of the guest's current domain is the guest's
    (a link to it); a booting guest's starts with what the domain's log
    held so far (a migrated guest's goes on)."""
    path = domains.console_log_path(pool, host_ref, domid)
    log = gos.path('console.log')
    if os.path.islink(path):
        return
    if booting and os.path.exists(path):
        with open(path, 'rb') as src, open(log, 'ab') as dst:
            shutil.copyfileobj(src, dst)
    _link(log, path)


def point_vm_data(gos, pool, host_ref, domid):
    """The guest's agent reads ``vm-data/`` of its current domain's
    xenstore (where nova-xen writes ``admin_password``) at $G/vm-data."""
    path = os.path.join(domains.xenstore_dir(pool, host_ref, domid),
                        'vm-data')
    _link(os.path.join(DOM0_VIEW, os.path.relpath(path,
                                                  pool.world.dom0_base)),
          gos.path('vm-data'))


def guest_shadow(passwd_text):
    """The guest's own /etc/shadow: the machine's accounts, every one
    locked (``*``) until the agent sets root's password; never the
    machine's hashes."""
    names = [line.split(':')[0] for line in passwd_text.splitlines()
             if line and not line.startswith('#')]
    return ''.join('%s:*::0:99999:7:::\n' % name for name in names)


def boot(world, pool, vm, host_ref, domid, netns_name, nics):
    """The guest's init starts in ``netns_name`` (its NICs ``nics``
    plugged): a GuestOS.  Its first lines are in the console log when
    this returns; the rest (leases, ssh) follow as they happen."""
    vm_uuid = pool.db.get('VM', vm, 'uuid')
    gos = GuestOS(world, vm_uuid, netns_name)
    gos.nics = nics
    os.makedirs(gos.dir, exist_ok=True)
    with open(gos.path('console.log'), 'w'):
        pass
    point_console(gos, pool, host_ref, domid)
    try:
        prepare_dir(gos)
        point_vm_data(gos, pool, host_ref, domid)
        _start(gos, pool, vm, nics)
    except (OSError, netns.Dom0NetError) as exc:
        # the domain runs; its guest does not get far (as an image that
        # fails to boot): the console says why
        gos.say('boot failed: %s' % exc)
        _warn('guest %s: %s' % (vm_uuid, exc))
    return gos


def cpuinfo(vcpus, host_cpuinfo):
    """The guest's /proc/cpuinfo: the machine's first processor, once per
    VCPU (Tempest counts ``^processor`` lines against the flavor)."""
    first = host_cpuinfo.strip().split('\n\n')[0].split('\n')
    blocks = []
    for number in range(vcpus):
        lines = ['processor\t: %d' % number if line.startswith('processor')
                 else line for line in first]
        blocks.append('\n'.join(lines) + '\n')
    return '\n'.join(blocks) + '\n'


def _uptime():
    with open('/proc/uptime') as fh:
        return int(float(fh.read().split()[0]))


def _start(gos, pool, vm, nics):
    with pool.db.lock:
        vcpus = int(pool.db.get('VM', vm, 'VCPUs_at_startup'))
    with open('/proc/cpuinfo') as fh:
        _write(gos.path('cpuinfo'), cpuinfo(max(1, vcpus), fh.read()))
    disks = disks_of(pool, vm)
    for disk in disks:
        if disk.get('note'):
            gos.say('/dev/%s: %s' % (disk['name'], disk['note']))
    show_disks(gos, disks)
    config = config_drive(disks)
    keys = config['keys'] if config else []
    os.makedirs(gos.path('root', '.ssh'), mode=0o700, exist_ok=True)
    _write(gos.path('root', '.ssh', 'authorized_keys'),
           ''.join(k + '\n' for k in keys), 0o600)
    hostname = _hostname(config['hostname'] if config else None)
    if config:
        gos.say('config drive on /dev/%s: hostname %s, %d SSH key(s)'
                % (config['disk'], hostname, len(keys)))
    else:
        gos.say('no config drive: hostname %s, no SSH keys' % hostname)
    disk = root_disk(disks)
    gos.root_path = disk['path'] if disk else None
    if disk is None:
        fs = None
        gos.say('no root disk of %d MiB: /tmp and /mnt are not kept'
                % (MIN_ROOT // MIB))
    elif not os.path.isfile(disk['path']):
        fs = no_root_bytes(gos, pool, disk)
    else:
        fs = root_fs(pool, disk)
    if shutil.which('busybox') is None:
        gos.say('missing the Debian package busybox: no %s'
                % ', '.join(BUSYBOX_APPLETS))
    missing = missing_packages()
    if missing:
        gos.say('missing the Debian packages %s: no DHCP client or SSH '
                'server' % ' '.join(missing))
    static = static_addresses(config['network_data'], _macs(pool, vm)) \
        if config else []
    fixed = {nic for nic, _, _ in static}
    env = dict(os.environ, XSIM_WORLD=gos.world_dir, XSIM_VIEW=WORLD_VIEW,
               XSIM_DOM0=pool.world.dom0_base, XSIM_DOM0_VIEW=DOM0_VIEW,
               XSIM_GUEST=gos.seen(gos.dir), XSIM_HOSTNAME=hostname,
               XSIM_NICS=' '.join(n for n in nics if n not in fixed),
               XSIM_STATIC='\n'.join(' '.join(s) for s in static),
               XSIM_ROOT=fs[0] if fs else '',
               XSIM_ROOT_OFFSET=str(fs[1]) if fs else '',
               XSIM_ROOT_SIZE=str(FS_SIZE),
               XSIM_SSH='' if missing else '1')
    log = open(gos.path('init.log'), 'ab')
    try:
        # a time namespace whose boot time is now: /proc/uptime is the
        # guest's (Tempest's get_boot_time across a reboot)
        gos.process = subprocess.Popen(
            ['ip', 'netns', 'exec', gos.netns, 'unshare', '--mount',
             '--uts', '--time', '--boottime', str(-_uptime()), '--fork',
             '--propagation', 'private', 'sh',
             os.path.join(SCRIPTS, 'init')],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
            start_new_session=True)
    finally:
        log.close()


def disks_changed(gos, pool, vm):
    """A VBD was plugged or unplugged, or a migration moved the disks:
    the guest sees its disks.  If its root disk's bytes are another file
    now (storage migration), its init starts again on them."""
    try:
        disks = disks_of(pool, vm)
        show_disks(gos, disks)
    except OSError as exc:
        _warn('disks of guest %s: %s' % (gos.vm_uuid, exc))
        return
    root = [d['path'] for d in disks if d['userdevice'] == '0']
    if gos.root_path and root and root[0] != gos.root_path:
        gos.say('root disk moved: restarting')
        _stop(gos)
        try:
            _start(gos, pool, vm, gos.nics)
        except (OSError, netns.Dom0NetError) as exc:
            gos.say('boot failed: %s' % exc)
            _warn('guest %s: %s' % (gos.vm_uuid, exc))


def moved(gos, pool, vm, host_ref, domid, nics):
    """The VM's domain moved (a migration): the guest keeps running, its
    console log goes on in the new domain's, its disks are the
    destination's."""
    gos.nics = nics
    point_console(gos, pool, host_ref, domid, booting=False)
    try:
        point_vm_data(gos, pool, host_ref, domid)
    except OSError as exc:
        _warn('vm-data of guest %s: %s' % (gos.vm_uuid, exc))
    disks_changed(gos, pool, vm)


def halt(gos):
    """The guest's domain is gone: its processes end, its mounts go."""
    gos.say('reboot: Power down')
    _stop(gos)


def _stop(gos):
    pids = netns.pids_in([gos.netns])
    if gos.process is not None:
        # "ip netns exec" may not have entered the namespace yet
        pids.append(gos.process.pid)
    netns.kill_all(pids)
    if gos.process is not None:
        try:
            gos.process.wait(timeout=netns.COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            _warn('the init of guest %s did not end' % gos.vm_uuid)
        gos.process = None


def _warn(text):
    sys.stderr.write('xapisim: guest: %s\n' % text)
