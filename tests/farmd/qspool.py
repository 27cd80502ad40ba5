"""qspool - the spool queue directory's layout, read from Python: tests
and benchmarks look at queued messages with it (common/qstore.h,
common/qstore_spool.c and common/qid.h are the reference)."""

import os
import zlib

import zfproto as P


QID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def qid_is_slot(qid):
    """An ID of a slot of the spool (common/qid.h): its 12th character is G or later."""
    return QID_ALPHABET.index(qid[11]) >= 16


def qid_time_us(qid):
    v = 0
    for c in qid[:11]:
        v = v * 32 + QID_ALPHABET.index(c)
    return v


def qid_format(time_us, tail):
    out = []
    for value, chars in ((time_us, 11), (tail, 5)):
        part = []
        for _ in range(chars):
            part.append(QID_ALPHABET[value & 31])
            value >>= 5
        out.extend(reversed(part))
    return "".join(out)


def spool_message_len(data, qid):
    """M from a spool file's header if it holds qid's message, else None.
    Slot files (slot/RRR/NN): "ZSL1", 8-byte ID time, 4-byte M; "ZSL0" is
    free.  Files of the tmp/ + msg/XX way: "ZSP1", 4-byte tag, 8-byte M."""
    if data[:4] == b"ZSL1" and len(data) >= 16:
        if qid is not None and int.from_bytes(data[4:12], "big") != qid_time_us(qid):
            return None
        return int.from_bytes(data[12:16], "big")
    if data[:4] == b"ZSP1" and len(data) >= 16:
        return int.from_bytes(data[8:16], "big")
    return None


def slot_frame(qid, record):
    """A control record framed for qid's slot file: length, CRC-32 of the
    ID's time, the length and the record, then the record."""
    n = len(record).to_bytes(4, "big")
    crc = zlib.crc32(qid_time_us(qid).to_bytes(8, "big") + n + record)
    return n + crc.to_bytes(4, "big") + record


def slot_frames(qid, area):
    """(records, bytes taken) of the frames that check at the start of a
    slot's control area; what follows is an older message's or torn."""
    out, i = [], 0
    while i + 8 <= len(area):
        n = int.from_bytes(area[i:i + 4], "big")
        rec = area[i + 8:i + 8 + n]
        if n == 0 or len(rec) < n or area[i:i + 8] != slot_frame(qid, rec)[:8]:
            break
        out.append(rec)
        i += 8 + n
    return out, i


class Queue:
    """A spool queue directory: slot/RRR/NN (new messages), msg/XX/ID, tmp/."""

    def __init__(self, directory):
        self.dir = directory

    def msg_path(self, qid):
        if qid_is_slot(qid):
            return os.path.join(self.dir, "slot", qid[-5:-2], qid[-2:])
        return os.path.join(self.dir, "msg", qid[-2:], qid)

    def has(self, qid):
        """Whether qid is queued (a slot's file stays when its message goes)."""
        try:
            with open(self.msg_path(qid), "rb") as f:
                head = f.read(16)
        except FileNotFoundError:
            return False
        return not qid_is_slot(qid) or spool_message_len(head, qid) is not None

    def _files(self, sub):
        out = []
        top = os.path.join(self.dir, sub)
        for root, _dirs, files in os.walk(top):
            for f in files:
                out.append(os.path.join(root, f))
        return out

    def _slots(self):
        """(path, ID) of every committed slot."""
        out = []
        for path in self._files("slot"):
            rr, nn = path.split(os.sep)[-2:]
            try:
                with open(path, "rb") as f:
                    head = f.read(16)
            except FileNotFoundError:
                continue
            if head[:4] != b"ZSL1" or len(head) < 16:
                continue
            tail = 0
            for c in rr + nn:
                tail = tail * 32 + QID_ALPHABET.index(c)
            out.append((path, qid_format(int.from_bytes(head[4:12], "big"), tail)))
        return out

    def count(self):
        """Queued messages."""
        return len(self.msg_ids())

    def msg_files(self):
        """Files of queued messages."""
        return self._files("msg") + [p for p, _ in self._slots()]

    def tmp_files(self):
        return self._files("tmp")

    def msg_ids(self):
        return (set(os.path.basename(p) for p in self._files("msg")) |
                set(q for _, q in self._slots()))

    def _data(self, qid):
        with open(self.msg_path(qid), "rb") as f:
            data = f.read()
        m = spool_message_len(data, qid)
        if m is None:
            raise AssertionError("%s: bad spool header %r" % (qid, data[:16]))
        return data, m

    def read(self, qid):
        """(envelope bytes, content bytes) of a committed message."""
        data, m = self._data(qid)
        # the spool header, the message ("ZFQ1", 4-byte envelope length,
        # envelope, content), the control records
        data = data[16:16 + m]
        if data[:4] != b"ZFQ1":
            raise AssertionError("%s: bad magic %r" % (qid, data[:4]))
        n = int.from_bytes(data[4:8], "big")
        return data[8:8 + n], data[8 + n:]

    def ctl_records(self, qid):
        """qid's control records as bytes (a slot's: those that check)."""
        data, m = self._data(qid)
        ctl, i, out = data[16 + m:], 0, []
        if qid_is_slot(qid):
            return slot_frames(qid, ctl)[0]
        while i + 4 <= len(ctl):
            n = int.from_bytes(ctl[i:i + 4], "big")
            out.append(ctl[i + 4:i + 4 + n])
            i += 4 + n
        return out

    def ctl(self, qid):
        """qid's control records, each a dict of CtlRecord fields."""
        return [P.fields(r) for r in self.ctl_records(qid)]

    def ctl_end(self, qid):
        """The file offset after qid's last control record."""
        data, m = self._data(qid)
        if qid_is_slot(qid):
            return 16 + m + slot_frames(qid, data[16 + m:])[1]
        return len(data)

    def ctl_write_raw(self, qid, raw):
        """Bytes written right after qid's last control record, as a torn
        append would leave them (a slot's file keeps what lies past them)."""
        with open(self.msg_path(qid), "r+b") as f:
            f.seek(self.ctl_end(qid))
            f.write(raw)

    def ctl_append(self, qid, record):
        """A control record (CtlRecord bytes) appended by hand, framed for
        the file's layout."""
        frame = (slot_frame(qid, record) if qid_is_slot(qid)
                 else len(record).to_bytes(4, "big") + record)
        self.ctl_write_raw(qid, frame)

    def routes(self, qid):
        """(RouteRecords as dicts, number of routed markers)."""
        out, markers = [], 0
        for rec in self.ctl(qid):
            if 1 in rec:
                r = P.fields(rec[1][0])
                d = {k: r[num][0].decode() if num in r else ""
                     for k, num in (("orig", 3), ("address", 5), ("channel", 6),
                                    ("nexthop", 7), ("user", 8), ("error", 10))}
                d.update({k: r[num][0] if num in r else 0
                          for k, num in (("index", 1), ("total", 11))})
                out.append(d)
            elif 3 in rec:
                markers += 1
        return out, markers

    def results(self, qid):
        """ResultRecords as (route index, status)."""
        out = []
        for rec in self.ctl(qid):
            if 2 in rec:
                r = P.fields(rec[2][0])
                out.append((r.get(1, [0])[0], r.get(2, [0])[0]))
        return out
