#!/usr/bin/env python3
"""A minimal auth service for Warden's `auth.http` (standard library only).

    python3 examples/auth_service.py --port 8080 --token s3cret

and in warden.yaml:

    auth:
      http: { url: "http://127.0.0.1:8080", token: s3cret }

POST /authenticate answers allow or deny for a login; POST /rules answers
the principal's rules in the store's rule schema (docs/extending.md). With
--authorize-each the service insists on deciding every topic itself: its
logins say "authorize_each": true, /rules answers no rules, and POST
/authorize answers allow or deny per action and topic (`decide` below). The
users and rules below are an example: replace `USERS` and `rules_for` with
calls to your account API or device registry. Put it behind TLS (or use
--tls-cert/--tls-key) when it is not on the broker's host.
"""

import argparse
import hmac
import json
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# username -> (password, roles)
USERS = {
    "alice": ("pw", ["staff"]),
    "sensor-17": ("s3", ["sensors"]),
}


def rules_for(username, roles, attributes):
    """The principal's rules: a subject-less rule is the user's own."""
    rules = [
        {"effect": "allow", "actions": ["publish"], "pattern": "devices/${username}/#"},
        {"effect": "allow", "actions": ["subscribe", "receive"], "pattern": "cmd/${username}/#"},
    ]
    if "staff" in roles:
        rules.append({"effect": "allow", "actions": ["subscribe", "receive"], "pattern": "devices/#"})
    return rules


def decide(username, roles, action, topic):
    """authorize_each: may `username` do `action` (publish, subscribe or
    receive) on `topic` (for subscribe: the filter)? The same grants as
    rules_for, decided here instead of by the broker."""
    parts = topic.split("/")
    if action == "publish":
        return parts[:2] == ["devices", username] and "+" not in parts and "#" not in parts
    if parts[:2] == ["cmd", username]:
        return True
    return "staff" in roles and parts[0] == "devices"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: Warden pools connections
    token = None
    authorize_each = False

    def _reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        try:
            req = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self._reply(400, {"error": "not JSON"})
        if self.token is not None:
            given = self.headers.get("Authorization", "")
            if not hmac.compare_digest(given, "Bearer " + self.token):
                return self._reply(401, {"error": "bad token"})
        if self.path == "/authenticate":
            user = USERS.get(req.get("username") or "")
            password = req.get("password") or ""
            if user and hmac.compare_digest(user[0], password):
                return self._reply(200, {
                    "result": "allow",
                    "username": req["username"],
                    "roles": user[1],
                    "attributes": {"source": "example"},
                    "ttl_seconds": 60,
                    "authorize_each": self.authorize_each,
                })
            return self._reply(200, {"result": "deny", "reason": "bad username or password"})
        if self.path == "/rules":
            if self.authorize_each:
                return self._reply(200, {"rules": [], "ttl_seconds": 30})
            rules = rules_for(req["username"], req.get("roles", []), req.get("attributes", {}))
            return self._reply(200, {"rules": rules, "ttl_seconds": 30})
        if self.path == "/authorize":
            allowed = decide(req.get("username", ""), req.get("roles", []),
                             req.get("action", ""), req.get("topic", ""))
            return self._reply(200, {"result": "allow" if allowed else "deny", "ttl_seconds": 30})
        return self._reply(404, {"error": "no such path"})

    def log_message(self, fmt, *args):  # quiet: Warden logs the outcome
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--token", help="bearer token Warden must send")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--client-ca", help="require Warden's client certificate from this CA")
    parser.add_argument("--authorize-each", action="store_true",
                        help="decide every topic here (POST /authorize) instead of handing out rules")
    args = parser.parse_args()
    Handler.token = args.token
    Handler.authorize_each = args.authorize_each
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        if args.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(args.client_ca)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(f"auth service on {args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
