"""TLS for simulated hosts: a throw-away CA and one certificate per world.

Real xapi serves HTTPS with a certificate per host; with ``--tls`` the
simulator does the same, signing one server certificate (valid for every
simulated host address) with a CA made for the run, whose certificate it
names in its description as ``ca_file``.
"""

import datetime
import ipaddress
import os
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificates(directory, addresses):
    """(ca_file, cert_file, key_file) for a server at ``addresses``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    later = now + datetime.timedelta(days=30)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder()
          .subject_name(_name('xapisim CA')).issuer_name(_name('xapisim CA'))
          .public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(later)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0),
                         critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    alt = [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    alt.append(x509.DNSName('localhost'))
    cert = (x509.CertificateBuilder()
            .subject_name(_name('xapisim')).issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(later)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .sign(ca_key, hashes.SHA256()))
    names = ('ca.pem', 'server.pem', 'server.key')
    paths = [os.path.join(directory, n) for n in names]
    with open(paths[0], 'wb') as fh:
        fh.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths[1], 'wb') as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths[2], 'wb') as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    os.chmod(paths[2], 0o600)
    return paths


def server_context(cert_file, key_file):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    return ctx
