#!/usr/bin/env python3
"""Writes the API Gateway (REST, payload v1) sample events in this folder.

Each event is events/<function>/<case>-<status>.json: the status its function must answer.
Authenticated events carry a token signed with the fixture key below for the fixture user;
tests that replay them configure that key and create that user first. The key signs nothing
outside tests; the token expires in 2100, so the fixtures do not rot.

Run: python3 events/generate.py
"""
import base64
import hashlib
import hmac
import json
import pathlib

FIXTURE_JWT_SECRET = "events-fixture-jwt-secret-not-for-production"
FIXTURE_USER_ID = "01890000-0000-7000-8000-000000000001"
FIXTURE_USER_EMAIL = "events@example.com"
HERE = pathlib.Path(__file__).parent


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(secret: str = FIXTURE_JWT_SECRET, exp: int = 4102444800, alg: str = "HS256") -> str:
    header = b64(json.dumps({"alg": alg, "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"sub": FIXTURE_USER_ID, "iat": 1763600000, "exp": exp, "iss": "favorites", "aud": "favorites-api"}
    payload = b64(json.dumps(claims, separators=(",", ":")).encode())
    if alg == "none":
        return f"{header}.{payload}."
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def event(method, path, resource=None, body=None, headers=None, query=None, path_params=None):
    headers = {"Host": "api.example.com", "User-Agent": "events-fixture", "X-Forwarded-Proto": "https", **(headers or {})}
    return {
        "resource": resource or path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": path_params,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource or path,
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": f"fixture-{method.lower()}-{path.strip('/').replace('/', '-') or 'root'}",
            "accountId": "123456789012",
            "apiId": "fixture",
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "events-fixture"},
            "protocol": "HTTP/1.1",
        },
        "body": body if body is None or isinstance(body, str) else json.dumps(body),
        "isBase64Encoded": False,
    }


JSON = {"Content-Type": "application/json"}
AUTH = {"Authorization": f"Bearer {token()}"}
CHART = {"id": "fixture-chart", "type": "chart", "name": "Revenue", "description": "monthly revenue",
         "x_axis": "month", "y_axis": "EUR", "data": [{"x": "2026-01", "y": 120.5}, {"x": "2026-02", "y": 98}]}

EVENTS = {
    "signup/valid-201": event("POST", "/signup", body={"email": "new-user@example.com", "password": "correct horse battery"}, headers=JSON),
    "signup/short-password-400": event("POST", "/signup", body={"email": "a@example.com", "password": "short"}, headers=JSON),
    "signup/bad-email-400": event("POST", "/signup", body={"email": "not-an-email", "password": "long enough"}, headers=JSON),
    "signup/not-json-400": event("POST", "/signup", body="{email:", headers=JSON),
    "signup/wrong-content-type-415": event("POST", "/signup", body="email=a", headers={"Content-Type": "application/x-www-form-urlencoded"}),
    "signup/not-utf8-400": {**event("POST", "/signup", headers=JSON), "body": base64.b64encode(b"\xff\xfe{}").decode(), "isBase64Encoded": True},
    "signup/email-taken-409": event("POST", "/signup", body={"email": FIXTURE_USER_EMAIL.upper(), "password": "correct horse battery"}, headers=JSON),
    "login/unknown-email-401": event("POST", "/login", body={"email": "nobody@example.com", "password": "correct horse battery"}, headers=JSON),
    "login/missing-password-400": event("POST", "/login", body={"email": FIXTURE_USER_EMAIL}, headers=JSON),
    "login/valid-200": event("POST", "/login", body={"email": FIXTURE_USER_EMAIL, "password": "fixture password"}, headers=JSON),
    "health/ok-200": event("GET", "/health"),
    "add-favorite/chart-201": event("POST", "/favorites", body=CHART, headers={**JSON, **AUTH}),
    "add-favorite/no-token-401": event("POST", "/favorites", body=CHART, headers=JSON),
    "add-favorite/alg-none-401": event("POST", "/favorites", body=CHART, headers={**JSON, "Authorization": f"Bearer {token(alg='none')}"}),
    "add-favorite/unknown-type-400": event("POST", "/favorites", body={**CHART, "type": "video"}, headers={**JSON, **AUTH}),
    "add-favorite/array-body-400": event("POST", "/favorites", body="[1,2,3]", headers={**JSON, **AUTH}),
    "get-favorite/missing-404": event("GET", "/favorites/no-such-favorite", "/favorites/{id}", headers=AUTH, path_params={"id": "no-such-favorite"}),
    "get-favorite/expired-token-401": event("GET", "/favorites/x", "/favorites/{id}", headers={"Authorization": f"Bearer {token(exp=1763600060)}"}, path_params={"id": "x"}),
    "update-favorite/missing-404": event("PATCH", "/favorites/no-such-favorite", "/favorites/{id}", body={"description": "new"}, headers={**JSON, **AUTH}, path_params={"id": "no-such-favorite"}),
    "update-favorite/no-description-400": event("PATCH", "/favorites/x", "/favorites/{id}", body={"name": "renamed"}, headers={**JSON, **AUTH}, path_params={"id": "x"}),
    "update-favorite/no-token-401": event("PATCH", "/favorites/x", "/favorites/{id}", body={"description": "new"}, headers=JSON, path_params={"id": "x"}),
    "remove-favorite/missing-404": event("DELETE", "/favorites/no-such-favorite", "/favorites/{id}", headers=AUTH, path_params={"id": "no-such-favorite"}),
    "remove-favorite/wrong-key-401": event("DELETE", "/favorites/x", "/favorites/{id}", headers={"Authorization": f"Bearer {token(secret='another-secret-of-thirty-two-bytes!!')}"}, path_params={"id": "x"}),
    "list-favorites/first-page-200": event("GET", "/favorites", headers=AUTH, query={"limit": "10"}),
    "list-favorites/ndjson-200": event("GET", "/favorites", headers={**AUTH, "Accept": "application/x-ndjson"}, query={"limit": "all"}),
    "list-favorites/bad-limit-400": event("GET", "/favorites", headers=AUTH, query={"limit": "0"}),
    "list-favorites/forged-cursor-400": event("GET", "/favorites", headers=AUTH, query={"cursor": "eyJmb3JnZWQiOnRydWV9.AAAAAAAAAAAAAAAAAAAAAA"}),
    "list-favorites/no-token-401": event("GET", "/favorites"),
    "list-favorites/filtered-200": event("GET", "/favorites", headers=AUTH, query={"type": "chart,insight", "q": "revenue", "limit": "10"}),
    "list-favorites/unknown-type-400": event("GET", "/favorites", headers=AUTH, query={"type": "video"}),
    "list-favorites/empty-q-400": event("GET", "/favorites", headers=AUTH, query={"q": " "}),
    "list-favorites/bad-if-none-match-400": event("GET", "/favorites", headers={**AUTH, "If-None-Match": "not-quoted"}),
    "get-favorite/bad-if-none-match-400": event("GET", "/favorites/x", "/favorites/{id}", headers={**AUTH, "If-None-Match": "not-quoted"}, path_params={"id": "x"}),
    "update-favorite/weak-if-match-412": event("PATCH", "/favorites/x", "/favorites/{id}", body={"description": "new"}, headers={**JSON, **AUTH, "If-Match": 'W/"1.2"'}, path_params={"id": "x"}),
    "remove-favorite/foreign-if-match-412": event("DELETE", "/favorites/x", "/favorites/{id}", headers={**AUTH, "If-Match": '"not-ours"'}, path_params={"id": "x"}),
    # No event deletes the fixture user: every event after it would find its token refused.
    # Patched with the right password, wrong-password-401 is the 204 (tests and benchmarks).
    "delete-account/wrong-password-401": event("DELETE", "/me", body={"password": "not the fixture password"}, headers={**JSON, **AUTH}),
    "delete-account/missing-password-400": event("DELETE", "/me", body={}, headers={**JSON, **AUTH}),
    "delete-account/no-token-401": event("DELETE", "/me", body={"password": "fixture password"}, headers=JSON),
}

if __name__ == "__main__":
    for name, body in EVENTS.items():
        path = HERE / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(body, indent=2) + "\n")
    (HERE / "fixture.json").write_text(json.dumps({
        "jwt_secret": FIXTURE_JWT_SECRET, "user_id": FIXTURE_USER_ID, "email": FIXTURE_USER_EMAIL,
        "password": "fixture password",
    }, indent=2) + "\n")
    print(f"wrote {len(EVENTS)} events")
