"""Verifies the (first) DKIM-Signature of a message read from stdin, with dkimpy.

    python dkim_verify.py --selector S --domain D --public-key-b64 KEY [--key-type ed25519|rsa] < message.eml

No real DNS: the only TXT record that exists is `v=DKIM1; k=<key-type>; p=KEY` at
S._domainkey.D. Prints `pass` and exits 0 when the signature verifies; otherwise prints
the reason and exits 1. A second line holds the signature's h= tag (the signed header
fields, colon-separated, folding whitespace removed) whenever there is a signature.
"""

import argparse
import logging
import sys

import dkim


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--selector", required=True)
    parser.add_argument("--domain", required=True)
    parser.add_argument("--public-key-b64", required=True)
    parser.add_argument("--key-type", choices=["ed25519", "rsa"], default="ed25519")
    args = parser.parse_args()

    record_name = f"{args.selector}._domainkey.{args.domain.rstrip('.')}.".lower()
    record = f"v=DKIM1; k={args.key_type}; p={args.public_key_b64}".encode()

    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        return record if name.lower() == record_name else None

    message = sys.stdin.buffer.read()
    collect = Collect()
    logger = logging.getLogger("dkim_verify")
    logger.addHandler(collect)
    logger.propagate = False
    d = dkim.DKIM(message, logger=logger)
    try:
        ok = d.verify(dnsfunc=dnsfunc)
        if ok:
            reason = "pass"
        elif not d.present():
            reason = "no DKIM-Signature header"
        elif collect.messages:
            reason = "; ".join(collect.messages)
        else:
            reason = "signature does not verify"
    except dkim.DKIMException as e:
        ok, reason = False, f"{type(e).__name__}: {e}"
    print(reason)
    fields = getattr(d, "signature_fields", None) or {}
    if b"h" in fields:
        signed = fields[b"h"].decode("ascii", "replace").split(":")
        print(":".join(h.strip() for h in signed))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
