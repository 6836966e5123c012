#!/usr/bin/env python3
"""Runs a real Thunderbird's own account-setup code against a running Hameau.

Driven by tests/it/autoconfig.rs. Thunderbird (Debian's ESR) starts headless with a fresh
profile that trusts the test's CA (certutil, the profile's cert9.db) and sends every
HTTP(S) request through a CONNECT proxy of this script's, which takes
`autoconfig.DOMAIN:443` and `autodiscover.DOMAIN:443` to Hameau's HTTPS port on loopback
and refuses every other host: Thunderbird then builds its URLs from the domain as it does
for a user (port 443), and nothing leaves the machine. Its DNS module (SRV and MX
lookups) is replaced by empty answers for the same reason.

In chrome context (marionette), for each address it calls
`FetchConfig.fromISP(domain, address)` (the autoconfig XML) and
`fetchConfigFromExchange(domain, address, …)` (Outlook's POX Autodiscover), fills the
variables as the account hub does (`AccountConfig.replaceVariables`), and prints what came
out as JSON on stdout: one object per address and method, with the incoming and outgoing
servers and their alternatives. The Rust test checks them.

Usage: thunderbird_autoconfig.py --https-port PORT --ca CA.pem --address A [--address B …]
       thunderbird_autoconfig.py plist FILE   (prints a .mobileconfig as JSON, via plistlib)
"""

import argparse
import json
import os
import plistlib
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from marionette_driver.marionette import Marionette

# The account-setup code, run in Thunderbird's chrome context. The last argument is the
# callback marionette's execute_async_script provides.
SETUP_SCRIPT = r"""
const [address, method, resolve] = arguments;
const { DNS } = ChromeUtils.importESModule("resource:///modules/DNS.sys.mjs");
// No DNS query leaves the machine: the proxy resolves the test's names.
DNS.srv = async () => [];
DNS.mx = async () => [];
const { FetchConfig } = ChromeUtils.importESModule(
  "resource:///modules/accountcreation/FetchConfig.sys.mjs");
const { fetchConfigFromExchange } = ChromeUtils.importESModule(
  "resource:///modules/accountcreation/ExchangeAutoDiscover.sys.mjs");
const { AccountConfig } = ChromeUtils.importESModule(
  "resource:///modules/accountcreation/AccountConfig.sys.mjs");
const socketNames = {
  [Ci.nsMsgSocketType.plain]: "plain",
  [Ci.nsMsgSocketType.alwaysSTARTTLS]: "STARTTLS",
  [Ci.nsMsgSocketType.SSL]: "SSL",
};
const authNames = {
  [Ci.nsMsgAuthMethod.passwordCleartext]: "password-cleartext",
  [Ci.nsMsgAuthMethod.passwordEncrypted]: "password-encrypted",
};
const server = s => ({
  type: s.type, hostname: s.hostname, port: s.port,
  socketType: socketNames[s.socketType] ?? String(s.socketType),
  auth: authNames[s.auth] ?? String(s.auth), username: s.username,
});
(async () => {
  const domain = address.split("@")[1];
  const signal = AbortSignal.timeout(30000);
  let config;
  if (method == "autoconfig") {
    config = await FetchConfig.fromISP(domain, address, signal);
  } else {
    config = await fetchConfigFromExchange(domain, address, signal, null, "not-the-password",
      async () => { throw new Error("no redirect to another host expected"); });
  }
  AccountConfig.replaceVariables(config, "Agent", address, "not-the-password");
  return {
    address, method, source: config.source, subSource: config.subSource,
    complete: config.isComplete(),
    incoming: server(config.incoming),
    incomingAlternatives: config.incomingAlternatives.map(server),
    outgoing: server(config.outgoing),
    outgoingAlternatives: config.outgoingAlternatives.map(server),
  };
})().then(resolve, error => resolve({ address, method, error: String(error) }));
"""


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ConnectProxy:
    """An HTTP proxy that only CONNECTs the test's domains and their `autoconfig.` and
    `autodiscover.` names, port 443, to Hameau; it answers 403 to anything else."""

    def __init__(self, domains, https_port):
        prefixes = ("", "autoconfig.", "autodiscover.")
        self.allowed = {f"{prefix}{domain}:443" for domain in domains for prefix in prefixes}
        self.https_port = https_port
        self.seen = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            client, _ = self.listener.accept()
            threading.Thread(target=self.serve, args=(client,), daemon=True).start()

    def serve(self, client):
        with client:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 8192:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split(" ")
            self.seen.append(request_line)
            if len(parts) < 2 or parts[0] != "CONNECT" or parts[1].lower() not in self.allowed:
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            upstream = socket.create_connection(("127.0.0.1", self.https_port))
            with upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                pipe(client, upstream)


def pipe(a, b):
    sockets = [a, b]
    while True:
        readable, _, _ = select.select(sockets, [], [], 60)
        if not readable:
            return
        for source in readable:
            data = source.recv(65536)
            if not data:
                return
            (b if source is a else a).sendall(data)


def make_profile(profile, ca, marionette_port, proxy_port):
    subprocess.run(["certutil", "-N", "-d", f"sql:{profile}", "--empty-password"], check=True)
    subprocess.run(["certutil", "-A", "-n", "hameau-test-ca", "-t", "C,,", "-i", ca, "-d", f"sql:{profile}"], check=True)
    prefs = {
        "marionette.port": marionette_port,
        # Every request goes through the proxy, which lets only the test's hosts through.
        "network.proxy.type": 1,
        "network.proxy.http": "127.0.0.1",
        "network.proxy.http_port": proxy_port,
        "network.proxy.ssl": "127.0.0.1",
        "network.proxy.ssl_port": proxy_port,
        "network.proxy.no_proxies_on": "",
        "network.proxy.allow_hijacking_localhost": True,
        "network.dns.disablePrefetch": True,
        "network.captive-portal-service.enabled": False,
        "network.connectivity-service.enabled": False,
        # No ISP database at Mozilla, no updates, no telemetry, no first-run pages.
        "mailnews.auto_config_url": "",
        "mailnews.auto_config.addons_url": "",
        "app.update.disabledForTesting": True,
        "datareporting.policy.dataSubmissionEnabled": False,
        "toolkit.telemetry.enabled": False,
        "mail.shell.checkDefaultClient": False,
        "mail.provider.enabled": False,
        "mailnews.start_page.enabled": False,
        "browser.safebrowsing.update.enabled": False,
    }
    with open(os.path.join(profile, "user.js"), "w") as user_js:
        for name, value in prefs.items():
            user_js.write(f"user_pref({json.dumps(name)}, {json.dumps(value)});\n")


def run_thunderbird(args):
    domains = sorted({address.split("@")[1] for address in args.address})
    proxy = ConnectProxy(domains, args.https_port)
    profile = tempfile.mkdtemp(prefix="hameau-tb-")
    marionette_port = free_port()
    make_profile(profile, args.ca, marionette_port, proxy.port)
    log = open(os.path.join(profile, "thunderbird.log"), "w")
    env = dict(os.environ, MOZ_HEADLESS="1", MOZ_CRASHREPORTER_DISABLE="1")
    thunderbird = subprocess.Popen(
        [args.thunderbird, "--headless", "--marionette", "-remote-allow-system-access", "--no-remote", "--profile", profile],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    results = []
    try:
        client = Marionette(host="127.0.0.1", port=marionette_port, socket_timeout=120)
        deadline = time.time() + 120
        while True:
            try:
                client.start_session()
                break
            except Exception:
                if time.time() > deadline or thunderbird.poll() is not None:
                    raise
                time.sleep(1)
        client.set_context(client.CONTEXT_CHROME)
        client.timeout.script = 60
        for address in args.address:
            for method in ("autoconfig", "exchange"):
                results.append(client.execute_async_script(SETUP_SCRIPT, script_args=[address, method]))
        client.delete_session()
    finally:
        thunderbird.terminate()
        try:
            thunderbird.wait(30)
        except subprocess.TimeoutExpired:
            thunderbird.kill()
            thunderbird.wait()
        log.close()
        if any("error" in result for result in results) or not results:
            with open(os.path.join(profile, "thunderbird.log")) as log_text:
                sys.stderr.write(log_text.read()[-20000:])
        shutil.rmtree(profile, ignore_errors=True)
    print(json.dumps({"results": results, "proxied": proxy.seen}, indent=1))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "plist":
        with open(sys.argv[2], "rb") as profile:
            print(json.dumps(plistlib.load(profile)))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--https-port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--address", action="append", required=True)
    parser.add_argument("--thunderbird", default="thunderbird")
    run_thunderbird(parser.parse_args())


if __name__ == "__main__":
    main()
