"""A stand-in for Neutron's agents API, over real HTTP on loopback.

``GET /v2.0/agents`` answers ``{"agents": [...]}`` filtered as Neutron
filters (every query parameter names a field; a repeated one matches any
of its values), from ``agents``, which a test sets.  nova.conf reaches it
with ``[neutron] auth_type = none`` and ``endpoint_override = <url>``:
nova's own Neutron client (keystoneauth, neutronclient) makes the
request.  ``fail_with`` makes every request answer that HTTP status.
"""

import http.server
import json
import threading
import urllib.parse


def ovn_controller(host, alive=True, chassis=None, mappings='',
                   agent_type='OVN Controller agent'):
    """An agent as ML2/OVN lists a chassis (neutron_agent.as_dict)."""
    name = chassis or 'chassis-%s' % host
    return {'id': 'agent-%s' % name, 'agent_type': agent_type,
            'binary': 'ovn-controller', 'host': host, 'alive': alive,
            'admin_state_up': True, 'topic': 'n/a',
            'configurations': {'chassis_name': name,
                               'bridge-mappings': mappings}}


class FakeNeutron(object):

    def __init__(self):
        self.agents = []
        self.fail_with = None
        self.requests = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                fake.requests.append(self.path)
                if fake.fail_with:
                    return self.answer(fake.fail_with, {'NeutronError': {
                        'message': 'the fake Neutron fails', 'type': 'Fake',
                        'detail': ''}})
                url = urllib.parse.urlsplit(self.path)
                if url.path.rstrip('/') != '/v2.0/agents':
                    return self.answer(404, {'NeutronError': {
                        'message': 'no %s here' % url.path, 'type': 'NotFound',
                        'detail': ''}})
                query = urllib.parse.parse_qs(url.query)
                query.pop('fields', None)
                found = [a for a in fake.agents
                         if all(str(a.get(k)) in v for k, v in query.items())]
                self.answer(200, {'agents': found})

            def answer(self, status, doc):
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                      Handler)
        self.url = 'http://127.0.0.1:%d' % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       name='fake-neutron', daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def nova_conf(self):
        """nova.conf's [neutron] section for this Neutron."""
        return {'auth_type': 'none', 'endpoint_override': self.url}
