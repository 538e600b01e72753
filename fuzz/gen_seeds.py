#!/usr/bin/env python3
"""Writes the fuzz crate's test keys and seed corpora (fuzz/keys, fuzz/seeds).

Run once by hand (python3 with `cryptography`); the outputs are committed.
The keys are throwaway test keys for the fuzz targets only. Rerunning makes
new RSA/EC/Ed25519 keys, so the JWKS, the Ed25519 private key the `jwt`
target signs with, and the JWT seeds all change together.
"""
import base64, hashlib, hmac, json, os, pathlib
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

here = pathlib.Path(__file__).resolve().parent
keys, seeds = here / "keys", here / "seeds"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def write(target: str, name: str, data) -> None:
    (seeds / target).mkdir(parents=True, exist_ok=True)
    (seeds / target / name).write_bytes(data if isinstance(data, bytes) else data.encode())


# --- page tokens: the key and digest of the unit test in page_token.rs ----
def query_digest(parts):
    h = hashlib.sha256()
    for p in parts:
        p = p.encode()
        h.update(len(p).to_bytes(8, "big"))
        h.update(p)
    return h.digest()[:16].hex()


digest = query_digest(["ListInstances", "accounts/-", ""])
page_key = bytes([7] * 32)
for i, k in enumerate([["123456789012", "x"], ["123456789012", "4a3b2c1d-0000-4000-8000-123456789abc"], ["", "é\"\\u0000"]]):
    payload = json.dumps({"v": 1, "q": digest, "k": k}, separators=(",", ":")).encode()
    tag = hmac.new(page_key, payload, hashlib.sha256).digest()[:16]
    write("page_token", f"token-{i}", f"{b64(payload)}.{b64(tag)}")
    write("page_token", f"payload-{i}", payload)

# --- filters ------------------------------------------------------------
for i, f in enumerate([
    'region = "us-east-1" AND linked_role_state = ACTIVE',
    "linked_role_state=DELETION_FAILED",
    "legacy = true AND observed_state = VANISHED AND connect_status = CREATION_FAILED",
    "region = 'us-gov-west-1' AND legacy = false AND observed_state = OBSERVED",
    'connect_status = CREATION_IN_PROGRESS AND linked_role_state = "CREATING"',
    "",
]):
    write("filter", f"filter-{i}", f)

# --- resource names -----------------------------------------------------
for i, n in enumerate([
    "accounts/123456789012",
    "accounts/-",
    "accounts/123456789012/instances/4a3b2c1d-0000-4000-8000-123456789abc",
    "accounts/123456789012/instances/4A3B2C1D-0000-4000-8000-123456789ABC/linkedRole",
    "regions/us-east-1",
    "regions/us-gov-west-1",
]):
    write("names", f"name-{i}", n)

# --- JWTs: a JWKS with one key of each algorithm the verifier uses --------
issuer, audience = "slr-governor-dev", "slr-governor"
edkey = ed25519.Ed25519PrivateKey.generate()
eckey = ec.generate_private_key(ec.SECP256R1())
rsakey = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def int_b64(n: int, length: int = 0) -> str:
    return b64(n.to_bytes(length or (n.bit_length() + 7) // 8, "big"))


ecpub = eckey.public_key().public_numbers()
rsapub = rsakey.public_key().public_numbers()
jwks = {"keys": [
    {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "alg": "EdDSA", "use": "sig",
     "x": b64(edkey.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))},
    {"kty": "EC", "crv": "P-256", "kid": "ec", "alg": "ES256", "use": "sig",
     "x": int_b64(ecpub.x, 32), "y": int_b64(ecpub.y, 32)},
    {"kty": "RSA", "kid": "rsa", "alg": "RS256", "use": "sig", "n": int_b64(rsapub.n), "e": int_b64(rsapub.e)},
]}
keys.mkdir(exist_ok=True)
(keys / "jwks.json").write_text(json.dumps(jwks, indent=2) + "\n")
(keys / "ed25519.pk8.der").write_bytes(edkey.private_bytes(
    serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def sign(alg: str, signing_input: bytes) -> bytes:
    if alg == "EdDSA":
        return edkey.sign(signing_input)
    if alg == "ES256":
        r, s = utils.decode_dss_signature(eckey.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return rsakey.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())


exp = 4102444800  # 2100-01-01: the seeds stay valid
claim_sets = [
    {"sub": "alice@example.com", "slrgov_role": "viewer", "slrgov_accounts": ["*"]},
    {"sub": "bob", "slrgov_role": "admin", "slrgov_accounts": ["123456789012", "210987654321"]},
    {"sub": "Local-Operator", "slrgov_role": "operator", "slrgov_accounts": ["*"]},
]
for i, (alg, kid) in enumerate([("EdDSA", "ed"), ("ES256", "ec"), ("EdDSA", None), ("RS256", "rsa")]):
    header = {"alg": alg, "typ": "JWT"} | ({"kid": kid} if kid else {})
    claims = claim_sets[i % len(claim_sets)] | {"iss": issuer, "aud": audience, "exp": exp, "nbf": 0}
    h = json.dumps(header, separators=(",", ":")).encode()
    c = json.dumps(claims, separators=(",", ":")).encode()
    signing_input = f"{b64(h)}.{b64(c)}".encode()
    write("jwt", f"token-{i}", f"{signing_input.decode()}.{b64(sign(alg, signing_input))}")
    # The `jwt` target signs "header\nclaims" inputs itself (EdDSA key).
    if alg == "EdDSA":
        write("jwt", f"claims-{i}", h + b"\n" + c)
print("keys and seeds written under", here)
