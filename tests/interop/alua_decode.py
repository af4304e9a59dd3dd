#!/usr/bin/env python3
"""Decode SCSI data printed by scsi_cmd.py for the gateway group test (test helper).

Usage: alua_decode.py inquiry|vpd83|rtpg  < scsi_cmd.py output
  inquiry  "tpgs=N"
  vpd83    one line per designator: "lu-naa=HEX", "tpg=N", "relport=N", other kinds skipped
  rtpg     one line per group: "group=ID state=S status=C ports=P,P"
"""
import sys


def data():
    for line in sys.stdin:
        if line.startswith("data="):
            return bytes.fromhex(line.strip()[5:])
        if line.startswith("sense="):
            raise SystemExit("CHECK CONDITION: " + line.strip())
    raise SystemExit("no data")


def main():
    what = sys.argv[1]
    d = data()
    if what == "inquiry":
        print("tpgs=%d" % ((d[5] >> 4) & 3))
    elif what == "vpd83":
        n = 4
        end = 4 + int.from_bytes(d[2:4], "big")
        while n + 4 <= end:
            assoc, kind, ln = (d[n + 1] >> 4) & 3, d[n + 1] & 0x0F, d[n + 3]
            body = d[n + 4:n + 4 + ln]
            if assoc == 0 and kind == 3:
                print("lu-naa=" + body.hex())
            elif assoc == 1 and kind == 5:
                print("tpg=%d" % int.from_bytes(body[2:4], "big"))
            elif assoc == 1 and kind == 4:
                print("relport=%d" % int.from_bytes(body[2:4], "big"))
            n += 4 + ln
    elif what == "rtpg":
        n = 4
        end = 4 + int.from_bytes(d[0:4], "big")
        while n + 8 <= end:
            count = d[n + 7]
            ports = [int.from_bytes(d[n + 8 + 4 * i + 2:n + 8 + 4 * i + 4], "big") for i in range(count)]
            print("group=%d state=%d status=%d ports=%s" % (int.from_bytes(d[n + 2:n + 4], "big"), d[n] & 0x0F,
                                                              d[n + 5], ",".join(map(str, ports))))
            n += 8 + 4 * count
    return 0


if __name__ == "__main__":
    sys.exit(main())
