"""A tenant's object storage through the S3 API (boto3) and the Swift API (python-swiftclient),
against the deployed proxy, with a credential from ``stackctl credentials create``."""

import hashlib
import io
import os

import pytest
from boto3.s3.transfer import TransferConfig

from .conftest import s3_error

MIB = 1024 * 1024
MULTIPART = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB)


@pytest.fixture(scope="module")
def s3(tenant):
    return tenant.s3()


@pytest.fixture
def bucket(tenant, s3, request):
    """An empty bucket made through S3, named after the test."""
    name = request.node.name.removeprefix("test_").replace("_", "-")[:40].rstrip("-")
    s3.create_bucket(Bucket=name)
    return name


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def test_bucket_create_list_delete(s3):
    s3.create_bucket(Bucket="lifecycle")
    assert "lifecycle" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.head_bucket(Bucket="lifecycle")

    s3.delete_bucket(Bucket="lifecycle")
    assert "lifecycle" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3_error(s3.head_bucket, Bucket="lifecycle") == ("404", 404)


def test_50_mib_multipart_upload_reads_back_identical(s3, bucket):
    data = os.urandom(50 * MIB)
    s3.upload_fileobj(io.BytesIO(data), bucket, "big.bin", Config=MULTIPART)

    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-7")  # 7 parts of 8 MiB: it was multipart
    out = io.BytesIO()
    s3.download_fileobj(bucket, "big.bin", out, Config=MULTIPART)
    assert sha256(out.getvalue()) == sha256(data)
    whole = s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read()
    assert sha256(whole) == sha256(data)


def test_ranged_get_returns_exactly_the_range(s3, bucket):
    small = os.urandom(100_000)
    s3.put_object(Bucket=bucket, Key="small", Body=small)
    big = os.urandom(20 * MIB)  # a multipart (SLO) object: a range can span two parts
    s3.upload_fileobj(io.BytesIO(big), bucket, "big", Config=MULTIPART)

    got = s3.get_object(Bucket=bucket, Key="small", Range="bytes=1000-1999")
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == f"bytes 1000-1999/{len(small)}"
    assert got["Body"].read() == small[1000:2000]

    got = s3.get_object(Bucket=bucket, Key="small", Range="bytes=-500")
    assert got["ContentRange"] == f"bytes {len(small) - 500}-{len(small) - 1}/{len(small)}"
    assert got["Body"].read() == small[-500:]

    start = 8 * MIB - 500
    got = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={start}-{start + 999}")
    assert got["Body"].read() == big[start:start + 1000]
    got = s3.get_object(Bucket=bucket, Key="big", Range="bytes=-1234")
    assert got["Body"].read() == big[-1234:]


def test_list_objects_v2_pages_with_continuation_tokens(s3, bucket):
    keys = [f"key-{i:02d}" for i in range(25)]
    for key in reversed(keys):  # written out of order: the listing sorts
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())

    pages, token = [], None
    while True:
        kwargs = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket=bucket, MaxKeys=10, **kwargs)
        pages.append(page)
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
        assert len(pages) < 5, "the listing does not end"

    assert [page["KeyCount"] for page in pages] == [10, 10, 5]
    assert [page["IsTruncated"] for page in pages] == [True, True, False]
    assert [o["Key"] for page in pages for o in page["Contents"]] == keys


def test_prefix_and_delimiter_list_one_level(s3, bucket):
    for key in ("logs/2024/a", "logs/2024/b", "logs/2025/c", "logs/top", "other"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")

    page = s3.list_objects_v2(Bucket=bucket, Prefix="logs/", Delimiter="/")
    assert [o["Key"] for o in page["Contents"]] == ["logs/top"]
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["logs/2024/", "logs/2025/"]
    page = s3.list_objects_v2(Bucket=bucket, Prefix="logs/2024/")
    assert [o["Key"] for o in page["Contents"]] == ["logs/2024/a", "logs/2024/b"]


def test_copy_then_delete_object(s3, bucket):
    data = os.urandom(4096)
    s3.put_object(Bucket=bucket, Key="original", Body=data)
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "original"})
    assert s3.get_object(Bucket=bucket, Key="original")["Body"].read() == data
    assert s3.get_object(Bucket=bucket, Key="copy")["Body"].read() == data

    s3.delete_object(Bucket=bucket, Key="original")
    assert s3_error(s3.get_object, Bucket=bucket, Key="original") == ("NoSuchKey", 404)
    assert s3.get_object(Bucket=bucket, Key="copy")["Body"].read() == data


def test_errors_carry_s3_codes(s3, bucket):
    s3.put_object(Bucket=bucket, Key="keep", Body=b"x")

    assert s3_error(s3.get_object, Bucket=bucket, Key="missing") == ("NoSuchKey", 404)
    assert s3_error(s3.list_objects_v2, Bucket="no-such-bucket") == ("NoSuchBucket", 404)
    assert s3_error(s3.get_object, Bucket="no-such-bucket", Key="k") == ("NoSuchBucket", 404)
    assert s3_error(s3.delete_bucket, Bucket=bucket) == ("BucketNotEmpty", 409)
    for name in ("Invalid_Name", "ab", "a..b"):
        assert s3_error(s3.create_bucket, Bucket=name) == ("InvalidBucketName", 400), name
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"x"


def test_swift_api_round_trip_and_interplay_with_s3(tenant, s3):
    conn = tenant.swift()
    data = os.urandom(300_000)
    conn.put_container("swift-made")
    conn.put_object("swift-made", "via-swift", contents=data)

    headers, body = conn.get_object("swift-made", "via-swift")
    assert sha256(body) == sha256(data)
    assert headers["etag"] == hashlib.md5(data).hexdigest()
    assert [o["name"] for o in conn.get_container("swift-made")[1]] == ["via-swift"]
    assert "swift-made" in [c["name"] for c in conn.get_account()[1]]

    # The same object through S3, and an S3 write through Swift.
    assert sha256(s3.get_object(Bucket="swift-made", Key="via-swift")["Body"].read()) \
        == sha256(data)
    s3.put_object(Bucket="swift-made", Key="via-s3", Body=data[::-1])
    assert conn.get_object("swift-made", "via-s3")[1] == data[::-1]

    conn.delete_object("swift-made", "via-swift")
    conn.delete_object("swift-made", "via-s3")
    assert conn.get_container("swift-made")[1] == []
    conn.delete_container("swift-made")
    assert s3_error(s3.head_bucket, Bucket="swift-made") == ("404", 404)
