"""The object storage half of the demo: the demo tenant's S3 key, a bucket, and an object
written and read back byte-identical through S3 (boto3). Reuses what exists."""

import hashlib
import json
import os
import subprocess
import sys

STACKCTL = [sys.executable, "-m", "stackctl"]
BUCKET = "demo-bucket"


def stackctl(*args, check=True):
    return subprocess.run([*STACKCTL, *args, "-o", "json"], capture_output=True, text=True,
                          check=check)


def credentials(path):
    if os.path.exists(path):
        with open(path) as handle:
            return json.load(handle)
    creds = json.loads(stackctl("credentials", "create").stdout)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(creds, handle)
    return creds


def main():
    import boto3
    from botocore.config import Config

    creds = credentials(sys.argv[1])
    if stackctl("bucket", "show", BUCKET, check=False).returncode != 0:
        stackctl("bucket", "create", BUCKET)
    s3 = boto3.client("s3", endpoint_url=creds["endpoint"], region_name="us-east-1",
                      aws_access_key_id=creds["access_key"],
                      aws_secret_access_key=creds["secret"],
                      config=Config(s3={"addressing_style": "path"}))
    data = os.urandom(4 * 1024 * 1024)
    s3.put_object(Bucket=BUCKET, Key="hello.bin", Body=data)
    back = s3.get_object(Bucket=BUCKET, Key="hello.bin")["Body"].read()
    same = hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
    print(f"demo: object storage: 4 MiB put and read back through S3 as tenant demo "
          f"({creds['endpoint']}, bucket {BUCKET}): {'byte-identical' if same else 'DIFFERENT'}")
    print(f"      S3 credentials for aws-cli/boto3/rclone: {sys.argv[1]}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
