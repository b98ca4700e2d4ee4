#!/usr/bin/env python3
"""Checks an sms-audit evidence bundle (format sms-audit-evidence/1) on its own,
independently of sms-audit: the checkpoint's Ed25519 signature (C2SP signed-note),
then for every entry its body hash, its entry hash and its RFC 6962 inclusion proof
against the checkpoint's root (the checks of RFC 9162 section 2.1.3.2).

Usage: verify_evidence.py BUNDLE.json [--vkey VKEY]
                          [--witness VKEY ... [--quorum K] | --policy FILE]
With witnesses, the checkpoint's C2SP cosignature/v1 lines (Ed25519) are checked
too, and their quorum: K of the --witness keys (default all), or a C2SP
tlog-policy file's quorum (its log lines stand for --vkey when none is given).
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


def read_vkey(vkey, alg, not_that_kind):
    """A signed-note verifier key of this type byte: (name, key id hex, type byte and key)."""
    name, key_id, key = vkey.split("+", 2)
    key = base64.b64decode(key)
    if key[0] != alg or len(key) != 33:
        raise Broken(not_that_kind)
    if sha256(name.encode(), b"\n", key)[:4].hex() != key_id:
        raise Broken(f"verifier key {vkey}: its id does not match its name and key")
    return name, key_id, key


def check_note(note, vkey):
    """Returns the note's text once a signature by vkey verifies."""
    name, key_id, key = read_vkey(vkey, 1, "verifier key: not an Ed25519 key")
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


def cosigned(note, vkey):
    """Whether the note carries a valid cosignature/v1 of this witness key."""
    name, key_id, key = read_vkey(vkey, 4, f"witness key {vkey}: not an Ed25519 cosignature/v1 key (type 0x04)")
    text, _, sigs = note.partition("\n\n")
    text += "\n"
    for line in sigs.splitlines():
        if not line.startswith("\u2014 "):
            continue
        signer, sig = line[2:].split(" ")
        sig = base64.b64decode(sig)
        if signer != name or sig[:4].hex() != key_id or len(sig) != 4 + 8 + 64:
            continue
        (timestamp,) = struct.unpack(">Q", sig[4:12])
        message = b"cosignature/v1\ntime %d\n" % timestamp + text.encode()
        try:
            Ed25519PublicKey.from_public_bytes(key[1:]).verify(sig[12:], message)
            return True
        except InvalidSignature:
            return False
    return False


def read_policy(text):
    """A C2SP tlog-policy: (log vkeys, witness name -> vkey, name -> rule, quorum)."""
    logs, witnesses, rules, quorum = [], {}, {}, None
    for number, line in enumerate(text.split("\n"), 1):
        words = line.replace("\t", " ").split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "log" and len(words) in (2, 3):
            logs.append(words[1])
        elif words[0] == "witness" and len(words) in (3, 4) and words[1] not in rules and words[1] != "none":
            witnesses[words[1]] = words[2]
            rules[words[1]] = ("witness", words[1])
        elif words[0] == "group" and len(words) >= 4 and words[1] not in rules and words[1] != "none":
            members = words[3:]
            if len(set(members)) != len(members) or any(m not in rules for m in members):
                raise Broken(f"policy line {number}: a member twice or not defined above")
            k = {"all": len(members), "any": 1}.get(words[2])
            if k is None:
                if not words[2].isdigit() or words[2].startswith("0") or not 1 <= int(words[2]) <= len(members):
                    raise Broken(f"policy line {number}: threshold {words[2]}")
                k = int(words[2])
            rules[words[1]] = ("group", k, members)
        elif words[0] == "quorum" and len(words) == 2 and quorum is None and (words[1] == "none" or words[1] in rules):
            quorum = words[1]
        else:
            raise Broken(f"policy line {number}: not understood: {line!r}")
    if quorum is None:
        raise Broken("policy: no quorum line")
    return logs, witnesses, rules, quorum


def witnessed(name, rules, valid):
    if name == "none":
        return True
    rule = rules[name]
    if rule[0] == "witness":
        return rule[1] in valid
    return sum(witnessed(m, rules, valid) for m in rule[2]) >= rule[1]


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


def verify(bundle, vkey, policy=None):
    if bundle.get("format") != "sms-audit-evidence/1":
        raise Broken(f"format is {bundle.get('format')!r}")
    witnessing = ""
    if policy is not None:
        logs, witnesses, rules, quorum = policy
        keys = [vkey] if vkey else (logs or [bundle["vkey"]])
        for i, key in enumerate(keys):
            try:
                check_note(bundle["checkpoint"], key)
                break
            except Broken:
                if i == len(keys) - 1:
                    raise
        valid = {name for name, key in witnesses.items() if cosigned(bundle["checkpoint"], key)}
        if not witnessed(quorum, rules, valid):
            raise Broken("witnesses: the checkpoint's cosignatures do not meet the quorum (valid: %s)"
                         % (", ".join(sorted(valid)) or "none"))
        witnessing = f", cosigned by {len(valid)} witnesses meeting the quorum"
        vkey = keys[i]
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
    return (f"evidence intact: {len(bundle['entries'])} entries{bodies}, each in the checkpoint of {size} uploads signed by {origin}{witnessing}; "
            "this proves each entry is in the log, not that the log holds no other upload of the task "
            "(an entry left out of a bundle goes unnoticed)")


VERDICTS = ["match", "missing-in-sms", "foreign", "differs", "not-checked"]


def verify_reconciliation(export, vkey):
    """An exported reconciliation (sms-audit-reconciliation/1): the summary's
    signature, each SMS answer against its hash, the answers' digest and the
    counts per verdict against what the summary signed."""
    text = check_note(export["summary"], vkey or export["verifier_key"])
    lines = text.splitlines()
    if lines[0] != "sms-audit reconciliation v1":
        raise Broken("summary: not a reconciliation summary")
    fields = dict(line.split(" ", 1) for line in lines[1:])
    if fields["run"] != str(export["run"]):
        raise Broken(f"summary: it is of run {fields['run']}, not {export['run']}")
    digest = hashlib.sha256()
    for task in export["tasks"]:
        if task.get("answer_base64") is not None:
            answer = base64.b64decode(task["answer_base64"])
            if hashlib.sha256(answer).hexdigest() != task["answer_sha256"]:
                raise Broken(f"task {task['task_id']}: SMS's answer does not match its hash")
        digest.update(f"{task['task_id']} {task.get('answer_sha256') or '-'}\n".encode())
    if digest.hexdigest() != fields["answers-sha256"]:
        raise Broken("summary: the answers are not those it signed (answers-sha256)")
    counts = []
    for verdict in VERDICTS:
        n = sum(1 for t in export["tasks"] if t["verdict"] == verdict)
        if fields[verdict] != str(n):
            raise Broken(f"summary: it counts {fields[verdict]} {verdict}, the export holds {n}")
        counts.append(f"{n} {verdict}")
    if fields["tasks"] != str(len(export["tasks"])):
        raise Broken("summary: its task count is not the export's")
    return (f"reconciliation intact: run {export['run']} against {fields['target']}, "
            f"{len(export['tasks'])} tasks: {', '.join(counts)}; signed by {fields['origin']}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("bundle")
    p.add_argument("--vkey", help="the log's verifier key (default: the bundle's own)")
    p.add_argument("--witness", action="append", default=[], help="a witness's cosignature/v1 key (repeatable)")
    p.add_argument("--quorum", type=int, help="how many --witness must have cosigned (default: all)")
    p.add_argument("--policy", help="a C2SP tlog-policy file")
    a = p.parse_args()
    try:
        policy = None
        if a.policy:
            with open(a.policy) as f:
                policy = read_policy(f.read())
        elif a.witness:
            k = a.quorum or len(a.witness)
            names = [f"w{i}" for i in range(len(a.witness))]
            policy = ([], dict(zip(names, a.witness)),
                      {**{n: ("witness", n) for n in names}, "q": ("group", k, names)}, "q")
        with open(a.bundle) as f:
            document = json.load(f)
        if document.get("format") == "sms-audit-reconciliation/1":
            print(verify_reconciliation(document, a.vkey))
        else:
            print(verify(document, a.vkey, policy))
        return 0
    except (Broken, KeyError, ValueError) as e:
        print(f"evidence BROKEN: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
