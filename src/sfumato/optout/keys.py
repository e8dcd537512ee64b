"""Local signing credentials for C2PA Content Credentials.

C2PA (Coalition for Content Provenance and Authenticity, *Technical Specification* 2.x, §14.5 "X.509
certificates") rejects a self-signed end-entity certificate: the signer must be a leaf issued by a CA,
carry the ``digitalSignature`` key usage and an allowed extended key usage (we use ``emailProtection``),
and must not be a CA itself. :func:`init_keys` therefore makes a tiny two-level chain:

* ``root-ca.pem`` / ``root-ca.key`` -- a self-signed root (``CA:true``, ``keyCertSign``, ``cRLSign``);
* ``signer.pem`` / ``signer.key`` -- a leaf signed by that root (``digitalSignature``, EKU
  ``emailProtection``), P-256 keys, signatures ES256 (ECDSA with SHA-256).

Such a chain proves that files were signed by *whoever holds this folder*; it is not trusted by anyone
else until they choose to trust ``root-ca.pem`` (``sfumato verify --trust-anchor root-ca.pem``).
Private keys are written with permissions 0600 and the folder with 0700.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from pathlib import Path

from sfumato.io.atomic import write_bytes_atomic

ROOT_CERT = "root-ca.pem"
ROOT_KEY = "root-ca.key"
LEAF_CERT = "signer.pem"
LEAF_KEY = "signer.key"
_FILES = (ROOT_CERT, ROOT_KEY, LEAF_CERT, LEAF_KEY)


@dataclass(frozen=True)
class KeyPaths:
    """Where one local signing chain lives."""

    dir: Path
    root_cert: Path
    root_key: Path
    leaf_cert: Path
    leaf_key: Path

    @classmethod
    def in_dir(cls, directory: Path) -> KeyPaths:
        d = Path(directory).expanduser()
        return cls(dir=d, root_cert=d / ROOT_CERT, root_key=d / ROOT_KEY, leaf_cert=d / LEAF_CERT,
                   leaf_key=d / LEAF_KEY)


def default_keys_dir() -> Path:
    """``$SFUMATO_KEYS_DIR``, else ``$XDG_CONFIG_HOME/sfumato/keys``, else ``~/.config/sfumato/keys``."""
    env = os.environ.get("SFUMATO_KEYS_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "sfumato" / "keys"


def init_keys(
    directory: Path | None = None,
    *,
    common_name: str = "Sfumato local signer",
    organization: str | None = None,
    email: str | None = None,
    days: int = 3650,
    overwrite: bool = False,
) -> KeyPaths:
    """Create a root CA and a C2PA-compatible leaf certificate (ES256) in ``directory``.

    Refuses to replace an existing chain unless ``overwrite=True`` (files signed with the old key then
    stay valid but are no longer linked to the new root).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if days < 1:
        raise ValueError(f"days={days} must be >= 1: it is how long the certificates stay valid")
    if not common_name.strip():
        raise ValueError("common_name is empty: give a name people will see as the signer, e.g. your artist name")
    paths = KeyPaths.in_dir(directory if directory is not None else default_keys_dir())
    existing = [p.name for p in (paths.root_cert, paths.root_key, paths.leaf_cert, paths.leaf_key) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{paths.dir} already holds signing keys ({', '.join(existing)}); keep them, pick another "
            "--dir, or pass overwrite=True / --overwrite to replace them"
        )
    paths.dir.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.dir, 0o700)

    now = _dt.datetime.now(_dt.UTC) - _dt.timedelta(minutes=5)
    not_after = now + _dt.timedelta(days=days)

    def name(cn: str) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if organization:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        return x509.Name(attrs)

    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = name(f"{common_name} root CA")
    root_ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
    root_cert = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(root_ski, critical=False)
        .sign(root_key, hashes.SHA256())
    )

    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name(common_name))
        .issuer_name(root_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski), critical=False)
    )
    if email:
        leaf = leaf.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
    leaf_cert = leaf.sign(root_key, hashes.SHA256())

    def key_pem(k: ec.EllipticCurvePrivateKey) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())

    write_bytes_atomic(paths.root_key, key_pem(root_key), mode=0o600)
    write_bytes_atomic(paths.leaf_key, key_pem(leaf_key), mode=0o600)
    write_bytes_atomic(paths.root_cert, root_cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    write_bytes_atomic(paths.leaf_cert, leaf_cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return paths


def load_keys(directory: Path | None = None) -> KeyPaths:
    """Return the chain in ``directory`` (default :func:`default_keys_dir`), checking it is complete."""
    paths = KeyPaths.in_dir(directory if directory is not None else default_keys_dir())
    missing = [p.name for p in (paths.root_cert, paths.leaf_cert, paths.leaf_key) if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"no complete signing chain in {paths.dir} (missing {', '.join(missing)}); "
            f"create one with `sfumato keys init --dir {paths.dir}`"
        )
    mode = paths.leaf_key.stat().st_mode & 0o077
    if mode:
        raise PermissionError(
            f"{paths.leaf_key} is readable by other users (mode {oct(paths.leaf_key.stat().st_mode & 0o777)}); "
            f"run `chmod 600 {paths.leaf_key}`"
        )
    return paths
