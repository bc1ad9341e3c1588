#!/usr/bin/env python3
"""hello_plugin: a hivehub plugin in Python, as a model to copy.

It logs in to the hub, serves the capability `greet` (method `hello`), lets viewers and up
call it, refreshes its token, tells the launcher it is ready, publishes the event
`event/{id}/status/hello/{id}` every second, and stops cleanly on SIGTERM.
Needs only paho-mqtt (1.6 or 2.x); see README.md.
"""
import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

for var in ("HIVEHUB_HOME", "HIVEHUB_CLIENT_ID"):
    if not os.environ.get(var):
        sys.exit(f"{var} is not set: the launcher sets it; to run me by hand, see README.md")
ID = os.environ["HIVEHUB_CLIENT_ID"]  # our login ID, also the plugin's name
CERTS = os.path.join(os.environ["HIVEHUB_HOME"], "certs")
CAPABILITY = "greet"

stop = threading.Event()
stopped_by = []  # the signal that asked us to stop
connected = threading.Event()
pending = {}  # correlation data -> [event, reply] of our own requests in flight


def log(msg):
    print(msg, file=sys.stderr, flush=True)  # the launcher writes it to logs/{id}.log


def code(rc):
    return getattr(rc, "value", rc)  # paho 1.6 and 2.x reason codes, or a plain int


def on_connect(client, userdata, flags, rc, properties=None):
    if code(rc) != 0:
        log(f"login refused: {rc}")
        return
    log("logged in")
    # Small requests and replies: send them at once, not after the peer's delayed ACK (Nagle).
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # A clean session each time: subscribe again after every (re)connect.
    client.subscribe(f"_INBOX/{ID}/+", qos=1)  # replies to our requests
    client.subscribe(f"rpc/{ID}/{CAPABILITY}/+/+", qos=1)  # requests to our capability
    connected.set()


def on_disconnect(client, userdata, *args):  # paho 1.6 and 2.x pass different arguments
    connected.clear()
    if not stop.is_set():
        log("connection lost; paho reconnects")


def publish(client, topic, body, correlation=None, response_topic=None):
    props = Properties(PacketTypes.PUBLISH)
    if correlation is not None:
        props.CorrelationData = correlation
    if response_topic is not None:
        props.ResponseTopic = response_topic
    return client.publish(topic, json.dumps(body), qos=1, properties=props)


def greet(method, payload):
    """Our capability: the result, or raises LookupError / ValueError (also for bad JSON)."""
    if method != "hello":
        raise LookupError(f"capability '{CAPABILITY}' has no method '{method}'")
    body = json.loads(payload or b"{}")  # an empty body counts as {}
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name:
        raise ValueError('expected {"name": "..."}')
    return {"greeting": f"hello {name}"}


def on_message(client, userdata, msg):
    parts = msg.topic.split("/")
    correlation = getattr(msg.properties, "CorrelationData", None)
    slot = pending.get(correlation)
    if parts[0] == "_INBOX" and slot:  # a reply to one of our requests
        if parts[2] == slot[2]:  # only the service we called may answer
            slot[1] = json.loads(msg.payload)
            slot[0].set()
    elif parts[0] == "rpc" and len(parts) == 5:  # rpc/{ID}/{capability}/{method}/{sender}
        method, sender = parts[3], parts[4]
        try:
            reply = {"result": greet(method, msg.payload)}
        except LookupError as e:
            reply = {"error": {"code": "unknownMethod", "message": str(e)}}
        except ValueError as e:
            reply = {"error": {"code": "badRequest", "message": str(e)}}
        # Always answer into the inbox of the verified sender, never a topic it names.
        publish(client, f"_INBOX/{sender}/{ID}", reply, correlation)


def call(client, service, capability, method, body, timeout=5.0):
    """Calls a capability; returns its result or raises RuntimeError."""
    correlation = uuid.uuid4().bytes
    pending[correlation] = slot = [threading.Event(), None, service]
    try:
        publish(client, f"rpc/{service}/{capability}/{method}/{ID}", body,
                correlation, f"_INBOX/{ID}/{service}")
        if not slot[0].wait(timeout):
            raise RuntimeError(f"{service}/{capability}/{method}: no reply in {timeout}s")
    finally:
        del pending[correlation]
    if "error" in slot[1]:
        e = slot[1]["error"]
        raise RuntimeError(f"{service}/{capability}/{method}: {e['code']}: {e['message']}")
    return slot[1]["result"]


def refresh_token(client):
    """Gets a new token; it is the password of the next reconnect. Returns when to refresh next."""
    t = call(client, "auth", "profile", "refresh", {})
    client.username_pw_set(ID, t["token"])  # the token file is read-only: keep it in memory
    expires = t["expires"] / 1000  # unix milliseconds on the wire
    log(f"token refreshed, expires {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(expires))}")
    return time.time() + (expires - time.time()) * 3 / 4  # when a quarter is left


def notify_ready():
    """Tells the launcher we are ready (only asked for with `waitReady: true`)."""
    path = os.environ.get("NOTIFY_SOCKET")
    if path:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"READY=1", "\0" + path[1:] if path.startswith("@") else path)


def main():
    def on_signal(signum, _frame):
        stopped_by.append(signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)  # the launcher's stop
    signal.signal(signal.SIGINT, on_signal)  # Ctrl-C when run by hand
    args = {"client_id": f"{ID}:{uuid.uuid4().hex[:8]}", "protocol": mqtt.MQTTv5}
    if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt 2.x
        args["callback_api_version"] = mqtt.CallbackAPIVersion.VERSION2
    client = mqtt.Client(**args)
    with open(os.path.join(CERTS, f"{ID}.token")) as f:
        client.username_pw_set(ID, f.read().strip())
    client.tls_set(ca_certs=os.path.join(CERTS, "caCert.pem"))
    # Sent by the hub for us if we vanish without a clean DISCONNECT.
    client.will_set(f"event/{ID}/status/lost/{ID}", json.dumps({"reason": "connection lost"}), qos=1)
    client.on_connect, client.on_disconnect, client.on_message = on_connect, on_disconnect, on_message
    url = urlparse(os.environ.get("HIVEHUB_SERVER", "mqtts://127.0.0.1:8883"))
    client.connect(url.hostname, url.port or 8883, clean_start=True)
    client.loop_start()  # a thread of its own sends, receives, and reconnects
    if not connected.wait(10):
        log("could not log in")
        return 1
    call(client, "auth", "authz", "setPermissions",
         {"capability": CAPABILITY, "roles": ["viewer", "operator", "manager", "admin"]})
    refresh_at = refresh_token(client)
    notify_ready()
    log(f"ready: serving {CAPABILITY}")
    count = 0
    while not stop.wait(1.0):
        if not connected.is_set():
            continue  # paho reconnects by itself
        count += 1
        publish(client, f"event/{ID}/status/hello/{ID}", {"count": count, "time": int(time.time() * 1000)})
        if time.time() >= refresh_at:
            try:
                refresh_at = refresh_token(client)
            except RuntimeError as e:
                log(f"token refresh failed, retrying in 5 s: {e}")
                refresh_at = time.time() + 5
    log(f"got {stopped_by[0]}")
    client.disconnect()  # a clean MQTT DISCONNECT
    client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
