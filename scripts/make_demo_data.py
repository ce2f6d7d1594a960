"""Generate the demo's embedded data (deterministic): a packet capture and a CDR file.

    python scripts/make_demo_data.py [--out src/bss/data/demo]

The capture is a week of October 2026 traffic (IPv4 and IPv6, TCP sessions with
handshake and FIN, DNS over UDP, ICMP echo, an 802.1Q-tagged segment) between three
customer address blocks and hosts on the documentation ranges, with a daily rhythm.
The CDR file is a month of voice, SMS and data records for four subscribers in the
generic mapping's layout, with a few deliberately bad rows (a duplicate, a bad time,
a negative duration, a missing number, an unknown subscriber) that the demo shows
being counted and kept aside.
"""

from __future__ import annotations

import argparse
import csv
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet, Raw
from scapy.utils import PcapWriter

SEED = 20261026
START = datetime(2026, 10, 5, tzinfo=UTC)
DAYS = 7
# Customer blocks (must match src/bss/data/demo/bss.toml) and some remote hosts.
CUSTOMERS = {
    "nordwind": ["198.51.100.2", "198.51.100.3", "2001:db8:100::10"],
    "lumen": ["203.0.113.5", "203.0.113.9"],
}
REMOTES_V4 = ["192.0.2.10", "192.0.2.20", "192.0.2.53", "192.0.2.80"]
REMOTES_V6 = ["2001:db8:ffff::1", "2001:db8:ffff::2"]
MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"


def _ip(src: str, dst: str) -> Packet:
    return IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)


def _frame(l3: Packet, vlan: int | None) -> Packet:
    eth = Ether(src=MAC_A, dst=MAC_B)
    return eth / Dot1Q(vlan=vlan) / l3 if vlan else eth / l3


def _tcp_session(
    rng: random.Random, t: float, client: str, server: str, down_bytes: int, vlan: int | None
) -> list[tuple[float, Packet]]:
    sport, out = rng.randint(20000, 60000), []

    def c2s(flags: str, payload: bytes = b"") -> Packet:
        tcp = TCP(sport=sport, dport=443, flags=flags)
        return _frame(_ip(client, server) / tcp / Raw(payload), vlan)

    def s2c(flags: str, payload: bytes = b"") -> Packet:
        tcp = TCP(sport=443, dport=sport, flags=flags)
        return _frame(_ip(server, client) / tcp / Raw(payload), vlan)

    out += [
        (t, c2s("S")),
        (t + 0.02, s2c("SA")),
        (t + 0.04, c2s("A")),
        (t + 0.05, c2s("PA", b"G" * 300)),
    ]
    t += 0.06
    while down_bytes > 0:
        size = min(1200, down_bytes)
        out.append((t, s2c("A", b"x" * size)))
        down_bytes -= size
        t += rng.uniform(0.001, 0.02)
        if rng.random() < 0.25:
            out.append((t, c2s("A")))
    out += [(t + 0.01, c2s("FA")), (t + 0.02, s2c("FA")), (t + 0.03, c2s("A"))]
    return out


def _dns(rng: random.Random, t: float, client: str) -> list[tuple[float, Packet]]:
    server = "192.0.2.53" if ":" not in client else "2001:db8:ffff::2"
    sport = rng.randint(1024, 65000)
    q = _frame(_ip(client, server) / UDP(sport=sport, dport=53) / Raw(b"q" * 40), None)
    a = _frame(_ip(server, client) / UDP(sport=53, dport=sport) / Raw(b"a" * 120), None)
    return [(t, q), (t + 0.015, a)]


def _ping(t: float, client: str) -> list[tuple[float, Packet]]:
    if ":" in client:
        return []
    out = []
    for seq in range(3):
        out.append(
            (t + seq, _frame(IP(src=client, dst="192.0.2.10") / ICMP(type=8, seq=seq), None))
        )
        out.append(
            (t + seq + 0.01, _frame(IP(src="192.0.2.10", dst=client) / ICMP(type=0, seq=seq), None))
        )
    return out


def make_pcap(path: Path) -> int:
    rng = random.Random(SEED)
    packets: list[tuple[float, Packet]] = []
    for day in range(DAYS):
        for hour in range(24):
            # daily rhythm: busy 09-18 local-ish, quiet at night
            busy = 4 if 8 <= hour <= 18 else 1
            base = (START + timedelta(days=day, hours=hour)).timestamp()
            for name, hosts in CUSTOMERS.items():
                for _ in range(busy if name == "nordwind" else max(1, busy // 2)):
                    client = rng.choice(hosts)
                    t = base + rng.uniform(0, 3000)
                    remote = rng.choice(REMOTES_V6 if ":" in client else REMOTES_V4)
                    vlan = 100 if name == "lumen" else None
                    packets += _tcp_session(
                        rng, t, client, remote, rng.randint(1_000, 12_000), vlan
                    )
                    packets += _dns(rng, t - 0.1, client)
                if hour == 12:
                    packets += _ping(base + 1800, hosts[0])
    packets.sort(key=lambda item: item[0])
    # gzip: the reader takes compressed captures, and the repository stays small.
    with PcapWriter(str(path), linktype=1, sync=False, gz=True) as writer:
        for t, pkt in packets:
            pkt.time = t
            writer.write(pkt)
    return len(packets)


MSISDNS = ["4915110000001", "4915110000002", "4917620000003", "33612345678"]
DESTS = ["4930", "4989", "49151", "49176", "33", "1212", "44"]


def make_cdrs(path: Path) -> int:
    rng = random.Random(SEED + 1)
    rows = []
    month = datetime(2026, 10, 1, tzinfo=UTC)
    n = 0
    for msisdn in MSISDNS:
        first_day = 15 if msisdn == "4917620000003" else 1  # ordered mid-month
        for _ in range(90):
            day = rng.randint(first_day, 31)
            t = month + timedelta(days=day - 1, seconds=rng.randint(0, 86399))
            kind = rng.choices(["voice", "sms", "data"], [5, 3, 2])[0]
            n += 1
            dest = rng.choice(DESTS) + "".join(rng.choice("0123456789") for _ in range(7))
            rows.append({
                "id": f"cdr-{n:05d}", "msisdn": msisdn, "service": kind,
                "start": t.isoformat(timespec="seconds"),
                "duration": min(3600, 5 + int(rng.expovariate(1 / 150))) if kind == "voice"
                else 0 if kind == "sms" else rng.randint(60, 3600),
                "bytes_up": rng.randint(10_000, 2_000_000) if kind == "data" else 0,
                "bytes_down": rng.randint(100_000, 20_000_000) if kind == "data" else 0,
                "destination": "+" + dest if kind != "data" else "",
                "origin": msisdn, "cell": f"cell-{rng.randint(1, 40)}",
            })  # fmt: skip
    rows.sort(key=lambda r: str(r["start"]))
    bad = dict(rows[10])
    rows.append(dict(rows[3]))  # an exact duplicate record
    rows.append(bad | {"id": "cdr-bad-time", "start": "2026-10-32T25:00:00+00:00"})
    rows.append(bad | {"id": "cdr-bad-dur", "service": "voice", "duration": -30})
    rows.append(bad | {"id": "cdr-no-msisdn", "msisdn": ""})
    rows.append(bad | {"id": "cdr-unknown-sub", "msisdn": "4915199999999", "service": "voice",
                       "duration": 65, "destination": "+4930123456"})  # fmt: skip
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parents[1] / "src" / "bss" / "data" / "demo"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print("packets:", make_pcap(args.out / "traffic.pcap.gz"))
    print("cdrs:", make_cdrs(args.out / "cdrs.csv"))


if __name__ == "__main__":
    main()
