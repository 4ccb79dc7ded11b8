#!/usr/bin/env python3
"""Write N users with device secrets as an import snapshot.

usage: device_secrets.py N DIR NAME_FORMAT ROLE

NAME_FORMAT is a Python format for the user number (e.g. "dev{:05d}").
Writes DIR/snapshot.json (the users, each a member of ROLE, for
`warden import`) and DIR/creds.txt ("name secret" a line, for warden-bench
--credentials). The hashes are the store's `$warden-hmac$` format:
HMAC-SHA256 of the secret under a random salt.
"""
import base64, hashlib, hmac, json, os, sys

n, d, name_format, role = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
b64 = lambda b: base64.b64encode(b).decode().rstrip("=")
users, members, creds = [], [], []
for i in range(n):
    secret = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    salt = os.urandom(16)
    tag = hmac.new(salt, secret.encode(), hashlib.sha256).digest()
    name = name_format.format(i)
    users.append({"username": name, "password_hash": f"$warden-hmac$v=1${b64(salt)}${b64(tag)}",
                  "enabled": True, "superuser": False})
    members.append({"role": role, "username": name})
    creds.append(f"{name} {secret}")
with open(f"{d}/snapshot.json", "w") as f:
    json.dump({"users": users, "roles": [role], "memberships": members, "rules": []}, f)
with open(f"{d}/creds.txt", "w") as f:
    f.write("\n".join(creds) + "\n")
