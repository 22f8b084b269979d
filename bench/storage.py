"""S3 through Swift's s3api (boto3) against dd and plain fsync'd writes on the same XFS, same run.

The baseline is the disk Swift writes to: `dd bs=4M conv=fsync` of the same 64 MiB file to
/srv/node/d1 (the object device). Rounds are interleaved, so machine noise hits both sides.

    PUT 64 MiB, boto3 default TransferConfig (8 MiB parts, 10 threads)  vs dd write
    PUT 64 MiB, one PutObject (multipart_threshold above 64 MiB)       vs dd write
    GET 64 MiB, default config (parallel ranged GETs) / one GetObject  vs dd write
    200 PUTs of 4 KiB, sequential and 8 threads     vs write+fsync of 4 KiB files on the XFS

GET is compared with dd *write* because a cold dd read would need the page cache dropped
(root-only, and it disturbs everyone else on the machine); the GET is probably served from
Swift's page cache, so read its MiB/s as an upper bound.

Credentials: STACKCTL_BENCH_S3_KEY / STACKCTL_BENCH_S3_SECRET, else the service user from
/etc/stackctl/secrets/swift.json (root-only). They are never printed.
"""

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from common import run_quiet, timed

ENDPOINT = "http://127.0.0.1:8080"
SECRETS = Path("/etc/stackctl/secrets/swift.json")
DEVICE = Path("/srv/node/d1")  # the object device: same XFS filesystem Swift writes to
MIB = 1 << 20
SIZE = 64 * MIB
SMALL, SMALL_COUNT, THREADS = 4096, 200, 8
DEFAULT = TransferConfig()
SINGLE = TransferConfig(multipart_threshold=2 * SIZE)
PUT_TARGET = 0.6


class BenchError(Exception):
    """A setup problem reported as one line (no traceback)."""


def credentials():
    """(access key, secret): the env override, else the service user's derived S3 key."""
    key = os.environ.get("STACKCTL_BENCH_S3_KEY")
    secret = os.environ.get("STACKCTL_BENCH_S3_SECRET")
    if key or secret:
        if not (key and secret):
            raise BenchError("set both STACKCTL_BENCH_S3_KEY and STACKCTL_BENCH_S3_SECRET")
        return key, secret
    try:
        stored = json.loads(SECRETS.read_text())
    except PermissionError:
        raise BenchError(f"{SECRETS} is root-only; run as root or set "
                         "STACKCTL_BENCH_S3_KEY/STACKCTL_BENCH_S3_SECRET") from None
    return "STKS" + stored["service_access"][:16].upper(), stored["service_key"]


def s3_client(endpoint):
    key, secret = credentials()
    # No retries: a retried request would hide inside a timing.
    # Checksums only when the operation requires them: the extra CRC32 of every body that
    # botocore >= 1.36 adds by default costs client CPU on this 2-core machine (and S3 servers
    # other than AWS commonly recommend this setting).
    config = Config(signature_version="s3v4", s3={"addressing_style": "path"},
                    retries={"total_max_attempts": 1}, max_pool_connections=max(10, THREADS),
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required")
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret, config=config)


def empty_and_delete(s3, bucket):
    """Delete every object, abort open multipart uploads, then the bucket itself."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    s3.delete_bucket(Bucket=bucket)


def get(s3, bucket, key, config):
    with open(os.devnull, "wb") as sink:
        s3.download_fileobj(bucket, key, sink, Config=config)


def verify(s3, bucket, key, data):
    buf = io.BytesIO()
    s3.download_fileobj(bucket, key, buf)
    if buf.getvalue() != data:
        raise BenchError(f"s3://{bucket}/{key}: downloaded bytes differ from the uploaded ones")


def big_round(s3, bucket, src, data, i, samples):
    """One interleaved round of the 64 MiB measurements; appends seconds to ``samples``."""
    dd_file = DEVICE / f"bench-dd-{bucket}-{i}"
    try:
        samples["dd"] += timed(lambda: run_quiet(["dd", f"if={src}", f"of={dd_file}", "bs=4M",
                                                  "conv=fsync", "status=none"]), 1)
    finally:
        dd_file.unlink(missing_ok=True)
    for name, config in (("multipart", DEFAULT), ("single", SINGLE)):
        key = f"big-{name}-{i}"
        samples[f"put {name}"] += timed(partial(s3.upload_file, src, bucket, key, Config=config), 1)
        samples[f"get {name}"] += timed(partial(get, s3, bucket, key, config), 1)
        if i == 0:
            verify(s3, bucket, key, data)
        s3.delete_object(Bucket=bucket, Key=key)


def fsync_files(directory, body):
    """The small-object floor: create, write, fsync, close SMALL_COUNT files."""
    for n in range(SMALL_COUNT):
        fd = os.open(directory / f"{n:04d}", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)


def small_round(s3, bucket, i, samples):
    body = os.urandom(SMALL)
    floor_dir = DEVICE / f"bench-dd-{bucket}-small-{i}"
    floor_dir.mkdir()
    try:
        samples["fsync files"] += timed(lambda: fsync_files(floor_dir, body), 1)
    finally:
        shutil.rmtree(floor_dir, ignore_errors=True)

    def put(key):
        s3.put_object(Bucket=bucket, Key=key, Body=body)

    seq = [f"small/seq/{i}/{n:04d}" for n in range(SMALL_COUNT)]
    par = [f"small/par/{i}/{n:04d}" for n in range(SMALL_COUNT)]
    samples["small seq"] += timed(lambda: [put(k) for k in seq], 1)
    with ThreadPoolExecutor(THREADS) as pool:
        samples["small par"] += timed(lambda: list(pool.map(put, par)), 1)
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in seq + par],
                                             "Quiet": True})


def line(label, value, unit, base_label, base, base_unit, target=None):
    text = (f"{label:<34} {value:8.0f} {unit:<7} {base_label:<28} {base:8.0f} {base_unit:<7} "
            f"ratio {value / base:5.2f}")
    print(text + (f"   target {target}" if target else ""), flush=True)
    return value / base


def render(samples):
    """Print the table from median seconds; return the single-PUT / dd ratio."""
    med = {name: statistics.median(s) for name, s in samples.items()}
    mib_s = {name: SIZE / MIB / med[name] for name in ("dd", "put multipart", "put single",
                                                       "get multipart", "get single")}
    per_s = {name: SMALL_COUNT / med[name] for name in ("fsync files", "small seq", "small par")}
    dd = "dd write 64 MiB (XFS, fsync)"
    put = line("S3 PUT 64 MiB, single PutObject", mib_s["put single"], "MiB/s", dd,
               mib_s["dd"], "MiB/s", f">= {PUT_TARGET} of dd")
    line("S3 PUT 64 MiB, default multipart", mib_s["put multipart"], "MiB/s", dd,
         mib_s["dd"], "MiB/s")
    line("S3 GET 64 MiB, default (ranged)", mib_s["get multipart"], "MiB/s", dd, mib_s["dd"],
         "MiB/s")
    line("S3 GET 64 MiB, single GetObject", mib_s["get single"], "MiB/s", dd, mib_s["dd"], "MiB/s")
    floor = f"write+fsync {SMALL // 1024} KiB files (XFS)"
    line(f"S3 PUT {SMALL // 1024} KiB x{SMALL_COUNT}, sequential", per_s["small seq"], "PUT/s",
         floor, per_s["fsync files"], "files/s")
    line(f"S3 PUT {SMALL // 1024} KiB x{SMALL_COUNT}, {THREADS} threads", per_s["small par"],
         "PUT/s", floor, per_s["fsync files"], "files/s")
    print("(GET baseline is dd *write*: a cold dd read needs the page cache dropped)", flush=True)
    verdict = "met" if put >= PUT_TARGET else "missed"
    print(f"PUT target (>= {PUT_TARGET} of dd, one 64 MiB PutObject): {verdict} ({put:.2f})",
          flush=True)
    return put


def measure(s3, bucket, repeat):
    samples = {name: [] for name in ("dd", "put multipart", "put single", "get multipart",
                                     "get single", "fsync files", "small seq", "small par")}
    work = Path(tempfile.mkdtemp(prefix="stackctl-bench-"))
    try:
        data = os.urandom(SIZE)
        src = work / "src.bin"
        src.write_bytes(data)
        s3.put_object(Bucket=bucket, Key="warm-up", Body=b"x")  # token, pool, containers
        for i in range(repeat):
            big_round(s3, bucket, str(src), data, i, samples)
            small_round(s3, bucket, i, samples)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return samples


def describe(exc):
    if isinstance(exc, ClientError):
        request_id = exc.response.get("ResponseMetadata", {}).get("RequestId", "-")
        return f"{exc} (request id {request_id}; look it up in the proxy log)"
    return str(exc)


def main(repeat=3, endpoint=None):
    endpoint = endpoint or os.environ.get("STACKCTL_BENCH_S3_ENDPOINT", ENDPOINT)
    bucket = f"stackctl-bench-{uuid.uuid4().hex[:12]}"
    try:
        s3 = s3_client(endpoint)
        s3.create_bucket(Bucket=bucket)
    except (BenchError, BotoCoreError, ClientError, OSError) as exc:
        print(f"storage bench: {describe(exc)}", flush=True)
        return False
    try:
        samples = measure(s3, bucket, repeat)
    except (BenchError, BotoCoreError, ClientError, OSError,
            subprocess.CalledProcessError) as exc:
        print(f"storage bench: {describe(exc)}", flush=True)
        return False
    finally:
        try:
            empty_and_delete(s3, bucket)
        except (BotoCoreError, ClientError) as exc:
            print(f"storage bench: could not delete bucket {bucket}: {describe(exc)}", flush=True)
    render(samples)  # a missed target is a result, printed; only errors fail the bench
    return True


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds per measurement (median)")
    parser.add_argument("--endpoint", help=f"S3 endpoint (default $STACKCTL_BENCH_S3_ENDPOINT "
                                           f"or {ENDPOINT})")
    args = parser.parse_args()
    sys.exit(0 if main(args.repeat, args.endpoint) else 1)
