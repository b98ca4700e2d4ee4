"""An independent C2SP tlog-witness client, written from the specs (signed-note,
tlog-checkpoint, tlog-witness, tlog-cosignature, RFC 6962) with the Python
standard library and `cryptography` for Ed25519, to drive `sms-audit witness
serve` and check its cosignatures without any of sms-audit's code.

Usage:
  witness_client.py keygen ORIGIN KEYFILE      prints the log's verifier key
  witness_client.py run KEYFILE WITNESS_URL WITNESS_VKEY
"""
import base64
import hashlib
import struct
import sys
import time
import urllib.error
import urllib.request

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

DASH = "\u2014"


def key_id(name, alg, public):
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public).digest()[:4]


def raw_public(private):
    from cryptography.hazmat.primitives import serialization

    return private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def vkey(name, private):
    public = raw_public(private)
    return "%s+%s+%s" % (
        name,
        key_id(name, 0x01, public).hex(),
        base64.b64encode(b"\x01" + public).decode(),
    )


# RFC 6962, 2.1: the Merkle Tree Hash and consistency proofs.
def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def largest_power_of_two_below(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves):
    if len(leaves) == 0:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = largest_power_of_two_below(len(leaves))
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def subproof(m, leaves, complete):
    n = len(leaves)
    if m == n:
        return [] if complete else [mth(leaves)]
    k = largest_power_of_two_below(n)
    if m <= k:
        return subproof(m, leaves[:k], complete) + [mth(leaves[k:])]
    return subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]


def consistency_proof(m, leaves):
    return subproof(m, leaves, True) if 0 < m < len(leaves) else []


def checkpoint(origin, private, leaves, extension=""):
    body = "%s\n%d\n%s\n%s" % (
        origin,
        len(leaves),
        base64.b64encode(mth(leaves)).decode(),
        extension,
    )
    signature = private.sign(body.encode())
    blob = key_id(origin, 0x01, raw_public(private)) + signature
    return body + "\n%s %s %s\n" % (DASH, origin, base64.b64encode(blob).decode())


def add_checkpoint(url, old, proof, note):
    body = "old %d\n" % old
    body += "".join(base64.b64encode(h).decode() + "\n" for h in proof)
    body += "\n" + note
    request = urllib.request.Request(url + "/add-checkpoint", data=body.encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers.get("Content-Type", ""), answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def verify_cosignature(note, lines, witness_vkey):
    """tlog-cosignature, Ed25519 v1: returns the timestamp, or raises."""
    name, kid, encoded = witness_vkey.split("+", 2)
    key = base64.b64decode(encoded)
    assert key[0] == 0x04, "a cosignature/v1 verifier key has type 0x04"
    public = key[1:]
    assert key_id(name, 0x04, public).hex() == kid, "the vkey's id"
    text = note.split("\n\n")[0] + "\n"
    found = None
    for line in lines.splitlines():
        assert line.startswith(DASH + " "), line
        _, signer, blob = line.split(" ")
        blob = base64.b64decode(blob)
        if signer != name or blob[:4] != bytes.fromhex(kid):
            continue  # not this witness's key: ignored, as the spec says
        assert len(blob) == 4 + 8 + 64, "key id, timestamp, Ed25519 signature"
        (timestamp,) = struct.unpack(">Q", blob[4:12])
        message = ("cosignature/v1\ntime %d\n" % timestamp).encode() + text.encode()
        Ed25519PublicKey.from_public_bytes(public).verify(blob[12:], message)
        found = timestamp
    assert found is not None, "no cosignature of the witness's key"
    return found


def expect(what, got, status, body=None, content_type=None):
    assert got[0] == status, "%s: status %d, expected %d: %s" % (what, got[0], status, got[2])
    if body is not None:
        assert got[2] == body, "%s: body %r, expected %r" % (what, got[2], body)
    if content_type is not None:
        assert got[1].startswith(content_type), "%s: %s" % (what, got[1])
    print("ok:", what)


def run(keyfile, url, witness_vkey):
    origin, seed = open(keyfile).read().split()
    log = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed))
    leaves = [b"entry %d" % i for i in range(40)]

    first = checkpoint(origin, log, leaves[:7], "time 2026-12-06T00:00:00Z\n")
    got = add_checkpoint(url, 0, [], first)
    expect("a first checkpoint is cosigned", got, 200)
    timestamp = verify_cosignature(first, got[2], witness_vkey)
    assert abs(timestamp - time.time()) < 120, "a timestamp of now"
    print("ok: the cosignature verifies independently, timestamp", timestamp)

    second = checkpoint(origin, log, leaves[:23])
    expect("a stale old size is refused with the witness's size",
           add_checkpoint(url, 0, [], second), 409, "7\n", "text/x.tlog.size")
    forged = consistency_proof(7, leaves[:23])
    forged[-1] = hashlib.sha256(b"forged").digest()
    expect("a proof that does not verify is refused", add_checkpoint(url, 7, forged, second), 422)
    got = add_checkpoint(url, 7, consistency_proof(7, leaves[:23]), second)
    expect("a consistent checkpoint is cosigned", got, 200)
    verify_cosignature(second, got[2], witness_vkey)

    third = checkpoint(origin, log, leaves[:40])
    got = add_checkpoint(url, 23, consistency_proof(23, leaves[:40]), third)
    expect("and the next", got, 200)
    verify_cosignature(third, got[2], witness_vkey)

    stranger = Ed25519PrivateKey.generate()
    expect("an unknown origin is 404",
           add_checkpoint(url, 0, [], checkpoint("other.example/log", stranger, leaves[:3])), 404)
    expect("a checkpoint signed by another key is 403",
           add_checkpoint(url, 40, [], checkpoint(origin, stranger, leaves[:40])), 403)
    expect("old above the size is 400", add_checkpoint(url, 41, [], third), 400)

    origin_hash = hashlib.sha256(origin.encode()).hexdigest()
    with urllib.request.urlopen("%s/%s/checkpoint" % (url, origin_hash), timeout=10) as answer:
        monitored = answer.read().decode()
    assert monitored.startswith("%s\n40\n" % origin), monitored
    signatures = monitored.split("\n\n", 1)[1]
    verify_cosignature(monitored, signatures, witness_vkey)
    assert ("%s %s " % (DASH, origin)) in signatures, "the log's own signature is kept"
    print("ok: the monitoring read serves the latest checkpoint with both signatures")


def main():
    if sys.argv[1] == "keygen":
        origin, keyfile = sys.argv[2], sys.argv[3]
        private = Ed25519PrivateKey.generate()
        from cryptography.hazmat.primitives import serialization

        seed = private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        with open(keyfile, "w") as f:
            f.write("%s %s\n" % (origin, seed.hex()))
        print(vkey(origin, private))
    else:
        run(sys.argv[2], sys.argv[3], sys.argv[4])


if __name__ == "__main__":
    main()
