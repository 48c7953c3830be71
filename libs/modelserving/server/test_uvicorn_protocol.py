"""The guarded HTTP protocol subclasses uvicorn's internals: pinned to the version it was read against."""

from importlib.metadata import version

from modelserving.server.uvicorn_protocol import UVICORN_VERSION


def test_uvicorn_is_the_version_the_protocol_was_written_against() -> None:
    installed = version("uvicorn")
    assert installed == UVICORN_VERSION, (
        f"uvicorn {installed} is installed, but server/uvicorn_protocol.py subclasses the internals of"
        f" uvicorn {UVICORN_VERSION}: re-read HttpToolsProtocol (connection_made, on_message_begin,"
        " on_headers_complete, connection_lost, app_state, loop, transport, parser, url, headers, scope,"
        " cycle and its response_complete, expect_100_continue, server_state.total_requests,"
        " timeout_keep_alive_task and its handler), then update UVICORN_VERSION"
    )
