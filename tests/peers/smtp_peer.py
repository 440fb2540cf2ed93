"""A real SMTP server (aiosmtpd) for Tayori's integration tests.

    python smtp_peer.py --port PORT --dir DIR [--host 127.0.0.1] [--auth USER:PASS]
                        [--tls starttls|implicit] [--no-pipelining]
                        [--close-idle-after SECONDS]

Prints READY once listening. How a recipient is answered depends on its local part
(case-insensitive prefix):

    unknown*   RCPT: 550 5.1.1 <addr>: Recipient address rejected: User unknown
    disabled*  RCPT: 550 5.2.1 Mailbox disabled
    busy*      RCPT: 452 4.2.2 Mailbox full (every time)
    tempfail*  DATA: 451 4.3.0 the first time a message for that exact address gets
               there (remembered in DIR/tempfailed, so across restarts too), then 250
    reject*    DATA: 554 5.7.1 Message rejected as spam (every time)
    otherwise  250

An accepted message becomes DIR/NNNNNN.json (envelope: mail_from, rcpt_tos, helo,
auth_user) then DIR/NNNNNN.eml (the DATA bytes exactly as received, after dot
un-stuffing), each written to a dot-file first and renamed, the .json before the .eml.
DIR/connections holds the number of SMTP connections accepted so far (kept across
restarts on the same DIR), DIR/closed the number that ended (either side closing).

The peer offers PIPELINING (RFC 2920) unless --no-pipelining; aiosmtpd reads commands
line by line, so pipelined ones are answered in order. DIR/pipelined counts the MAIL
commands that arrived with more commands already behind them in the same read (what
a pipelining client's single write of MAIL, RCPT and DATA looks like). With
--close-idle-after, a connection idle that long is closed without a word (aiosmtpd's
timeout), as a relay's idle timeout does. With --auth, MAIL needs AUTH PLAIN or LOGIN first (no TLS:
the tests run on loopback) and wrong credentials get 535.

With --tls, the peer makes a throwaway CA (trustme) and a certificate for 127.0.0.1
and localhost, writes the CA to DIR/.ca.pem, and either requires STARTTLS before MAIL
(starttls) or speaks TLS from the first byte (implicit). Each stored .json then says
"tls": true when the message came over TLS.
"""

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult

RCPT_REPLIES = {
    "disabled": "550 5.2.1 Mailbox disabled",
    "busy": "452 4.2.2 Mailbox full",
}


def local_part(address):
    return address.rsplit("@", 1)[0].lower()


def write_atomic(path, data):
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class Peer:
    def __init__(self, directory):
        self.dir = directory
        names = [n for n in os.listdir(directory) if re.fullmatch(r"\d{6}\.eml", n)]
        self.seq = max((int(n[:6]) for n in names), default=0)
        self.connections = self._read_int("connections")
        self.pipelining = True
        tempfailed = os.path.join(directory, "tempfailed")
        if os.path.exists(tempfailed):
            with open(tempfailed, encoding="utf-8") as f:
                self.tempfailed = set(f.read().split())
        else:
            self.tempfailed = set()

    def _read_int(self, name):
        try:
            with open(os.path.join(self.dir, name), encoding="ascii") as f:
                return int(f.read().strip() or 0)
        except FileNotFoundError:
            return 0

    def connected(self):
        self.connections += 1
        write_atomic(os.path.join(self.dir, "connections"), b"%d\n" % self.connections)

    def bump(self, name):
        n = self._read_int(name) + 1
        write_atomic(os.path.join(self.dir, name), b"%d\n" % n)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # The five-argument hook replaces aiosmtpd's own bookkeeping of the name.
        session.host_name = hostname
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        # Bytes already buffered behind MAIL came in the same write as it.
        if server._reader is not None and len(server._reader._buffer) > 0:
            self.bump("pipelined")
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = local_part(address)
        if local.startswith("unknown"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        for prefix, reply in RCPT_REPLIES.items():
            if local.startswith(prefix):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        locals_ = [local_part(a) for a in envelope.rcpt_tos]
        if any(local.startswith("reject") for local in locals_):
            return "554 5.7.1 Message rejected as spam"
        first = [a for a in envelope.rcpt_tos
                 if local_part(a).startswith("tempfail") and a not in self.tempfailed]
        if first:
            self.tempfailed.update(first)
            data = "".join(a + "\n" for a in sorted(self.tempfailed)).encode()
            write_atomic(os.path.join(self.dir, "tempfailed"), data)
            return "451 4.3.0 Temporary failure, try again"
        self.seq += 1
        base = os.path.join(self.dir, f"{self.seq:06d}")
        auth = session.auth_data
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "rcpt_args": list(getattr(envelope, "rcpt_args", [])),
            "helo": session.host_name,
            "auth_user": auth.login.decode("utf-8", "replace") if auth else None,
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
        }
        write_atomic(base + ".json", json.dumps(meta, ensure_ascii=False).encode())
        write_atomic(base + ".eml", envelope.original_content)
        return "250 2.0.0 OK: queued as %06d" % self.seq


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--auth", metavar="USER:PASS")
    parser.add_argument("--tls", choices=["starttls", "implicit"])
    parser.add_argument("--no-pipelining", action="store_true")
    parser.add_argument("--close-idle-after", type=float, metavar="SECONDS")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    # Plaintext AUTH on loopback is the point here: no warnings about it (or about
    # aiosmtpd's own deprecated login_data) on every connection.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    peer = Peer(args.dir)
    peer.pipelining = not args.no_pipelining
    if args.close_idle_after:
        kwargs_timeout = dict(timeout=args.close_idle_after)
    else:
        kwargs_timeout = {}

    kwargs = {}
    if args.auth:
        user, _, password = args.auth.partition(":")
        creds = (user.encode(), password.encode())

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (auth_data.login, auth_data.password) == creds
            return AuthResult(success=ok, handled=False, auth_data=auth_data)

        kwargs = dict(auth_required=True, auth_require_tls=False, authenticator=authenticator)

    ssl_context = None
    if args.tls:
        import ssl
        import trustme
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(ssl_context)
        ca_path = os.path.join(args.dir, ".ca.pem")
        ca.cert_pem.write_to_path(ca_path + ".tmp")
        os.replace(ca_path + ".tmp", ca_path)
        if args.tls == "starttls":
            kwargs.update(tls_context=ssl_context, require_starttls=True)
        else:
            kwargs.update(auth_require_tls=False)

    class PeerSMTP(SMTP):
        def connection_lost(self, error):
            peer.bump("closed")
            super().connection_lost(error)

        async def smtp_RCPT(self, arg):
            # The argument as written (aiosmtpd hands the handler an unquoted
            # address): the tests check what went on the wire.
            if self.envelope is not None and arg:
                if not hasattr(self.envelope, "rcpt_args"):
                    self.envelope.rcpt_args = []
                self.envelope.rcpt_args.append(arg)
            return await super().smtp_RCPT(arg)

    def factory():
        peer.connected()
        return PeerSMTP(peer, hostname="smtp-peer.test", decode_data=False, loop=loop,
                        enable_SMTPUTF8=True, data_size_limit=256 * 1024 * 1024,
                        **kwargs, **kwargs_timeout)

    loop = asyncio.get_running_loop()
    implicit = ssl_context if args.tls == "implicit" else None
    server = await loop.create_server(factory, host=args.host, port=args.port, ssl=implicit)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY", flush=True)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
