"""Property: however the application chunks a body, whatever frame size the
client allows and however it opens its windows, the HTTP/2 adapter's DATA
frames carry every byte once, in order, none larger than the client's
SETTINGS_MAX_FRAME_SIZE, none empty but a final one, and END_STREAM on the
last frame only."""

from __future__ import annotations

from h2.settings import SettingCodes
from hyperframe.frame import DataFrame
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.protocol.test_http2 import Peer
from tricorn.protocol.events import Data, EndData, Response


@settings(max_examples=150, deadline=None)
@given(
    chunks=st.lists(st.integers(min_value=1, max_value=70000), min_size=0, max_size=6),
    frame_size=st.sampled_from([16384, 16385, 20000, 32768, 65536]),
    window=st.integers(min_value=1, max_value=200000),
    credit=st.integers(min_value=1000, max_value=100000),
)
def test_body_frames_whatever_the_chunks_frames_and_windows(
    chunks: list[int], frame_size: int, window: int, credit: int
) -> None:
    peer = Peer(
        client_settings={
            SettingCodes.MAX_FRAME_SIZE: frame_size,
            SettingCodes.INITIAL_WINDOW_SIZE: window,
        }
    )
    peer.request(1)
    body = b"".join(bytes([index % 251]) * size for index, size in enumerate(chunks))
    peer.adapter.send(Response(1, 200, []))
    offset = 0
    for size in chunks:
        peer.adapter.send(Data(1, body[offset : offset + size]))
        offset += size
    peer.adapter.send(EndData(1))
    received = b""
    frames: list[DataFrame] = []
    for _ in range(len(body) // credit + 20):  # (each round credits ``credit`` more)
        peer.read()
        data = [frame for frame in peer.frames if isinstance(frame, DataFrame)]
        frames += data
        received += b"".join(bytes(frame.data) for frame in data)
        if any("END_STREAM" in frame.flags for frame in peer.frames):
            break  # (on HEADERS: no body)
        # The client reads on and credits both windows.
        peer.client.increment_flow_control_window(credit, 1)
        peer.client.increment_flow_control_window(credit)
        peer.flush()
    assert received == body
    assert all(len(frame.data) <= frame_size for frame in frames)
    assert all(frame.data for frame in frames[:-1])
    ends = ["END_STREAM" in frame.flags for frame in frames]
    assert ends == ([False] * (len(frames) - 1) + [True] if body else [])
