"""The web editor's API fuzzed by schemathesis from its own OpenAPI schema, in process (ASGI, no network): no
request the schema allows, nor the invalid ones schemathesis derives from it, may get a 5xx.

The schema is loaded when the module is collected: schemathesis' lazy ``from_fixture`` reads a private pytest
attribute that pytest 9 no longer has.
"""

import pytest

pytest.importorskip("fastapi", reason="the web extra (fastapi) is not installed")
schemathesis = pytest.importorskip("schemathesis", reason="schemathesis (the test extra) is not installed")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

import genrt  # noqa: E402
from genrt.errors import ModelNotFoundError  # noqa: E402
from genrt.web import create_app  # noqa: E402

try:
    _manipulator = genrt.load("igan-digits", threads=1)
except ModelNotFoundError as exc:
    pytest.skip(f"the igan-digits bundle is not there yet ({exc})", allow_module_level=True)

schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_manipulator))


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    case.call_and_validate(checks=[not_a_server_error])
