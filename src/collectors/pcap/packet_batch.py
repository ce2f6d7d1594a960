"""Decoded packet columns (:class:`PacketBatch`) and their Arrow form (``PACKET_SCHEMA``).

The capture readers fill a batch in place (numpy columns whose rows are fields, see
:mod:`collectors.pcap.packet_kernel`); :meth:`PacketBatch.to_arrow` and
:meth:`PacketBatch.from_arrow` convert to and from the Arrow table that
:func:`collectors.pcap.reader.read_packets` returns, so a table read in a notebook
meters like the reader's own batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from collectors.errors import CollectorError
from collectors.pcap.packet_kernel import (
    N_U8,
    N_U16,
    N_U32,
    PACKET_SCHEMA,
    STATUS_NON_IP,
    STATUS_OK,
    U8_FRAGMENT,
    U8_ICMP_CODE,
    U8_ICMP_TYPE,
    U8_IP_VERSION,
    U8_L4_TRUNCATED,
    U8_PROTOCOL,
    U8_STATUS,
    U8_TOS,
    U16_DST_PORT,
    U16_SRC_PORT,
    U16_TCP_FLAGS,
    U16_VLAN,
    U32_CAP_LEN,
    U32_IP_LEN,
    U32_WIRE_LEN,
)

__all__ = ["PacketBatch"]

# Arrow column -> (block, row) of the numpy columns; the rest (time, addresses) apart.
_U32_COLUMNS = {"wire_len": U32_WIRE_LEN, "cap_len": U32_CAP_LEN, "ip_len": U32_IP_LEN}
_U16_COLUMNS = {
    "src_port": U16_SRC_PORT,
    "dst_port": U16_DST_PORT,
    "tcp_flags": U16_TCP_FLAGS,
    "vlan": U16_VLAN,
}
_U8_COLUMNS = {
    "ip_version": U8_IP_VERSION,
    "protocol": U8_PROTOCOL,
    "tos": U8_TOS,
    "icmp_type": U8_ICMP_TYPE,
    "icmp_code": U8_ICMP_CODE,
    "fragment": U8_FRAGMENT,
    "l4_truncated": U8_L4_TRUNCATED,
}


@dataclass
class PacketBatch:
    """Decoded columns of up to ``batch_size`` packets (numpy, ready for Arrow).

    ``rejected`` maps a row index to the raw captured bytes of a packet whose
    ``status`` is a reject reason (see ``packet_kernel.REJECT_REASONS``);
    ``udp_payloads`` maps a row to its UDP payload when the reader was asked for them.
    """

    time_us: np.ndarray
    offset: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    u32c: np.ndarray
    u16c: np.ndarray
    u8c: np.ndarray
    rejected: dict[int, bytes] = field(default_factory=dict)
    udp_payloads: dict[int, bytes] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.time_us.shape[0])

    @property
    def status(self) -> np.ndarray:
        status: np.ndarray = self.u8c[U8_STATUS]
        return status

    @property
    def ip_mask(self) -> np.ndarray:
        """Rows that are well-formed IP packets (what metering counts)."""
        mask: np.ndarray = self.u8c[U8_STATUS] == 0
        return mask

    def non_ip_count(self) -> int:
        return int(np.count_nonzero(self.u8c[U8_STATUS] == STATUS_NON_IP))

    def to_arrow(self, source_file: str) -> pa.Table:
        """The batch in :data:`collectors.pcap.packet_kernel.PACKET_SCHEMA` (all rows)."""
        n = len(self)

        def addr(a: np.ndarray) -> pa.Array:
            return pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(16), n, [None, pa.py_buffer(np.ascontiguousarray(a))]
            )

        cols = [
            pa.array(self.time_us, pa.int64()).cast(PACKET_SCHEMA.field("time").type),
            pa.repeat(pa.scalar(source_file, pa.string()), n),
            pa.array(self.offset),
            pa.array(self.u32c[U32_WIRE_LEN]),
            pa.array(self.u32c[U32_CAP_LEN]),
            pa.array(self.u16c[U16_VLAN]),
            pa.array(self.u8c[U8_IP_VERSION]),
            addr(self.src),
            addr(self.dst),
            pa.array(self.u8c[U8_PROTOCOL]),
            pa.array(self.u8c[U8_TOS]),
            pa.array(self.u32c[U32_IP_LEN]),
            pa.array(self.u16c[U16_SRC_PORT]),
            pa.array(self.u16c[U16_DST_PORT]),
            pa.array(self.u16c[U16_TCP_FLAGS]),
            pa.array(self.u8c[U8_ICMP_TYPE]),
            pa.array(self.u8c[U8_ICMP_CODE]),
            pa.array(self.u8c[U8_FRAGMENT]),
            pa.array(self.u8c[U8_L4_TRUNCATED]),
        ]
        return pa.Table.from_arrays(cols, schema=PACKET_SCHEMA)

    @classmethod
    def from_arrow(cls, packets: pa.Table | pa.RecordBatch) -> PacketBatch:
        """A batch from a ``PACKET_SCHEMA`` table, as :meth:`to_arrow` or ``read_packets`` made.

        The table has no status column: rows with ``ip_version`` 0 come back as not IP
        (rejected frames included), which is all metering needs to skip them.
        """
        table = pa.Table.from_batches([packets]) if isinstance(packets, pa.RecordBatch) else packets
        missing = [f.name for f in PACKET_SCHEMA if f.name not in table.column_names]
        if missing:
            raise CollectorError(
                f"packet table: missing column(s) {', '.join(missing)} (expected PACKET_SCHEMA, "
                "as read_packets returns)"
            )
        n = table.num_rows

        def col(name: str, dtype: type[np.generic]) -> np.ndarray:
            try:
                data = table.column(name).cast(pa.from_numpy_dtype(dtype))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise CollectorError(f"packet table: column {name}: {exc}") from exc
            return np.asarray(data.to_numpy(), dtype)

        def addr(name: str) -> np.ndarray:
            arr = table.column(name)
            if arr.type != pa.binary(16) or arr.null_count:
                raise CollectorError(f"packet table: column {name} must be non-null binary(16)")
            joined = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
            if n == 0:
                return np.zeros((0, 16), np.uint8)
            raw = np.frombuffer(joined.buffers()[1], np.uint8, n * 16, joined.offset * 16)
            return raw.reshape(n, 16).copy()

        times = table.column("time")
        if pa.types.is_timestamp(times.type):
            times = times.cast(pa.timestamp("us", tz=times.type.tz), safe=False)  # ns: floored
        u32c = np.zeros((N_U32, n), np.uint32)
        u16c = np.zeros((N_U16, n), np.uint16)
        u8c = np.zeros((N_U8, n), np.uint8)
        for block, names, dtype in (
            (u32c, _U32_COLUMNS, np.uint32),
            (u16c, _U16_COLUMNS, np.uint16),
            (u8c, _U8_COLUMNS, np.uint8),
        ):
            for name, row in names.items():
                block[row] = col(name, dtype)
        u8c[U8_STATUS] = np.where(u8c[U8_IP_VERSION] == 0, STATUS_NON_IP, STATUS_OK)
        return cls(
            np.asarray(times.cast(pa.int64()).to_numpy(), np.int64),
            col("offset", np.int64),
            addr("src_addr"),
            addr("dst_addr"),
            u32c,
            u16c,
            u8c,
        )
