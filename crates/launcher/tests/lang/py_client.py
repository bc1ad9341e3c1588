#!/usr/bin/env python3
"""A hub client in Python (paho-mqtt 1.6 or 2.x) for crates/launcher/tests/examples.rs.

    py_client.py --url URL --ca CA_PEM --id ID [--password P | --token-file F] COMMAND ...

Prints one JSON line with what it saw and leaves judging to the test. Commands:

    greet SERVICE   calls SERVICE's greet/hello with a good and a bad body, and greet/bye
    rtt N           N sequential launcher/view/list round trips, Nagle left on
    unknown         calls a capability that nobody serves
    assertion KEY   logs in with a key assertion signed by KEY (PEM), refreshes, logs in again
"""
import argparse
import json
import socket
import statistics
import sys
import threading
import time
import uuid
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


class Refused(Exception):
    pass


def code(rc):
    return getattr(rc, "value", rc)


class Conn:
    """One MQTT 5 login over TLS, with request/reply."""

    def __init__(self, url, ca, login, password, timeout=10.0):
        self.id = login
        u = urlparse(url)
        args = {"client_id": f"{login}:{uuid.uuid4().hex[:8]}", "protocol": mqtt.MQTTv5}
        if hasattr(mqtt, "CallbackAPIVersion"):
            args["callback_api_version"] = mqtt.CallbackAPIVersion.VERSION2
        self.c = mqtt.Client(**args)
        self.c.username_pw_set(login, password)
        self.c.tls_set(ca_certs=ca)
        self.c.reconnect_delay_set(60, 60)  # a refused login is reported, not retried
        self.pending = {}
        self.answered = threading.Event()
        self.result = None
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = self._on_message
        self.c.connect(u.hostname, u.port, clean_start=True)
        self.c.loop_start()
        if not self.answered.wait(timeout):
            self.close()
            raise Refused("no CONNACK")
        if self.result != 0:
            self.close()
            raise Refused(str(self.result))
        self.answered.clear()
        self.c.subscribe(f"_INBOX/{login}/+", qos=1)
        if not self.answered.wait(timeout) or self.result:
            self.close()
            raise Refused(f"inbox subscription failed: {self.result}")

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        self.result = 0 if code(rc) == 0 else rc
        self.answered.set()

    def _on_disconnect(self, client, userdata, *args):
        if not self.answered.is_set():
            self.result = f"disconnected: {args}"
            self.answered.set()

    def _on_subscribe(self, client, userdata, mid, granted, properties=None):
        self.result = [str(g) for g in granted if code(g) >= 0x80]
        self.answered.set()

    def _on_message(self, client, userdata, msg):
        slot = self.pending.get(getattr(msg.properties, "CorrelationData", None))
        if slot and msg.topic == f"_INBOX/{self.id}/{slot[2]}":
            slot[1] = json.loads(msg.payload)
            slot[0].set()

    def nodelay(self, on):
        s = self.c.socket()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if on else 0)
        return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

    def call(self, service, capability, method, body, timeout=5.0):
        """The reply as sent ({"result": ...} or {"error": ...}), or {"timeout": seconds}."""
        corr = uuid.uuid4().bytes
        self.pending[corr] = slot = [threading.Event(), None, service]
        props = Properties(PacketTypes.PUBLISH)
        props.CorrelationData = corr
        props.ResponseTopic = f"_INBOX/{self.id}/{service}"
        payload = body if isinstance(body, (bytes, str)) else json.dumps(body)
        try:
            self.c.publish(f"rpc/{service}/{capability}/{method}/{self.id}", payload, qos=1,
                           properties=props)
            if not slot[0].wait(timeout):
                return {"timeout": timeout}
            return slot[1]
        finally:
            del self.pending[corr]

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def login(a, password=None):
    if password is None:
        if a.password is not None:
            password = a.password
        else:
            with open(a.token_file) as f:
                password = f.read().strip()
    return Conn(a.url, a.ca, a.id, password)


def cmd_greet(a):
    c = login(a)
    out = {
        "hello": c.call(a.service, "greet", "hello", {"name": "python"}),
        "bad": c.call(a.service, "greet", "hello", "[1, 2]"),
        "unknown": c.call(a.service, "greet", "bye", {}),
    }
    c.close()
    return out


def cmd_rtt(a):
    c = login(a)
    nodelay = c.nodelay(False)
    times, errors = [], []
    for _ in range(a.n):
        t0 = time.perf_counter()
        r = c.call("launcher", "view", "list", {})
        times.append((time.perf_counter() - t0) * 1000)
        if "result" not in r:
            errors.append(r)
    c.close()
    times.sort()
    return {
        "nodelay": nodelay,
        "n": len(times),
        "median_ms": statistics.median(times),
        "p90_ms": times[int(len(times) * 0.9)],
        "max_ms": times[-1],
        "errors": errors[:3],
        "error_count": len(errors),
    }


def cmd_unknown(a):
    c = login(a)
    t0 = time.perf_counter()
    r = c.call("nobody", "nothing", "ping", {}, timeout=3.0)
    elapsed = (time.perf_counter() - t0) * 1000
    c.close()
    return {"reply": r, "elapsed_ms": elapsed}


def try_login(a, password):
    """Logs in and asks who we are: {"whoami": profile} or {"refused": reason}."""
    try:
        c = login(a, password)
    except Refused as e:
        return {"refused": str(e)}
    r = c.call("auth", "profile", "whoami", {})
    c.close()
    return {"whoami": r.get("result", r)}


def cmd_assertion(a):
    import jwt  # PyJWT, with cryptography for ES256
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    with open(a.key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    now = int(time.time())
    claims = {"sub": a.id, "iss": "client:" + a.id, "iat": now, "exp": now + 120}
    assertion = jwt.encode(claims, key, algorithm="ES256")
    stranger = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    out = {
        "header": jwt.get_unverified_header(assertion),
        "with_token_file": try_login(a, None),
        "with_foreign_key": try_login(a, stranger),
        "now": now,
    }
    try:
        c = login(a, assertion)
    except Refused as e:
        out["with_assertion"] = {"refused": str(e)}
        return out
    out["with_assertion"] = {"whoami": c.call("auth", "profile", "whoami", {}).get("result")}
    refreshed = c.call("auth", "profile", "refresh", {})
    c.close()
    out["refresh"] = refreshed
    token = refreshed.get("result", {}).get("token")
    if token:
        out["token_claims"] = jwt.decode(token, options={"verify_signature": False})
        out["with_new_token"] = try_login(a, token)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--password")
    p.add_argument("--token-file")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("greet").add_argument("service")
    sub.add_parser("rtt").add_argument("n", type=int)
    sub.add_parser("unknown")
    sub.add_parser("assertion").add_argument("key")
    a = p.parse_args()
    out = {"greet": cmd_greet, "rtt": cmd_rtt, "unknown": cmd_unknown,
           "assertion": cmd_assertion}[a.cmd](a)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
