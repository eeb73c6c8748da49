"""What the pools' own xapi says of them: name and master.

Nova and Placement know a pool only by its uuid (the placement aggregate
of its hosts' providers).  Given the URL of a pool master (``--xenapi``,
as many as there are pools), ``pools sync`` names each pool's aggregate
after the pool's name_label and ``pools list`` shows its master.  The
password comes from ``$XENAPI_PASSWORD``, never from the command line
(where ``ps`` would show it).
"""

import collections
import os

from nova_xen import session as session_mod

Pool = collections.namedtuple('Pool', 'uuid name master url')

PASSWORD_VARIABLE = 'XENAPI_PASSWORD'


class Error(Exception):
    pass


def describe(urls, username='root', ca_file=None, insecure=False):
    """{pool uuid: Pool} of the pools whose masters ``urls`` name."""
    password = os.environ.get(PASSWORD_VARIABLE)
    if urls and password is None:
        raise Error('--xenapi needs the password of %s in $%s'
                    % (username, PASSWORD_VARIABLE))
    found = {}
    for url in urls:
        try:
            session = session_mod.Session(url, username, password,
                                          concurrent=1, ca_file=ca_file,
                                          insecure=insecure).connect()
        except Exception as exc:
            raise Error('--xenapi %s: %s' % (url, exc))
        try:
            pool = session.call('pool.get_all')[0]
            record = session.call('pool.get_record', pool)
            master = session.call('host.get_record', record['master'])
            found[record['uuid']] = Pool(
                record['uuid'], record['name_label'] or None,
                master['hostname'] or master['name_label'], session.url)
        finally:
            session.close()
    return found
