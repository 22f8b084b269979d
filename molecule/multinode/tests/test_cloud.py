"""The cloud as its users see it, through the controller: VMs spread over the hypervisors and
answering SSH, objects written through one proxy and read through another."""

import hashlib
import os
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

BUCKET = "multinode-check"


def test_anti_affinity_group_boots_one_vm_per_hypervisor_each_answering_ssh(cloud, lab):
    hypervisors = lab.hosts("hypervisors")
    names = [f"web-{i}" for i in range(1, len(hypervisors) + 1)]
    cloud.run("server-group", "create", "web", "--policy", "anti-affinity")
    vms = cloud.each([("vm", "create", name, "--image", "tg", "--flavor", "m1.nano",
                       "--key", "k1", "--group", "web") for name in names])
    assert sorted(vm["host"] for vm in vms) == hypervisors
    answers = [lab.ssh_via(vm["host"], vm["address"], cloud.key, "hostname") for vm in vms]
    assert [(a.returncode, a.stdout.strip()) for a in answers] == [(0, n) for n in names], \
        [a.stderr for a in answers]


def s3(credential, endpoint):
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=credential["access_key"],
        aws_secret_access_key=credential["secret"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                      connect_timeout=5, read_timeout=60))


def accepts(client):
    """Whether the proxy takes the key yet (each proxy re-reads its users within a second)."""
    try:
        client.list_buckets()
    except ClientError as err:
        if err.response["ResponseMetadata"]["HTTPStatusCode"] == 403:
            return False
        raise
    return True


def test_object_written_through_one_proxy_reads_back_identical_through_another(cloud, lab):
    first, *_, last = lab.hosts("proxies")
    credential = cloud.json("credentials", "create")
    cloud.run("bucket", "create", BUCKET)
    writer = s3(credential, lab.proxy_endpoint(first))
    reader = s3(credential, lab.proxy_endpoint(last))
    deadline = time.monotonic() + 10
    while not (accepts(writer) and accepts(reader)):
        assert time.monotonic() < deadline, "the proxies do not take the new key within 10 s"
        time.sleep(0.5)
    data = os.urandom(4 * 1024 * 1024)
    writer.put_object(Bucket=BUCKET, Key="random.bin", Body=data)
    back = reader.get_object(Bucket=BUCKET, Key="random.bin")["Body"].read()
    assert hashlib.sha256(back).hexdigest() == hashlib.sha256(data).hexdigest()
