"""Prints the `sig` Vonage adds to a signed SMS webhook (delivery receipt or inbound).

    python vonage_sign.py --secret SECRET [--method md5hash|md5|sha1|sha256|sha512] < params
    python vonage_sign.py --self-test

stdin holds the request's parameters, form-encoded (`timestamp` included, `sig` not:
a `sig` given is ignored, as Vonage excludes it). The output is lower-case hex.

Written from Vonage's "Signing Messages" documentation with Python's hashlib and hmac
only, independently of Tayori's Rust code, so the tests check Tayori against a second
implementation rather than against itself: every parameter but `sig`, sorted by name,
each appended as `&name=value` with `&` and `=` in the value replaced by `_`; then
`md5hash` is MD5(that string + secret) and the other methods are HMAC-<method> keyed
with the secret. `--self-test` checks the vector from the tests of Vonage's own Python
SDK (a=1, b=2, timestamp=1461605396, secret "secret", md5hash).
"""

import argparse
import hashlib
import hmac
import sys
from urllib.parse import parse_qsl

HMACS = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256,
         "sha512": hashlib.sha512}


def signature(params, secret, method="md5hash"):
    signed = "".join(
        "&{}={}".format(name, str(params[name]).replace("&", "_").replace("=", "_"))
        for name in sorted(params)
        if name != "sig"
    ).encode("utf-8")
    if method == "md5hash":
        return hashlib.md5(signed + secret.encode("utf-8")).hexdigest()
    return hmac.new(secret.encode("utf-8"), signed, HMACS[method]).hexdigest()


def self_test():
    got = signature({"a": "1", "b": "2", "timestamp": "1461605396"}, "secret")
    assert got == "6af838ef94998832dbfc29020b564830", got
    print("ok")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--secret", help="the account's signature secret")
    parser.add_argument("--method", default="md5hash",
                        choices=["md5hash"] + sorted(HMACS))
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    if args.self_test:
        self_test()
        return
    if args.secret is None:
        parser.error("--secret is required")
    body = sys.stdin.buffer.read().decode("utf-8")
    params = {}
    for name, value in parse_qsl(body, keep_blank_values=True, strict_parsing=False):
        if name in params:
            sys.exit(f"parameter {name!r} given twice")
        params[name] = value
    print(signature(params, args.secret, args.method))


if __name__ == "__main__":
    main()
