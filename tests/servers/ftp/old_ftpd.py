"""An FTP server that predates EPSV (RFC 2428) and SIZE (RFC 3659): pyftpdlib
with both answered `502 Command not implemented`, as old partner servers do.
Plain FTP, 127.0.0.1 only. Clients must fall back to PASV.
usage: old_ftpd.py PORT ROOT_DIR USER PASSWORD [PASV_MIN PASV_MAX]"""
import logging
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer

port, root, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
pmin, pmax = (int(sys.argv[5]), int(sys.argv[6])) if len(sys.argv) > 6 else (30070, 30089)


class NoEpsvHandler(FTPHandler):
    def ftp_EPSV(self, line):
        self.respond("502 Command not implemented.")

    def ftp_SIZE(self, path):
        self.respond("502 Command not implemented.")


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
auth = DummyAuthorizer()
auth.add_user(user, password, root, perm="elradfmwMT")
NoEpsvHandler.authorizer = auth
NoEpsvHandler.passive_ports = range(pmin, pmax + 1)
NoEpsvHandler.masquerade_address = "127.0.0.1"
NoEpsvHandler.permit_foreign_addresses = False
srv = FTPServer(("127.0.0.1", port), NoEpsvHandler)
srv.max_cons = 100
srv.serve_forever()
