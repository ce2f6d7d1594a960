"""Write the shipped sample of flow-export traffic: ``src/bss/data/samples/netflow_exports.pcap``.

    python scripts/make_sample_exports.py [--out PATH]

NetFlow v5, NetFlow v9 (template, then data) and IPFIX (template and options, then data)
datagrams from three exporters, as UDP packets to port 2055 in one pcap, the way a
capture of export traffic looks. Built with the project's own encoders; the flows are
synthetic (10.0.0.0/8 -> 192.168.0.0/16, October 2026), deterministic for a given seed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from collectors.netflow.export_synth import synth_template_stream, synth_v5_datagrams

UNIX_SECS = 1_791_331_200  # 2026-10-07T00:00:00Z


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).parents[1] / "src" / "bss" / "data" / "samples"
    parser.add_argument("--out", type=Path, default=default / "netflow_exports.pcap")
    args = parser.parse_args()
    streams = [
        ("192.0.2.1", synth_v5_datagrams(4, 30, seed=1, unix_secs=UNIX_SECS)),
        ("192.0.2.2", synth_template_stream("netflow_v9", 4, 24, seed=2, unix_secs=UNIX_SECS)),
        ("192.0.2.3", synth_template_stream("ipfix", 4, 24, seed=3, unix_secs=UNIX_SECS)),
    ]
    packets = []
    t = float(UNIX_SECS)
    for exporter, datagrams in streams:
        for payload in datagrams:
            pkt = (
                Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                / IP(src=exporter, dst="198.51.100.10")
                / UDP(sport=50000, dport=2055)
                / payload
            )
            pkt.time = t
            t += 0.01
            packets.append(pkt)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    wrpcap(str(args.out), packets)
    print(f"{len(packets)} datagrams -> {args.out}")


if __name__ == "__main__":
    main()
