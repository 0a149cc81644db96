"""Client and server through the module on loopback; a tampered answer is refused."""

import socket
import struct
import threading
import time

import numpy as np
import pytest

import dashgc

ANSWER = 0x21  # frame type of the server's answer (docs/PROTOCOL.md)


def test_client_server_loopback_every_answer_verified(cnn, mnist):
    images = mnist[:6]
    want = cnn.eval_plain(images)
    with dashgc.Server(cnn) as server:
        host, port = server.address.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        done = []
        with dashgc.Client(server.address, cnn, queue=2) as client:
            first = client.infer(images[:4], progress=lambda d, t: done.append((d, t)))
            second = client.infer(images[4:])
        np.testing.assert_array_equal(np.vstack([first.outputs, second.outputs]), want)
        np.testing.assert_array_equal(first.predictions, want[:4].argmax(axis=1))
        assert done == [(1, 4), (2, 4), (3, 4), (4, 4)]
        # On the wire: the material plus a few frame headers per circuit.
        material = 4 * cnn.costs()["bytes_per_image"]
        assert material <= first.bytes["material"] < material + 4 * 4096
        assert first.bytes["online"] == 4 * cnn.costs()["online_bytes_per_image"]
        assert set(first.timings) == {"offline", "online", "total"}
        # The server counts an answer after sending it: wait for its count.
        deadline = time.monotonic() + 10
        while server.stats()["answers"] < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        stats = server.stats()
        assert stats["answers"] == 6 and stats["circuits"] == 6 and stats["connections"] == 1
    assert not server.serving
    with pytest.raises(dashgc.ProtocolError):
        dashgc.Client(server.address, cnn, timeout=2)


def test_two_clients_at_once(mlp, mnist):
    want = mlp.eval_plain(mnist[:8])
    with dashgc.Server(mlp) as server:
        results = {}

        def run(k):
            with dashgc.Client(server.address, mlp) as c:
                results[k] = c.infer(mnist[4 * k : 4 * k + 4]).outputs

        threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        np.testing.assert_array_equal(np.vstack([results[0], results[1]]), want)


def test_model_mismatch_is_a_protocol_error(mlp, cnn):
    with dashgc.Server(cnn) as server:
        with pytest.raises(dashgc.ProtocolError, match="model"):
            dashgc.Client(server.address, mlp, timeout=5)


class Proxy:
    """A TCP relay between one client and the server that can flip one bit of each answer's last label."""

    def __init__(self, upstream: str, tamper: bool):
        self.upstream = upstream
        self.tamper = tamper
        self.answers = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        client, _ = self.sock.accept()
        host, port = self.upstream.rsplit(":", 1)
        server = socket.create_connection((host, int(port)))
        threading.Thread(target=self._copy, args=(client, server), daemon=True).start()
        self._frames(server, client)

    @staticmethod
    def _copy(src, dst):
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            dst.close()

    def _frames(self, src, dst):
        def read(n):
            buf = b""
            while len(buf) < n:
                chunk = src.recv(n - len(buf))
                if not chunk:
                    raise EOFError
                buf += chunk
            return buf

        try:
            while True:
                head = read(5)
                kind, length = head[0], struct.unpack("<I", head[1:])[0]
                payload = bytearray(read(length))
                if kind == ANSWER:
                    self.answers += 1
                    if self.tamper:
                        payload[-1] ^= 0x01
                dst.sendall(head + bytes(payload))
        except (EOFError, OSError):
            pass
        finally:
            dst.close()


@pytest.mark.parametrize("tamper", [False, True])
def test_tampered_answer_raises_authenticity_error(mlp, mnist, tamper):
    with dashgc.Server(mlp) as server:
        proxy = Proxy(server.address, tamper)
        client = dashgc.Client(proxy.address, mlp, timeout=10)
        if not tamper:
            # The relay alone changes nothing: answers pass and verify.
            np.testing.assert_array_equal(client.infer(mnist[:2]).outputs, mlp.eval_plain(mnist[:2]))
            assert proxy.answers == 2
            client.close()
            return
        with pytest.raises(dashgc.AuthenticityError, match="forged or corrupted") as info:
            client.infer(mnist[:2])
        assert isinstance(info.value, dashgc.Error)
        assert proxy.answers == 1
        # Fail-closed: the client refuses to go on after a forged answer.
        with pytest.raises(dashgc.ProtocolError, match="closed"):
            client.infer(mnist[:1])


def test_client_checks_images_before_sending(mlp, mnist):
    with dashgc.Server(mlp) as server, dashgc.Client(server.address, mlp) as client:
        with pytest.raises(ValueError, match="integer array"):
            client.infer(mnist[:2].astype(np.float64))
        # The connection is still good after a refused batch.
        np.testing.assert_array_equal(client.infer(mnist[:1]).outputs, mlp.eval_plain(mnist[:1]))
