"""Multicast WS-Discovery, sealed inside two network namespaces this test creates.

``cams`` (simulated ONVIF cameras) and ``nvr`` (our side) are joined by a veth pair on a private
/24, with 224.0.0.0/4 routed over it. Nothing is multicast from the host's own namespace. Needs
root (``ip netns``); skipped with a message otherwise. The namespaces are always deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces (ip netns); "
                                                 "multicast discovery is never tested in the host namespace"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 (ip) is not installed"),
]

REPO = Path(__file__).resolve().parent.parent
SUBNET = "10.213.7"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def namespaces():
    tag = f"{os.getpid() % 100000}"
    cams, nvr = f"crcam{tag}", f"crnvr{tag}"
    veth_c, veth_n = f"vc{tag}", f"vn{tag}"
    try:
        ip("netns", "add", cams)
        ip("netns", "add", nvr)
        # Created inside the namespaces: the pair never exists in the host's namespace.
        ip("-n", cams, "link", "add", veth_c, "type", "veth", "peer", "name", veth_n, "netns", nvr)
        for ns, dev, host in ((cams, veth_c, 1), (nvr, veth_n, 2)):
            ip("-n", ns, "addr", "add", f"{SUBNET}.{host}/24", "dev", dev)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)
        yield {"cams": cams, "nvr": nvr, "veth_c": veth_c, "veth_n": veth_n}
    finally:
        for ns in (cams, nvr):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def in_ns(ns: str, *argv: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, *argv], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def read_line(proc: subprocess.Popen, timeout_s: float = 20) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            return line.strip()
        if proc.poll() is not None:
            break
    raise AssertionError(f"no output; stderr: {proc.stderr.read() if proc.poll() is not None else ''}")


def test_multicast_probe_hello_and_bye_inside_namespaces(namespaces, tmp_path: Path) -> None:
    ns_cams, ns_nvr = namespaces["cams"], namespaces["nvr"]
    listener = in_ns(ns_nvr, "-m", "cameras.onvif.discovery", "--interface", namespaces["veth_n"], "--duration-s", "180")
    procs = [listener]
    try:
        assert json.loads(read_line(listener))["kind"] == "listening"
        sim = in_ns(ns_cams, "-m", "simulator.onvif_standalone", "--cameras", "3", "--host", f"{SUBNET}.1",
                    "--interface", namespaces["veth_c"], "--port", "3702", "--duration-s", "180")
        procs.append(sim)
        assert read_line(sim).startswith("ready 3 3702")

        hellos = [json.loads(read_line(listener)) for _ in range(3)]
        assert {h["kind"] for h in hellos} == {"Hello"}
        assert sorted(h["name"] for h in hellos) == ["NS-Cam-1", "NS-Cam-2", "NS-Cam-3"]

        data = str(tmp_path / "data")
        found = subprocess.run(
            ["ip", "netns", "exec", ns_nvr, sys.executable, "-m", "controlroom.cli", "--data-dir", data,
             "discover", "--interface", namespaces["veth_n"], "--timeout", "1.5", "--json"],
            cwd=REPO, capture_output=True, text=True, timeout=60)
        assert found.returncode == 0, found.stderr
        devices = json.loads(found.stdout)
        assert sorted(d["name"] for d in devices) == ["NS-Cam-1", "NS-Cam-2", "NS-Cam-3"]
        assert all(d["xaddrs"][0].startswith(f"http://{SUBNET}.1:") for d in devices)
        assert all(d["seen_from"].startswith(f"{SUBNET}.1:") for d in devices)

        # Adopt one across the namespaces: real SOAP over the veth pair.
        pw = tmp_path / "pw"
        pw.write_text("admin\n")
        cam1 = next(d for d in devices if d["name"] == "NS-Cam-1")
        adopted = subprocess.run(
            ["ip", "netns", "exec", ns_nvr, sys.executable, "-m", "controlroom.cli", "--data-dir", data,
             "cameras", "adopt", cam1["xaddrs"][0], "--username", "admin", "--password-file", str(pw), "--json"],
            cwd=REPO, capture_output=True, text=True, timeout=60)
        assert adopted.returncode == 0, adopted.stderr
        assert json.loads(adopted.stdout)["camera"]["name"] == "NS-Cam-1"

        sim.send_signal(signal.SIGTERM)
        assert sim.wait(timeout=20) == 0
        byes = [json.loads(read_line(listener)) for _ in range(3)]
        assert {b["kind"] for b in byes} == {"Bye"}
        assert {b["endpoint"] for b in byes} == {h["endpoint"] for h in hellos}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(Exception):
                proc.wait(timeout=10)
            proc.stdout.close()
            proc.stderr.close()
