"""A real S3 client for the tests (boto3, as any S3 client would put originals):

    python s3_client.py ENDPOINT BUCKET put KEY FILE      one PutObject
    python s3_client.py ENDPOINT BUCKET upload KEY FILE   boto3's managed transfer: a multipart
                                                         upload of 5 MiB parts above 5 MiB
    python s3_client.py ENDPOINT BUCKET list PREFIX       prints [{"key", "size", "etag"}] as JSON
    python s3_client.py ENDPOINT BUCKET get KEY FILE      writes the object to FILE

Credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; path-style addressing,
region us-east-1.
"""

import json
import sys

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

endpoint, bucket, verb, *rest = sys.argv[1:]
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    region_name="us-east-1",
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
)
if verb == "put":
    key, path = rest
    with open(path, "rb") as f:
        s3.put_object(Bucket=bucket, Key=key, Body=f.read())
elif verb == "upload":
    key, path = rest
    mib5 = 5 * 1024 * 1024
    config = TransferConfig(multipart_threshold=mib5, multipart_chunksize=mib5)
    s3.upload_file(path, bucket, key, Config=config)
elif verb == "list":
    (prefix,) = rest
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    listed = [
        {"key": o["Key"], "size": o["Size"], "etag": o.get("ETag", "").strip('"')}
        for page in pages
        for o in page.get("Contents", [])
    ]
    print(json.dumps(listed))
elif verb == "get":
    key, path = rest
    with open(path, "wb") as f:
        f.write(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
else:
    sys.exit(f"unknown verb {verb}")
