"""Prints the X-Twilio-Signature Twilio would send for a webhook request.

    python twilio_sign.py --token AUTH_TOKEN URL < form-urlencoded-body

The signature is computed by Twilio's own helper library
(`twilio.request_validator.RequestValidator(token).compute_signature(url, params)`),
so the tests check Tayori's verification against Twilio's implementation rather
than against a second copy of ours. URL is the full URL Twilio called, query string
included; the body is the POST body as sent (application/x-www-form-urlencoded).
A parameter that occurs more than once is passed with all its values, as the
validator's MultiDict support expects.
"""

import argparse
import sys
from urllib.parse import parse_qsl

from twilio.request_validator import RequestValidator


class Params(dict):
    """name -> [values], answering `getall` like the MultiDicts Twilio supports."""

    def getall(self, name):
        return self[name]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--token", required=True, help="the account's auth token")
    parser.add_argument("url", help="the full URL Twilio called")
    args = parser.parse_args()

    body = sys.stdin.buffer.read().decode("utf-8")
    params = Params()
    for name, value in parse_qsl(body, keep_blank_values=True, strict_parsing=False):
        params.setdefault(name, []).append(value)
    print(RequestValidator(args.token).compute_signature(args.url, params))


if __name__ == "__main__":
    main()
