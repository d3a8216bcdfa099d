"""Certificates and kubeconfigs for the local control plane (one CA, TLS everywhere, client certificates).

Keys are ECDSA P-256: generated in milliseconds, accepted by every Kubernetes component.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import pathlib

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)

# The API server's names: loopback for us, the in-cluster Service names and its first Service IP for pods.
API_SERVER_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
API_SERVER_IPS = ("127.0.0.1", "10.0.0.1")


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(parts)


class CertificateAuthority:
    """A CA kept as ca.crt/ca.key in a directory; issues server and client certificates next to it."""

    def __init__(self, directory: pathlib.Path):
        self.directory = directory
        self.cert_path = directory / "ca.crt"
        self.key_path = directory / "ca.key"
        if self.cert_path.exists() and self.key_path.exists():
            self._cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
            self._key = serialization.load_pem_private_key(self.key_path.read_bytes(), None)
        else:
            self._create()

    def _create(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._key = _new_key()
        now = datetime.datetime.now(datetime.UTC)
        subject = _name("kserve-ansible-local-ca")
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY * 10)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.key_path.write_bytes(_pem_key(self._key))
        self.key_path.chmod(0o600)
        self.cert_path.write_bytes(_pem_cert(self._cert))

    @property
    def cert_pem(self) -> bytes:
        return _pem_cert(self._cert)

    def issue(
        self,
        name: str,
        common_name: str,
        organization: str | None = None,
        dns_names: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
        server: bool = False,
    ) -> tuple[pathlib.Path, pathlib.Path]:
        """Write <name>.crt/<name>.key (reused when present) and return their paths."""
        cert_path, key_path = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        if cert_path.exists() and key_path.exists():
            return cert_path, key_path
        key = _new_key()
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organization))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        alt_names = [x509.DNSName(d) for d in dns_names] + [
            x509.IPAddress(ipaddress.ip_address(i)) for i in ips
        ]
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        key_path.write_bytes(_pem_key(key))
        key_path.chmod(0o600)
        cert_path.write_bytes(_pem_cert(cert))
        return cert_path, key_path


def service_account_keys(directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """The key pair that signs and verifies ServiceAccount tokens: (sa.key, sa.pub)."""
    private, public = directory / "sa.key", directory / "sa.pub"
    if not (private.exists() and public.exists()):
        key = _new_key()
        private.write_bytes(_pem_key(key))
        private.chmod(0o600)
        public.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return private, public


def write_kubeconfig(
    path: pathlib.Path,
    server: str,
    ca: CertificateAuthority,
    client_cert: pathlib.Path,
    client_key: pathlib.Path,
    user: str,
) -> pathlib.Path:
    """A self-contained kubeconfig (certificates embedded) with one cluster, user and context `local`."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority-data": b64(ca.cert_pem)}}
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(client_cert.read_bytes()),
                    "client-key-data": b64(client_key.read_bytes()),
                },
            }
        ],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
