#!/usr/bin/env python3
"""Checks an sms-audit evidence bundle (format sms-audit-evidence/1) on its own,
independently of sms-audit: the checkpoint's Ed25519 signature (C2SP signed-note),
then for every entry its body hash, its entry hash and its RFC 6962 inclusion proof
against the checkpoint's root (the checks of RFC 9162 section 2.1.3.2).

Usage: verify_evidence.py BUNDLE.json [--vkey VKEY]
Exit 0 with a summary when everything holds, 1 naming the first failure.
Needs Python 3 and `cryptography` (pip install cryptography) for Ed25519.
"""
import argparse
import base64
import hashlib
import json
import struct
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class Broken(Exception):
    pass


def sha256(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def check_note(note, vkey):
    """Returns the note's text once a signature by vkey verifies."""
    name, key_id, key = vkey.split("+", 2)
    key = base64.b64decode(key)
    if key[0] != 1 or len(key) != 33:
        raise Broken("verifier key: not an Ed25519 key")
    if sha256(name.encode(), b"\n", key)[:4].hex() != key_id:
        raise Broken("verifier key: its id does not match its name and key")
    text, sep, sigs = note.partition("\n\n")
    if not sep:
        raise Broken("checkpoint: not a signed note")
    text += "\n"
    for line in sigs.splitlines():
        if not line.startswith("\u2014 "):
            continue
        signer, sig = line[2:].split(" ")
        sig = base64.b64decode(sig)
        if signer == name and sig[:4].hex() == key_id:
            try:
                Ed25519PublicKey.from_public_bytes(key[1:]).verify(sig[4:], text.encode())
                return text
            except InvalidSignature:
                raise Broken(f"checkpoint: the signature does not verify with {vkey}")
    raise Broken(f"checkpoint: no signature by {name} with key id {key_id}")


def entry_hash(e):
    fields = [str(e["id"]), e["request_id"], e["task_id"], e["received_at"], e["credential_name"],
              e["auth_method"], e["body_sha256"], e["prev_hash"]]
    return sha256(b"".join(struct.pack(">Q", len(f.encode())) + f.encode() for f in fields)).hex()


def root_from_inclusion(index, size, leaf, path):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = sha256(b"\x01", p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = sha256(b"\x01", r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify(bundle, vkey):
    if bundle.get("format") != "sms-audit-evidence/1":
        raise Broken(f"format is {bundle.get('format')!r}")
    lines = check_note(bundle["checkpoint"], vkey or bundle["vkey"]).split("\n")
    origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2])
    purged = 0
    previous = None
    for e in bundle["entries"]:
        at = f"entry {e['id']}: "
        # Once each, in the log's order: a copy or a reordering means an edited bundle.
        if previous is not None and e["id"] <= previous:
            raise Broken(at + f"comes after entry {previous}: entries must be unique and in ascending id order")
        previous = e["id"]
        if e.get("raw_body_base64") is not None:
            raw = base64.b64decode(e["raw_body_base64"], validate=True)
            if hashlib.sha256(raw).hexdigest() != e["body_sha256"]:
                raise Broken(at + "the raw body does not match body_sha256")
        elif e.get("purged_at"):
            purged += 1  # retention purged the body; the entry hash covers body_sha256
        else:
            raise Broken(at + "raw_body_base64 is missing (and purged_at too)")
        if entry_hash(e) != e["entry_hash"]:
            raise Broken(at + "entry_hash does not match the entry's fields")
        leaf = sha256(b"\x00", bytes.fromhex(e["entry_hash"]))
        path = [base64.b64decode(h) for h in e["inclusion_proof"]]
        if any(len(h) != 32 for h in path):
            raise Broken(at + "a proof hash is not 32 bytes")
        if root_from_inclusion(e["id"] - 1, size, leaf, path) != root:
            raise Broken(at + f"the inclusion proof does not lead to the checkpoint's root (tree of {size})")
    bodies = f" ({purged} with their body purged by retention: hashes and proofs checked)" if purged else ""
    return (f"evidence intact: {len(bundle['entries'])} entries{bodies}, each in the checkpoint of {size} uploads signed by {origin}; "
            "this proves each entry is in the log, not that the log holds no other upload of the task "
            "(an entry left out of a bundle goes unnoticed)")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("bundle")
    p.add_argument("--vkey", help="the log's verifier key (default: the bundle's own)")
    a = p.parse_args()
    try:
        with open(a.bundle) as f:
            print(verify(json.load(f), a.vkey))
        return 0
    except (Broken, KeyError, ValueError) as e:
        print(f"evidence BROKEN: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
