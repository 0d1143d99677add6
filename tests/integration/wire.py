"""A minimal raw PostgreSQL frontend for tests that must send exact (or broken) bytes."""
import socket
import struct


def startup_packet(user="postgres", database="postgres", protocol=196608, **params):
    body = struct.pack("!I", protocol)
    for key, value in {"user": user, "database": database, **params}.items():
        body += key.encode() + b"\0" + value.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def message(tag: bytes, body: bytes = b""):
    return tag + struct.pack("!I", len(body) + 4) + body


def cstr(text: str):
    return text.encode() + b"\0"


class RawClient:
    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buffer += chunk

    def read_byte(self):
        while not self.buffer:
            self._fill()
        byte, self.buffer = self.buffer[:1], self.buffer[1:]
        return byte

    def read_message(self):
        """(tag, body) of the next backend message."""
        while len(self.buffer) < 5:
            self._fill()
        tag, length = self.buffer[:1], struct.unpack("!I", self.buffer[1:5])[0]
        while len(self.buffer) < 1 + length:
            self._fill()
        body, self.buffer = self.buffer[5:1 + length], self.buffer[1 + length:]
        return tag, body

    def read_until(self, tag: bytes):
        """All messages up to and including the first with `tag`."""
        seen = []
        while True:
            msg = self.read_message()
            seen.append(msg)
            if msg[0] == tag:
                return seen

    def tags_until_ready(self, count):
        """The tags of the backend messages up to the `count`th ReadyForQuery, read in large
        pieces (a pipeline's answers can be millions of messages)."""
        received, tags, offset, ready = bytearray(self.buffer), bytearray(), 0, 0
        while ready < count:
            if len(received) - offset < 5 or \
                    len(received) - offset < 1 + struct.unpack_from("!I", received, offset + 1)[0]:
                del received[:offset]
                offset = 0
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    raise EOFError("connection closed")
                received += chunk
                continue
            tags.append(received[offset])
            ready += received[offset] == ord("Z")
            offset += 1 + struct.unpack_from("!I", received, offset + 1)[0]
        self.buffer = bytes(received[offset:])
        return bytes(tags)

    def login_trust(self, user="postgres", database="postgres"):
        self.send(startup_packet(user, database))
        return self.read_until(b"Z")

    def closed(self):
        """True once the server has closed the connection (after draining what it sent)."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()

    def reset(self):
        """Hangs up with a TCP reset, as the kernel does for a client that dies with answers
        unread: the server's reads and writes fail rather than meet an end of stream."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def error_fields(body: bytes):
    """The fields of an ErrorResponse body as {code letter: text}."""
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode()
    return fields
