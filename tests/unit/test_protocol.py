"""The write-coalescing transport of the model server's HTTP protocol."""

import asyncio

from modelhost.server.protocol import CoalescingTransport


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closed


def test_head_and_body_go_out_in_one_write():
    async def scenario():
        real = RecordingTransport()
        transport = CoalescingTransport(real, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        assert transport.get_write_buffer_size() == 19
        transport.write(b"[1]")
        await asyncio.sleep(0)
        return real.writes

    assert asyncio.run(scenario()) == [b"HTTP/1.1 200 OK\r\n\r\n[1]"]


def test_a_lone_write_is_sent_on_the_next_turn_and_close_flushes():
    async def scenario():
        real = RecordingTransport()
        transport = CoalescingTransport(real, asyncio.get_running_loop())
        transport.write(b"head")
        assert real.writes == []
        await asyncio.sleep(0)
        after_turn = list(real.writes)
        transport.write(b"408")
        transport.close()
        return after_turn, real.writes, real.closed, transport.is_closing()

    after_turn, writes, closed, closing = asyncio.run(scenario())
    assert after_turn == [b"head"]
    assert writes == [b"head", b"408"]
    assert closed
    assert closing  # other calls reach the real transport
