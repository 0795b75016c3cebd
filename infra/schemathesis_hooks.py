"""Schemathesis hooks for scripts/api-check.sh (loaded through SCHEMATHESIS_HOOKS).

Request bodies that are not valid UTF-8 are filtered out: the local Lambda emulator
(`cargo lambda watch`) cannot put such a body into the JSON event it hands a function and
answers 500 in plain text itself, before any of our code runs. The functions' own answer to
such a body, a JSON:API 400, is checked in process by replaying
events/signup/not-utf8-400.json (shared/tests/events.rs).
"""

import schemathesis


def _is_utf8(body) -> bool:
    try:
        if isinstance(body, (bytes, bytearray)):
            bytes(body).decode("utf-8")
        elif isinstance(body, str):
            body.encode("utf-8")
    except UnicodeError:
        return False
    return True


@schemathesis.hook
def filter_body(context, body) -> bool:
    return _is_utf8(body)
