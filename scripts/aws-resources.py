#!/usr/bin/env python3
"""Creates the AWS resources the functions use, in the account AWS_ENDPOINT_URL points at (a
moto server in `make test`; never run against a real account: template.yaml owns those).

    aws-resources.py PREFIX JWT_KEY [DATABASE_SECRET_JSON]

creates the DynamoDB tables PREFIX-idempotency and PREFIX-login-throttle (partition key `id`,
TTL attribute `expires_at`, on-demand), the secret PREFIX/jwt-key holding JWT_KEY and, when
given, the secret PREFIX/database holding the RDS-style JSON; then prints shell assignments for
the functions' environment:

    IDEMPOTENCY_TABLE=...  LOGIN_THROTTLE_TABLE=...  JWT_SECRET_ARN=...  [DATABASE_SECRET_ARN=...]
"""

import os
import sys

import boto3


def main() -> int:
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    prefix, jwt_key = sys.argv[1], sys.argv[2]
    if not os.environ.get("AWS_ENDPOINT_URL", "").startswith("http://127.0.0.1:"):
        print("refusing: AWS_ENDPOINT_URL must point at a local moto server", file=sys.stderr)
        return 2
    dynamodb = boto3.client("dynamodb")
    tables = {}
    for name in ("idempotency", "login-throttle"):
        table = f"{prefix}-{name}"
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.update_time_to_live(
            TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
        )
        tables[name] = table
    secrets = boto3.client("secretsmanager")
    secret = secrets.create_secret(Name=f"{prefix}/jwt-key", SecretString=jwt_key)
    print(f"IDEMPOTENCY_TABLE={tables['idempotency']}")
    print(f"LOGIN_THROTTLE_TABLE={tables['login-throttle']}")
    print(f"JWT_SECRET_ARN={secret['ARN']}")
    if len(sys.argv) == 4:
        database = secrets.create_secret(Name=f"{prefix}/database", SecretString=sys.argv[3])
        print(f"DATABASE_SECRET_ARN={database['ARN']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
