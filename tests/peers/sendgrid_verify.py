"""Checks SendGrid Event Webhook signatures with SendGrid's own library.

Reads one JSON object per line on stdin: {"public_key", "payload", "signature",
"timestamp"}; writes "true" or "false" per line. The tests sign requests with
the test kit's signer and post them to Tayori; this proves that signer makes
what SendGrid's verifier accepts, so Tayori is checked against SendGrid's
scheme, not against the test kit's reading of it.
"""
import json
import sys

from sendgrid.helpers.eventwebhook import EventWebhook


def main():
    hook = EventWebhook()
    for line in sys.stdin:
        req = json.loads(line)
        key = hook.convert_public_key_to_ecdsa(req["public_key"])
        ok = hook.verify_signature(req["payload"], req["signature"], req["timestamp"], key)
        print("true" if ok else "false", flush=True)


if __name__ == "__main__":
    main()
